//! `--mode worker`: joins a coordinator, runs the segment it hands out on this host's bus, and
//! exits with the run's exit status as the coordinator judged it.

use super::error;
use super::load_test::logs_on_stderr;
use crate::distributed::worker::{work, WorkerError, WorkerNotice};
use crate::output::format::thousands;

/// Watches nothing: a worker without `--metrics-addr`.
struct NoObserver;

impl crate::report::observe::Observer for NoObserver {}

/// Runs the worker `args` describe; returns the exit status.
pub(super) fn run(args: &crate::config::cli::RunArgs) -> i32 {
    let (config, local) = match crate::config::distributed::worker(args) {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    if args.verbose {
        logs_on_stderr();
    }
    let mut metrics = match args
        .metrics_addr
        .as_deref()
        .map(|a| crate::output::metrics::Metrics::bind(a, crate::run::placement::lower_this_thread))
        .transpose()
    {
        Ok(m) => m,
        Err(e) => return error(format!("--metrics-addr {e}")),
    };
    if let Some(m) = &metrics {
        eprintln!("Metrics of this worker: http://{}/metrics", m.addr());
    }
    let signals = super::signals::Signals::install();
    eprintln!(
        "🚀 Starting AlphaPulse Load Tester: worker, joining {}",
        config.coordinator
    );
    let mut localize = |plan: &mut crate::plan::Plan| {
        for note in crate::config::distributed::localize(plan, &local)? {
            eprintln!("note: {note}");
        }
        Ok(())
    };
    let mut notices = |n: WorkerNotice| match n {
        WorkerNotice::Joined {
            index,
            workers,
            segment,
        } => {
            let ids: Vec<String> = segment.exchanges.iter().map(|e| e.id.to_string()).collect();
            eprintln!(
                "joined as worker {index} of {workers}: exchanges {} at {} msgs/s, {} s{}",
                ids.join(","),
                thousands(segment.total_target_rate()),
                segment.total_secs(),
                if segment.pin_cores.is_empty() {
                    String::new()
                } else {
                    format!(", generator cores {:?}", segment.pin_cores)
                }
            );
        }
        WorkerNotice::Ready {
            offset_ns,
            round_trip_ns,
        } => eprintln!(
            "ready: clock offset to the coordinator {:+.3} ms (round trip {:.3} ms)",
            offset_ns as f64 / 1e6,
            round_trip_ns as f64 / 1e6
        ),
        WorkerNotice::Started => eprintln!("every worker is ready: the load starts"),
        WorkerNotice::Late(ns) => eprintln!(
            "warning: the start time had passed {:.1} ms before it arrived: this worker starts \
             late, its intervals behind the others'",
            ns as f64 / 1e6
        ),
        WorkerNotice::Stopping(reason) => eprintln!("the coordinator stopped the run: {reason}"),
    };
    let mut none = NoObserver;
    let observer: &mut dyn crate::report::observe::Observer = match metrics.as_mut() {
        Some(m) => m,
        None => &mut none,
    };
    let result = work(
        &config,
        &signals.stop,
        &mut localize,
        &mut notices,
        observer,
    );
    if let Some(m) = &metrics {
        let outcome = match &result {
            Ok(w) => w.outcome.clone().unwrap_or_else(|| "interrupted".into()),
            Err(_) => "interrupted".into(),
        };
        m.finish(&outcome);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(args.metrics_linger);
        while std::time::Instant::now() < until && !signals.stop.aborted() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    drop(metrics);
    let worked = match result {
        Ok(w) => w,
        Err(WorkerError::Interrupted) | Err(WorkerError::Aborted(None))
            if signals.first().is_some() =>
        {
            let (name, code) = signals.first().unwrap_or(("SIGINT", crate::exit::SIGINT));
            eprintln!("Stopped by {name}; shared memory removed, nothing was reported");
            return code;
        }
        Err(e) => return error(e),
    };
    if let Some(why) = &worked.coordinator_lost {
        return error(format!(
            "lost the coordinator at {} ({why}): the run was stopped and its shared memory \
             removed; the coordinator's report, if any, covers this worker up to then",
            config.coordinator
        ));
    }
    if let Some((name, code)) = signals.first() {
        eprintln!("Stopped by {name}: what was measured was sent to the coordinator");
        return code;
    }
    match worked.exit_code {
        Some(code) => {
            eprintln!(
                "the coordinator judged the run {}: exit status {code}",
                worked.outcome.as_deref().unwrap_or("?")
            );
            code
        }
        None => error("the coordinator did not send the verdict; see its report"),
    }
}
