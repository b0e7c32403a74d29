//! `load-tester read`: a consumer of a run, standalone or (with `--protocol`) for the tester.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error;
use crate::output;

/// `load-tester read`: a consumer of a run, standalone or (with `--protocol`) for the tester.
pub(super) fn run(args: &crate::config::cli::ReadArgs) -> i32 {
    use std::io::{BufRead, Write};

    use crate::run::consumer::ReadOptions;
    use crate::run::feed_reader::read_any as read_run;
    use crate::run::reader_wire::{Start, ToTester};

    let json = match args
        .json_output
        .as_ref()
        .map(|p| crate::output::files::Target::resolve(p, true))
        .transpose()
    {
        Ok(t) => t,
        Err(m) => {
            let path = args
                .json_output
                .as_ref()
                .expect("resolved from it")
                .display();
            return error(format!("--json-output {path}: {m}"));
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let options = ReadOptions {
        run_dir: args.run_dir.clone(),
        pin_core: args.pin_core.map(|c| c as usize),
        delay_ns: args.delay_ns,
        stale_after: std::time::Duration::from_millis(args.stale_after_ms),
        max_duration: args.duration_secs.map(std::time::Duration::from_secs),
        record: args.record.clone(),
        timeline: args.timeline,
        resume: args.resume.clone(),
        control: Arc::default(),
    };
    let result = if args.protocol {
        // The tester handles Ctrl-C for the whole run: a reader keeps reading until the writers
        // close. It stops when the tester closes its stdin, sends SIGTERM, or dies.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGINT,
            Arc::new(AtomicBool::new(false)),
        );
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop));
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        let stdout = std::io::stdout();
        let mut emit = |m: &ToTester| {
            let mut out = stdout.lock();
            let _ = out
                .write_all(m.line().as_bytes())
                .and_then(|()| out.flush());
        };
        let stop_on_eof = Arc::clone(&stop);
        let control = Arc::clone(&options.control);
        let mut start = || {
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            let start = match stdin.read_line(&mut line) {
                Ok(n) if n > 0 => Start::parse(&line),
                _ => {
                    stop_on_eof.store(true, Ordering::Relaxed);
                    None
                }
            };
            let stop = Arc::clone(&stop_on_eof);
            let control = Arc::clone(&control);
            let _ = std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    // Orders from the tester; anything else on stdin is ignored.
                    let mut line = String::new();
                    while matches!(std::io::stdin().lock().read_line(&mut line), Ok(n) if n > 0) {
                        if let Some(o) = crate::run::reader_wire::Order::parse(&line) {
                            control.order(o);
                        }
                        line.clear();
                    }
                    stop.store(true, Ordering::Relaxed);
                });
            start
        };
        read_run(&options, &stop, &mut emit, &mut start)
    } else {
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop));
        eprintln!("Reading {} (Ctrl-C to stop)", args.run_dir.display());
        read_run(&options, &stop, &mut |_| {}, &mut || None)
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return error(e),
    };
    if args.protocol {
        return crate::exit::OK;
    }
    let report = output::console::render_reader(&outcome);
    match &json {
        Some(t) if t.is_stdout() => eprint!("{report}"),
        _ => print!("{report}"),
    }
    if let Some(t) = &json {
        if let Err(e) = output::json::write_value(&outcome, t) {
            return error(format!("--json-output {}: {e}", t.path().display()));
        }
    }
    if let Some(e) = outcome.capture.as_ref().and_then(|c| c.error.as_ref()) {
        return error(format!("--record: {e}"));
    }
    let failed = outcome
        .streams
        .values()
        .any(|s| s.integrity.lost > 0 || s.integrity.violations() > 0);
    i32::from(failed)
}
