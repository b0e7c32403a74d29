//! `--replay`: a plan's exchanges, symbols, rates and timing from a capture file, checked
//! before anything is created.

use std::path::Path;

use crate::config::cli::ReplayArgs;
use crate::config::ConfigError;
use crate::plan::limits::{MAX_EXCHANGES, MAX_SYMBOLS};
use crate::plan::{ReplayPlan, Stream};
use crate::source::capture::reader::CaptureFile;

/// What a capture makes of a plan.
#[derive(Debug, Clone)]
pub struct FromCapture {
    /// The replay.
    pub replay: ReplayPlan,
    /// Exchange names, by id.
    pub exchanges: Vec<String>,
    /// Symbol names, by id.
    pub symbols: Vec<String>,
    /// Per exchange id, per stream (trades, book): mean and peak rate of the window as
    /// replayed (at `speed`), records per second.
    pub rates: Vec<[(f64, f64); 2]>,
    /// Seconds the window takes to replay once.
    pub replay_secs: f64,
}

/// Reads and checks the capture `args` name and derives the replay's part of the plan.
pub fn from_capture(path: &Path, args: &ReplayArgs) -> Result<FromCapture, ConfigError> {
    let fail = |m: String| ConfigError(format!("--replay {m}"));
    let capture = CaptureFile::open(path).map_err(|e| fail(e.to_string()))?;
    let name = path.display();
    let h = &capture.header;
    if h.exchanges.is_empty() || h.exchanges.len() as u64 > MAX_EXCHANGES {
        return Err(fail(format!(
            "{name}: {} exchanges; a replay takes 1 to {MAX_EXCHANGES}",
            h.exchanges.len()
        )));
    }
    if h.symbols.is_empty() || h.symbols.len() as u64 > MAX_SYMBOLS {
        return Err(fail(format!(
            "{name}: {} symbols; a replay takes 1 to {MAX_SYMBOLS}",
            h.symbols.len()
        )));
    }
    let exchanges: Vec<String> = h
        .exchanges
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if n.is_empty() {
                format!("unused-{i}")
            } else {
                n.clone()
            }
        })
        .collect();
    for n in &exchanges {
        alphapulse_bus::check_name(n).map_err(|e| {
            fail(format!(
                "{name}: exchange {n:?} cannot name a ring of the bus: {e}"
            ))
        })?;
    }
    let secs = |s: f64| (s * 1e9).round() as u64;
    let from_ns = capture
        .first_ts
        .saturating_add(args.replay_from.map_or(0, secs));
    let to_ns = args
        .replay_to
        .map_or(u64::MAX, |s| capture.first_ts.saturating_add(secs(s)))
        .min(capture.last_ts.saturating_add(1));
    if from_ns >= to_ns {
        return Err(ConfigError(format!(
            "--replay-from {} and --replay-to {} leave no records of {name}, which spans {:.3} s",
            args.replay_from.unwrap_or(0.0),
            args.replay_to
                .map_or_else(|| "(its end)".into(), |t| t.to_string()),
            capture.span_ns() as f64 / 1e9
        )));
    }
    let span_ns = to_ns - from_ns;
    let mut rates = vec![[(0.0, 0.0); 2]; exchanges.len()];
    let mut records = 0u64;
    for ((exchange, stream), source) in &capture.sources {
        let (mut n, mut peak) = (0u64, 0.0f64);
        for c in source
            .chunks
            .iter()
            .filter(|c| c.last_ts >= from_ns && c.first_ts < to_ns)
        {
            n += u64::from(c.records);
            // A chunk's mean rate, over at least 1 ms: the peak a ring must hold.
            let span = (c.last_ts - c.first_ts).max(1_000_000) as f64 / 1e9;
            peak = peak.max(f64::from(c.records) / span);
        }
        records += n;
        let i = match stream {
            Stream::Trades => 0,
            Stream::Book => 1,
        };
        rates[usize::from(*exchange)][i] = (
            n as f64 / (span_ns.max(1) as f64 / 1e9) * args.speed,
            peak * args.speed,
        );
    }
    if records == 0 {
        return Err(fail(format!(
            "{name}: no records between --replay-from and --replay-to"
        )));
    }
    let replay = ReplayPlan {
        file: path.display().to_string(),
        speed: args.speed,
        looped: args.looped,
        from_ns,
        to_ns,
        period_ns: span_ns.saturating_add((span_ns / records).max(1)),
    };
    Ok(FromCapture {
        replay_secs: span_ns as f64 / 1e9 / args.speed,
        replay,
        exchanges,
        symbols: h.symbols.clone(),
        rates,
    })
}
