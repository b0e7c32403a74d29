//! Where the tester's threads and reader processes run.
//!
//! On a machine with few cores, the scheduler moving a spinning generator and a spinning reader
//! onto one core, or the engine thread preempting the generator, shows up as generator lag and
//! end-to-end latency that measure the tester, not the bus. When there are enough cores and the
//! user pinned nothing, the run places them itself: generator threads on the highest cores, one
//! each, then the readers below them, leaving core 0 (where the engine thread, the kernel's
//! housekeeping and everything else gather) free when there is room.

/// The cores this process may run on, in ascending order.
pub fn available_cores() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Cores for `threads` generator threads and `readers` reader processes out of `cores`
/// (ascending), or `None` when there are not enough to give each its own. Generators get the
/// highest cores, readers the ones below.
pub fn auto(threads: usize, readers: usize, cores: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let needed = threads + readers;
    if needed == 0 || cores.len() < needed || cores.len() < 2 {
        return None;
    }
    let mut from_top = cores.iter().rev().copied();
    let generators: Vec<usize> = from_top.by_ref().take(threads).collect();
    let readers: Vec<usize> = from_top.take(readers).collect();
    Some((generators, readers))
}

/// The nice value of the threads that merge, sample and talk to the network while generator
/// threads run: they get a small share of a core a generator also wants, instead of taking it
/// for milliseconds at each interval's end (which shows as lag).
pub const HOUSEKEEPING_NICE: i32 = 19;

/// The time slice those threads ask the scheduler for, ns (EEVDF's custom slices, Linux 6.12
/// and later; the smallest it grants is 100 us): when one of them runs on a generator's core,
/// it gives the core back after this long, not after the default slice of milliseconds.
pub const HOUSEKEEPING_SLICE_NS: u64 = 100_000;

/// The calling thread's place, saved: its CPU set and its scheduling attributes (nice value,
/// slice). Dropping it puts them back, so that a process that runs several loads in turn (a
/// comparison of transports and its rate probes) starts each one from where it started the
/// first: a run moves its engine thread off the generators' cores and lowers it, and threads and
/// processes it starts inherit both.
pub struct ThreadPlace {
    /// The CPU set to put back; `None` if it could not be read (nothing is put back).
    cpus: Option<rustix::thread::CpuSet>,
    /// The attributes to put back; `None` if they could not be read (the nice value alone is).
    attr: Option<SchedAttr>,
    /// The nice value, for a kernel without `sched_getattr`.
    nice: Option<i32>,
}

impl ThreadPlace {
    /// Saves the calling thread's place. Restored on drop, on the thread that drops it.
    pub fn save() -> Self {
        let mut attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: 0,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: sched_getattr(2) writes at most `size` (48) bytes into `attr`, a valid,
        // exclusively borrowed `SchedAttr` of that size; pid 0 is the calling thread; flags 0.
        let got = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                std::mem::size_of::<SchedAttr>() as u32,
                0,
            )
        };
        Self {
            cpus: rustix::thread::sched_getaffinity(None).ok(),
            attr: (got == 0).then_some(attr),
            nice: rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok(),
        }
    }
}

impl Drop for ThreadPlace {
    fn drop(&mut self) {
        if let Some(cpus) = &self.cpus {
            let _ = rustix::thread::sched_setaffinity(None, cpus);
        }
        let restored = self.attr.as_ref().is_some_and(|attr| {
            // SAFETY: sched_setattr(2) reads `attr.size` bytes from a valid, initialized
            // `SchedAttr` (as sched_getattr filled it) that outlives the call; pid 0 is the
            // calling thread; flags 0. It writes no memory.
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) == 0 }
        });
        if !restored {
            if let Some(nice) = self.nice {
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
            }
        }
    }
}

/// `struct sched_attr` of `sched_setattr(2)` (its first version, 48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// Lowers the calling thread's priority to [`HOUSEKEEPING_NICE`] with a
/// [`HOUSEKEEPING_SLICE_NS`] slice (threads it starts inherit both). Best effort: on a kernel
/// without custom slices only the nice value changes; a failure changes nothing but the lag
/// on a crowded machine.
pub fn lower_this_thread() {
    set_this_thread(HOUSEKEEPING_NICE);
}

/// Gives the calling thread [`HOUSEKEEPING_SLICE_NS`] slices at the default priority: for a
/// thread that must answer promptly (a network peer's heartbeats) yet should hold a core only
/// briefly. Best effort, as [`lower_this_thread`].
pub fn short_slices_for_this_thread() {
    // Keeps the thread's nice value (a process started under `nice` stays there).
    let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0);
    set_this_thread(nice);
}

fn set_this_thread(nice: i32) {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: 0, // SCHED_OTHER
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: HOUSEKEEPING_SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(2) reads `attr.size` bytes from a valid, initialized `SchedAttr`
    // that outlives the call; pid 0 is the calling thread; flags 0. It writes no memory.
    let done = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if done != 0 {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
    }
}

#[cfg(test)]
mod tests {
    use crate::run::placement::auto;

    #[test]
    fn generators_take_the_top_cores_and_leave_core_0_when_they_can() {
        assert_eq!(auto(1, 1, &[0, 1]), Some((vec![1], vec![0])));
        assert_eq!(auto(1, 1, &[0, 1, 2, 3]), Some((vec![3], vec![2])));
        assert_eq!(auto(2, 0, &[0, 1, 2]), Some((vec![2, 1], vec![])));
        assert_eq!(auto(2, 1, &[0, 1]), None, "not enough cores");
        assert_eq!(auto(1, 0, &[0]), None, "one core: nothing to place");
    }
}
