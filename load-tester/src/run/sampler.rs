//! CPU and memory of a process and of the machine, from /proc.
//!
//! A reading ([`read`]) holds cumulative counters; [`usage`] turns two readings of one process
//! into its [`ProcessUsage`] over the time between them, in base units (ns of CPU and wall time,
//! bytes of memory, ticks of the machine's CPU).

use std::fs;

use crate::report::ProcessUsage;

/// Raw cumulative counters of a process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcCounters {
    /// When, `CLOCK_MONOTONIC` ns.
    pub at_ns: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Voluntary context switches, all threads (of the threads alive now: a thread that ended
    /// takes its count with it).
    pub voluntary_switches: u64,
    /// Involuntary context switches, all threads alive now.
    pub involuntary_switches: u64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Anonymous resident memory, KiB.
    pub rss_anon_kib: u64,
    /// Resident shared memory (the bus rings this process touched), KiB.
    pub rss_shmem_kib: u64,
    /// Machine-wide busy and total jiffies (all cores), from /proc/stat.
    pub system_busy: u64,
    /// See `system_busy`.
    pub system_total: u64,
}

/// Reads the counters of process `pid` (`"self"` for this one). `None` if the process is gone
/// or /proc is unreadable.
pub fn read(pid: &str) -> Option<ProcCounters> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields start after the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers of proc(5), minus 3 (the first field of `rest` is field 3, state).
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let mut c = ProcCounters {
        at_ns: alphapulse_bus::now_ns(),
        minor_faults: num(10)?,
        major_faults: num(12)?,
        cpu_ticks: num(14)? + num(15)?,
        ..Default::default()
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in status.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "VmRSS:" => c.rss_kib = value,
            "RssAnon:" => c.rss_anon_kib = value,
            "RssShmem:" => c.rss_shmem_kib = value,
            _ => {}
        }
    }
    // /proc/<pid>/status counts the switches of the main thread only: sum every thread's.
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let Ok(st) = fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for line in st.lines() {
                let mut it = line.split_whitespace();
                let (Some(key), Some(Ok(value))) = (it.next(), it.next().map(str::parse::<u64>))
                else {
                    continue;
                };
                match key {
                    "voluntary_ctxt_switches:" => c.voluntary_switches += value,
                    "nonvoluntary_ctxt_switches:" => c.involuntary_switches += value,
                    _ => {}
                }
            }
        }
    }
    if let Ok(s) = fs::read_to_string("/proc/stat") {
        if let Some(cpu) = s.lines().next().filter(|l| l.starts_with("cpu ")) {
            let v: Vec<u64> = cpu
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            c.system_total = total;
            c.system_busy = total.saturating_sub(idle);
        }
    }
    Some(c)
}

/// Clock ticks per second of /proc CPU times.
pub fn ticks_per_sec() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// The resource use between two readings of the same process, in base units.
pub fn usage(before: &ProcCounters, after: &ProcCounters, ticks_per_sec: u64) -> ProcessUsage {
    let ticks_ns =
        |t: u64| (u128::from(t) * 1_000_000_000 / u128::from(ticks_per_sec.max(1))) as u64;
    ProcessUsage {
        samples: 1,
        wall_ns: after.at_ns.saturating_sub(before.at_ns),
        cpu_ns: ticks_ns(after.cpu_ticks.saturating_sub(before.cpu_ticks)),
        rss_bytes: after.rss_kib * 1024,
        rss_anon_bytes: after.rss_anon_kib * 1024,
        rss_shmem_bytes: after.rss_shmem_kib * 1024,
        minor_faults: after.minor_faults.saturating_sub(before.minor_faults),
        major_faults: after.major_faults.saturating_sub(before.major_faults),
        voluntary_switches: after
            .voluntary_switches
            .saturating_sub(before.voluntary_switches),
        involuntary_switches: after
            .involuntary_switches
            .saturating_sub(before.involuntary_switches),
        machine_busy_ticks: after.system_busy.saturating_sub(before.system_busy),
        machine_total_ticks: after.system_total.saturating_sub(before.system_total),
    }
}

#[cfg(test)]
mod tests {
    use crate::run::sampler::*;

    #[test]
    fn busy_loop_shows_cpu_and_rss_is_in_mib() {
        use rustix::time::{clock_gettime, ClockId};
        let cpu_ns = || {
            let t = clock_gettime(ClockId::ProcessCPUTime);
            t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
        };
        let (cpu_before, before) = (cpu_ns(), read("self").expect("/proc/self is readable"));
        let until = alphapulse_bus::now_ns() + 300_000_000;
        let mut x = 0u64;
        while alphapulse_bus::now_ns() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let (after, cpu_after) = (read("self").unwrap(), cpu_ns());
        let s = usage(&before, &after, ticks_per_sec());
        // Percent of one core: the process's CPU time over the wall time, whatever else the
        // test harness runs in parallel. /proc counts in ticks (10 ms), so allow three.
        let wall_ns = after.at_ns.saturating_sub(before.at_ns) as f64;
        let expected = 100.0 * (cpu_after - cpu_before) / wall_ns;
        let tolerance = 100.0 * 3.0 * 1e9 / ticks_per_sec() as f64 / wall_ns;
        assert!(
            (s.cpu_pct() - expected).abs() <= tolerance,
            "cpu {} %, process CPU clock says {expected} % (+-{tolerance})",
            s.cpu_pct()
        );
        assert!(expected > 30.0, "the spinning thread ran: {expected} %");
        // A test process is a few MiB, not KiB counted as MiB nor bytes.
        let rss_mib = s.rss_bytes as f64 / (1 << 20) as f64;
        assert!(rss_mib > 1.0 && rss_mib < 1024.0, "rss {rss_mib} MiB");
        assert!(s.machine_cpu_pct() > 0.0 && s.machine_cpu_pct() <= 100.0);
    }

    #[test]
    fn a_missing_process_reads_as_none() {
        assert!(read("999999999").is_none());
    }
}
