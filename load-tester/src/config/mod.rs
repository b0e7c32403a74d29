//! From the command line to a checked [`Plan`] and [`Settings`]: every check that can fail does
//! so here, before anything is created or run.

pub mod cli;
pub mod distributed;
pub mod replay;
pub mod scenario;

use std::path::PathBuf;

use crate::config::cli::{ClockArg, PlacementArg, RunArgs, RunMode};
use crate::output::reports::OutputRequest;
use crate::plan::limits::MAX_TOTAL_RATE;
use crate::plan::patterns::PatternSpec;
use crate::plan::ClockSource;
use crate::plan::{default_capacity, ExchangePlan, Pacing, Plan, MAX_POINTS};
use crate::results::targets::Targets;
use crate::run::clock::tsc_usable;
use crate::run::placement;
use crate::source::market::symbols::{exchange_names, symbol_names};

/// What the user asked for that is not part of the plan: outputs and judgement.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Verbose report and logs.
    pub verbose: bool,
    /// The files to write.
    pub outputs: OutputRequest,
    /// Targets of the verdict.
    pub targets: Targets,
    /// Base directory of run directories.
    pub shm_dir: PathBuf,
    /// Keep the run directory after the run.
    pub keep_shm: bool,
    /// Readers may lose records without failing the verdict.
    pub allow_loss: bool,
    /// What the user should know before the run starts (printed on stderr).
    pub notes: Vec<String>,
    /// `--metrics-addr`, not yet resolved.
    pub metrics_addr: Option<String>,
    /// `--metrics-linger`, seconds.
    pub metrics_linger_secs: u64,
    /// `--netem`: the arguments of a kernel netem qdisc on loopback, checked.
    pub netem: Option<Vec<String>>,
}

/// A configuration error: one line naming the flag or file and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Checks `args` and derives the plan and settings.
pub fn build(args: &RunArgs) -> Result<(Plan, Settings), ConfigError> {
    let fail = |m: String| Err(ConfigError(m));
    if args.trades_per_second == 0 && args.orderbook_updates_per_second == 0 {
        return fail(
            "--trades-per-second and --orderbook-updates-per-second are both 0: nothing to send; \
             give at least one of them a rate above 0"
                .into(),
        );
    }
    let total = args
        .exchanges
        .saturating_mul(args.trades_per_second + args.orderbook_updates_per_second);
    if total > MAX_TOTAL_RATE {
        return fail(format!(
            "--exchanges x (--trades-per-second + --orderbook-updates-per-second) = {total} msgs/s \
             exceeds the {MAX_TOTAL_RATE} msgs/s this tester can schedule; lower the rates or the exchanges"
        ));
    }
    let replayed = match &args.replay.replay {
        Some(path) => {
            if args.mode != RunMode::Standalone {
                return fail(
                    "--replay runs standalone: a distributed replay (each worker replaying its \
                     exchanges of the capture) is not built yet"
                        .into(),
                );
            }
            Some(replay::from_capture(path, &args.replay)?)
        }
        None => None,
    };
    if let Some(r) = &replayed {
        let total: f64 = r.rates.iter().flatten().map(|(mean, _)| mean).sum();
        if total > MAX_TOTAL_RATE as f64 {
            return fail(format!(
                "--replay at --speed {} is {total:.0} msgs/s on average, over the \
                 {MAX_TOTAL_RATE} msgs/s this tester can schedule; lower --speed",
                args.replay.speed
            ));
        }
    }
    let exchange_count = replayed
        .as_ref()
        .map_or(args.exchanges, |r| r.exchanges.len() as u64);
    if args.threads > exchange_count {
        return fail(format!(
            "--threads {} is more than the {exchange_count} exchanges: each thread drives whole \
             exchanges; use at most {exchange_count} threads",
            args.threads
        ));
    }
    if let Some(path) = &args.replay.record {
        let partial = crate::source::capture::writer::partial_of(path);
        for p in [path, &partial] {
            if p.symlink_metadata().is_ok() {
                return fail(format!(
                    "--record {}: {} exists; a capture never overwrites a file (choose another \
                     name, or remove a partial capture an earlier recorder left)",
                    path.display(),
                    p.display()
                ));
            }
        }
        if args.mode != RunMode::Standalone {
            return fail(
                "--record runs standalone: in a distributed run every worker would write the \
                 same path"
                    .into(),
            );
        }
    }
    if args.net.max_rate_secs > 0 && args.net.transport.len() < 2 {
        return fail(
            "--max-rate-secs searches each transport of a comparison: give --transport a list, \
             e.g. shm,udp"
                .into(),
        );
    }
    if replayed.is_some() {
        use crate::config::cli::{TransportArg, WriterModeArg};
        if args.writer_mode == WriterModeArg::Backpressure
            || args.net.transport.contains(&TransportArg::Uds)
        {
            return fail(
                "--replay with a transport that refuses writes (--writer-mode backpressure, \
                 --transport uds) is not built yet: a refused record would be skipped; use the \
                 default overwrite mode, shm or udp"
                    .into(),
            );
        }
    }
    if args.replay.record.is_some() && args.consumers == 0 {
        return fail(
            "--record needs a reader to record what it reads: use --consumers 1 or more".into(),
        );
    }
    // A coordinator runs no load itself: cores are each worker's to choose.
    let (pin_cores, reader_pin_cores, mut notes) = if args.mode == RunMode::Coordinator {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let p = place(
            args.threads,
            args.consumers,
            &args.pin_cores,
            &args.reader_pin_cores,
            args.placement,
        )?;
        (p.pin_cores, p.reader_pin_cores, p.notes)
    };
    if let Some(c) = args.ring_capacity {
        if !c.is_power_of_two() {
            return fail(format!(
                "--ring-capacity {c} is not a power of two; try {}",
                c.next_power_of_two()
            ));
        }
    }
    let targets = match &args.targets {
        Some(path) => Targets::load(path).map_err(|e| ConfigError(format!("--targets {e}")))?,
        None => args.scenario_targets.clone().unwrap_or_default(),
    };

    let clock = match args.clock {
        ClockArg::Monotonic => ClockSource::Monotonic,
        ClockArg::Auto if !tsc_usable() => ClockSource::Monotonic,
        ClockArg::Tsc if !tsc_usable() => return fail(
            "--clock tsc: this machine's TSC is not invariant or not the kernel's clocksource; \
                 use --clock auto or monotonic"
                .into(),
        ),
        _ => ClockSource::Tsc,
    };
    let threads = args.threads as usize;
    let trades_pattern = args
        .trades_pattern
        .clone()
        .unwrap_or(PatternSpec::Constant {
            rate: Some(args.trades_per_second as f64),
        });
    let book_pattern = args.book_pattern.clone().unwrap_or(PatternSpec::Constant {
        rate: Some(args.orderbook_updates_per_second as f64),
    });
    let names = match &replayed {
        Some(r) => r.exchanges.clone(),
        None => exchange_names(args.exchanges as usize),
    };
    let mut exchanges: Vec<ExchangePlan> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| ExchangePlan {
            id: i as u16,
            name,
            trades_per_sec: args.trades_per_second,
            book_per_sec: args.orderbook_updates_per_second,
            trades_capacity: args
                .ring_capacity
                .unwrap_or_else(|| default_capacity(trades_pattern.peak_rate() as u64)),
            book_capacity: args
                .ring_capacity
                .unwrap_or_else(|| default_capacity(book_pattern.peak_rate() as u64)),
            thread: i % threads,
            trades_pattern: trades_pattern.clone(),
            book_pattern: book_pattern.clone(),
        })
        .collect();
    let mut duration_secs = args.duration_secs;
    let mut warmup_secs = args.warmup_secs;
    if let Some(r) = &replayed {
        for (e, rates) in exchanges.iter_mut().zip(&r.rates) {
            let [(trades, trades_peak), (book, book_peak)] = *rates;
            e.trades_per_sec = trades.round() as u64;
            e.book_per_sec = book.round() as u64;
            e.trades_pattern = PatternSpec::Constant { rate: Some(trades) };
            e.book_pattern = PatternSpec::Constant { rate: Some(book) };
            if args.ring_capacity.is_none() {
                e.trades_capacity = default_capacity(trades_peak.ceil() as u64);
                e.book_capacity = default_capacity(book_peak.ceil() as u64);
            }
        }
        if args.duration_from_replay {
            // The warm-up is the replay's first seconds: the run ends with its last record. A
            // replay too short to leave a measured second after the warm-up has none.
            if r.replay_secs < (2 * warmup_secs + 1) as f64 && warmup_secs > 0 {
                notes.push(format!(
                    "the replay lasts {:.2} s: no warm-up, so that its records are measured \
                     (give -d to keep --warmup-secs {warmup_secs})",
                    r.replay_secs
                ));
                warmup_secs = 0;
            }
            duration_secs = (r.replay_secs.ceil() as u64)
                .saturating_sub(warmup_secs)
                .max(1);
        }
        if warmup_secs + duration_secs > crate::plan::limits::MAX_DURATION_SECS {
            return fail(format!(
                "--replay at --speed {} lasts {:.0} s, over the {} s a run may last; raise \
                 --speed or replay a window (--replay-from, --replay-to)",
                args.replay.speed,
                r.replay_secs,
                crate::plan::limits::MAX_DURATION_SECS
            ));
        }
    }
    let total_secs = warmup_secs + duration_secs;
    let plan = Plan {
        exchanges,
        symbols: match &replayed {
            Some(r) => r.symbols.clone(),
            None => symbol_names(args.symbol_count as usize),
        },
        threads,
        pin_cores,
        pacing: Pacing {
            mode: args.pacing.into(),
            spin_ns: args.spin_us.map(|us| us * 1_000),
        },
        clock,
        writer_mode: args.writer_mode.into(),
        consumers: args.consumers as usize,
        reader_pin_cores,
        reader_delay_ns: args.reader_delay_ns,
        seed: args.seed,
        warmup_secs,
        duration_secs,
        interval_ns: 1_000_000_000,
        point_secs: total_secs.div_ceil(MAX_POINTS).max(1),
        lag_budget_ns: args.lag_budget_us * 1_000,
        scenario: args.scenario_description.clone(),
        record: args.replay.record.as_ref().map(|p| p.display().to_string()),
        replay: replayed.map(|r| r.replay),
        transport: transport_plan(args)?,
        chaos: None,
    };
    let mut plan = plan;
    plan.chaos = chaos_plan(args, &plan, &mut notes)?;
    let shm_dir = shm_base(args.shm_dir.clone());
    if let Some(note) = not_tmpfs(&shm_dir) {
        notes.push(note);
    }
    let settings = Settings {
        verbose: args.verbose,
        outputs: OutputRequest {
            json: args.json_output.clone(),
            hlog: args.hlog.clone(),
            hgrm_dir: args.hgrm_dir.clone(),
            html: args.html_report.clone(),
            junit: args.junit.clone(),
            baseline: args.baseline.clone(),
            compare: crate::results::compare::Options {
                thresholds_file: args.thresholds.clone(),
                threshold: args.threshold.clone(),
                noise_floor: args.noise_floor.clone(),
                allow_config_change: args.allow_config_change,
            },
        },
        targets,
        shm_dir,
        keep_shm: args.keep_shm,
        allow_loss: args.allow_loss,
        notes,
        metrics_addr: args.metrics_addr.clone(),
        metrics_linger_secs: args.metrics_linger,
        netem: netem_args(args)?,
    };
    Ok((plan, settings))
}

/// `--netem`'s words, checked: only a UDP feed crosses loopback's qdisc, and only plain words
/// (letters, digits, `.`, `%`) reach `tc`.
fn netem_args(args: &RunArgs) -> Result<Option<Vec<String>>, ConfigError> {
    use crate::config::cli::TransportArg;
    let Some(text) = &args.net.netem else {
        return Ok(None);
    };
    if !args.net.transport.contains(&TransportArg::Udp) {
        return Err(ConfigError(
            "--netem shapes loopback in the kernel, which only --transport udp crosses".into(),
        ));
    }
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let plain = |w: &String| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '%')
    };
    if words.is_empty() || !words.iter().all(plain) {
        return Err(ConfigError(format!(
            "--netem {text:?}: give netem's own arguments, e.g. \"delay 100us loss 1%\" \
             (letters, digits, '.' and '%' only)"
        )));
    }
    Ok(Some(words))
}

/// The transport of `--transport` and its network path, checked.
/// The schedule of `--chaos` (and a scenario's `[[chaos]]` tables) for `plan`, checked
/// against it; `None` without faults.
fn chaos_plan(
    args: &RunArgs,
    plan: &Plan,
    notes: &mut Vec<String>,
) -> Result<Option<crate::plan::chaos::ChaosPlan>, ConfigError> {
    use crate::plan::chaos::{resolve, Shape};
    use crate::plan::transport::TransportKind;
    let c = &args.chaos;
    if c.chaos.is_empty() {
        if c.restart_readers {
            return Err(ConfigError(
                "--restart-readers: there is no fault to restart a reader after (give --chaos \
                 kill-reader@TIME)"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if args.net.transport.len() > 1 {
        return Err(ConfigError(
            "--chaos: faults are injected into one transport's run; give one --transport".into(),
        ));
    }
    if args.mode != RunMode::Standalone {
        return Err(ConfigError(
            "--chaos: faults are injected into a standalone run; a distributed run takes none"
                .into(),
        ));
    }
    let shape = Shape {
        run_ns: plan.total_secs() * 1_000_000_000,
        readers: plan.consumers,
        exchanges: plan.exchanges.len() as u16,
        shm: plan.transport.kind == TransportKind::Shm,
        udp: plan.transport.kind == TransportKind::Udp,
    };
    // Filling a big tmpfs takes that much memory: "all" is only taken where it is small.
    let base = shm_base(args.shm_dir.clone());
    let free = rustix::fs::statvfs(&base).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
    let mut specs = c.chaos.clone();
    specs.retain(|s| {
        let skip = s.kind == crate::plan::chaos::FaultKind::FillShm
            && s.amount == crate::plan::chaos::FILL_ALL
            && free > FILL_ALL_MAX_BYTES;
        if skip {
            notes.push(format!(
                "--chaos {}: skipped: {} has {} free, and filling a tmpfs takes that much memory; \
                 run with --shm-dir on a tmpfs of at most {} to include it (docs/chaos.md)",
                s.text,
                base.display(),
                crate::plan::chaos::show_bytes(free),
                crate::plan::chaos::show_bytes(FILL_ALL_MAX_BYTES)
            ));
        }
        !skip
    });
    let chaos = resolve(
        &specs,
        &shape,
        c.chaos_seed,
        c.restart_readers,
        &c.chaos_budget,
    )
    .map_err(ConfigError)?;
    // Reader 0 writes the capture: killed, it would leave the file unfinished.
    if let (Some(record), Some(f)) = (
        &plan.record,
        chaos
            .faults
            .iter()
            .find(|f| f.kind == crate::plan::chaos::FaultKind::KillReader && f.reader == Some(0)),
    ) {
        return Err(ConfigError(format!(
            "--chaos {}: reader 0 writes --record {record}, and killed it would leave the capture \
             unfinished; kill another reader (reader=1, with --consumers 2)",
            f.spec
        )));
    }
    Ok(Some(chaos))
}

/// Most free space `fill-shm ...:all` takes (1 GiB).
const FILL_ALL_MAX_BYTES: u64 = 1 << 30;

fn transport_plan(args: &RunArgs) -> Result<crate::plan::transport::TransportPlan, ConfigError> {
    use crate::config::cli::TransportArg;
    use crate::plan::transport::{Impairment, TransportKind, TransportPlan};
    let n = &args.net;
    let comparison = n.transport.len() > 1;
    if comparison && args.mode != RunMode::Standalone {
        return Err(ConfigError(
            "--transport with several transports compares them in one standalone run; a \
             distributed run takes one transport"
                .into(),
        ));
    }
    let kind = match n
        .transport
        .get(n.transport_run)
        .copied()
        .unwrap_or(TransportArg::Shm)
    {
        TransportArg::Shm => TransportKind::Shm,
        TransportArg::Udp => TransportKind::Udp,
        TransportArg::Uds => TransportKind::Uds,
        TransportArg::Iceoryx2 => TransportKind::Iceoryx2,
    };
    if kind == TransportKind::Iceoryx2 && !cfg!(feature = "iceoryx2") {
        return Err(ConfigError(
            "--transport iceoryx2: this load-tester was built without it; build with \
             `cargo build --release --features iceoryx2` (iceoryx2 needs Rust 1.89)"
                .into(),
        ));
    }
    let shaped = kind == TransportKind::Udp || kind == TransportKind::Uds;
    if comparison && !shaped {
        // A comparison shapes the datagram transports; the others run as they are.
        return Ok(TransportPlan {
            kind,
            ..TransportPlan::default()
        });
    }
    let impairment = Impairment {
        delay_ns: n.net_delay.unwrap_or(0),
        jitter_ns: n.net_jitter.unwrap_or(0),
        loss_pct: n.net_loss.unwrap_or(0.0),
        loss_burst: n.net_loss_burst.unwrap_or(1.0),
        reorder_pct: n.net_reorder.unwrap_or(0.0),
        duplicate_pct: n.net_duplicate.unwrap_or(0.0),
        seed: args.seed,
    };
    let impaired = n.net_delay.is_some()
        || n.net_loss.is_some()
        || n.net_reorder.is_some()
        || n.net_duplicate.is_some();
    if !shaped && (impaired || n.batch != 1 || n.multicast.is_some()) {
        return Err(ConfigError(
            "--net-*, --batch and --multicast shape a datagram feed: add --transport udp (or uds)"
                .into(),
        ));
    }
    if impairment.delay_ns + impairment.jitter_ns > 1_000_000_000 {
        return Err(ConfigError(
            "--net-delay plus --net-jitter may be at most 1s: the run waits for what is in \
             flight before it ends"
                .into(),
        ));
    }
    if impairment.jitter_ns > impairment.delay_ns {
        return Err(ConfigError(format!(
            "--net-jitter {} ns is more than --net-delay {} ns: a delay cannot go below 0",
            impairment.jitter_ns, impairment.delay_ns
        )));
    }
    if n.net_loss == Some(100.0) && n.net_loss_burst.is_some() {
        return Err(ConfigError(
            "--net-loss 100 drops everything: a burst length means nothing then".into(),
        ));
    }
    if kind != TransportKind::Shm && args.replay.record.is_some() {
        return Err(ConfigError(format!(
            "--record records the shared-memory bus, not --transport {}",
            kind.name()
        )));
    }
    let group = match &n.multicast {
        None => None,
        Some(_) if kind != TransportKind::Udp => {
            return Err(ConfigError("--multicast needs --transport udp".into()))
        }
        Some(text) => {
            let (g, p) = text.rsplit_once(':').ok_or_else(|| {
                ConfigError(format!(
                    "--multicast {text}: expected GROUP:PORT, e.g. 239.1.1.1:5000"
                ))
            })?;
            let ip: std::net::Ipv4Addr = g.parse().map_err(|_| {
                ConfigError(format!("--multicast {text}: {g} is not an IPv4 address"))
            })?;
            if !ip.is_multicast() {
                return Err(ConfigError(format!(
                    "--multicast {text}: {ip} is not a multicast group (224.0.0.0 to 239.255.255.255)"
                )));
            }
            let port: u16 = p.parse().ok().filter(|&p| p > 0).ok_or_else(|| {
                ConfigError(format!(
                    "--multicast {text}: {p} is not a port from 1 to 65535"
                ))
            })?;
            Some((ip.to_string(), port))
        }
    };
    if n.gap_wait.is_some() && !shaped {
        return Err(ConfigError(
            "--gap-wait is for a datagram feed: add --transport udp (or uds)".into(),
        ));
    }
    Ok(TransportPlan {
        kind,
        batch: n.batch,
        group,
        impairment,
        gap_wait_ns: n.gap_wait,
    })
}

/// Where the generator threads and readers of a run go on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Generator thread i's core, if pinned.
    pub pin_cores: Vec<usize>,
    /// Reader i's core, if pinned.
    pub reader_pin_cores: Vec<usize>,
    /// What the user should know (not enough cores to place them).
    pub notes: Vec<String>,
}

/// The cores of `threads` generator threads and `consumers` readers on this host: the ones
/// given (checked), else, with `placement` auto, a core each when there are enough.
pub(crate) fn place(
    threads: u64,
    consumers: u64,
    pin: &[u64],
    reader_pin: &[u64],
    placement_arg: PlacementArg,
) -> Result<Placed, ConfigError> {
    let mut pin_cores = check_pin_cores("--pin-cores", pin, threads)?;
    let mut reader_pin_cores = check_pin_cores("--reader-pin-cores", reader_pin, consumers)?;
    let mut notes = Vec::new();
    if placement_arg == PlacementArg::Auto && pin_cores.is_empty() && reader_pin_cores.is_empty() {
        let cores = placement::available_cores();
        match placement::auto(threads as usize, consumers as usize, &cores) {
            Some((generators, readers)) => {
                pin_cores = generators;
                reader_pin_cores = readers;
            }
            None if cores.len() > 1 => notes.push(format!(
                "{threads} generator thread(s) and {consumers} reader(s) do not get a core each \
                 on {} cores: the scheduler places them, and their contention may show as lag",
                cores.len()
            )),
            None => {}
        }
    }
    Ok(Placed {
        pin_cores,
        reader_pin_cores,
        notes,
    })
}

/// The magic number of tmpfs in `statfs(2)`'s `f_type`.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The shared-memory base: `--shm-dir`, else `$ALPHAPULSE_SHM_DIR` or /dev/shm/alphapulse,
/// made absolute against the working directory (so that its file system can be judged and the
/// run directory printed is one a reader elsewhere can open).
fn shm_base(flag: Option<PathBuf>) -> PathBuf {
    let base = flag.unwrap_or_else(alphapulse_bus::default_base_dir);
    std::path::absolute(&base).unwrap_or(base)
}

/// A note when the rings would not live in memory: `base` (or the directory it will be made in)
/// is not on a tmpfs, through a symlink to disk or a relative path, say.
fn not_tmpfs(base: &std::path::Path) -> Option<String> {
    let existing = base.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statfs(existing).ok()?;
    (st.f_type as i64 != TMPFS_MAGIC).then(|| {
        format!(
            "the shared-memory base {} is not on a tmpfs ({} is on a file system of type {:#x}): \
             the rings will live on disk; point --shm-dir (or $ALPHAPULSE_SHM_DIR) at /dev/shm",
            base.display(),
            existing.display(),
            st.f_type as i64
        )
    })
}

fn check_pin_cores(flag: &str, cores: &[u64], threads: u64) -> Result<Vec<usize>, ConfigError> {
    if cores.is_empty() {
        return Ok(Vec::new());
    }
    if (cores.len() as u64) < threads {
        return Err(ConfigError(format!(
            "{flag} lists {} cores for {threads} threads or processes; list one core for each",
            cores.len()
        )));
    }
    let mut seen = Vec::new();
    for &c in cores {
        if seen.contains(&c) {
            return Err(ConfigError(format!(
                "{flag} lists core {c} twice; give each thread or process a core of its own"
            )));
        }
        seen.push(c);
    }
    let allowed = rustix::thread::sched_getaffinity(None)
        .map_err(|e| ConfigError(format!("{flag}: cannot read this process's CPU set: {e}")))?;
    for &c in cores {
        if !allowed.is_set(c as usize) {
            let list: Vec<String> = (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|&i| allowed.is_set(i))
                .map(|i| i.to_string())
                .collect();
            return Err(ConfigError(format!(
                "{flag}: core {c} is not available to this process; use cores from {}",
                list.join(",")
            )));
        }
    }
    Ok(cores.iter().map(|&c| c as usize).collect())
}
