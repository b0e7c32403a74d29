//! Splitting a plan among the workers of a distributed run so that the segments add up to
//! exactly the whole, as k6's execution segments do.
//!
//! With at least as many exchanges as workers, each worker gets whole exchanges (round robin by
//! exchange id): every exchange runs on one host, with its own rings, books and sequence
//! numbers, and the segments' rates add up because each exchange's rate is counted once. With
//! fewer exchanges than workers, every worker gets every exchange at a share of its rates:
//! worker `i` of `n` gets `floor((i + 1) r / n) - floor(i r / n)` of a rate `r`, integers that
//! add up to `r` whatever `n` (no rounding loses a message); an exchange then runs on several
//! hosts, each with rings of its own, and the merged report adds their counts. Rates of
//! non-constant patterns cannot be cut that way: such plans split by exchange only.

use serde::{Deserialize, Serialize};

use super::patterns::PatternSpec;
use super::Plan;

/// How a plan was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Each worker runs whole exchanges.
    Exchanges,
    /// Each worker runs every exchange at a share of its rates.
    Rates,
}

/// Why a plan cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SplitError(pub String);

/// `r` cut into `n` integer shares that add up to `r`: share `i` is
/// `floor((i + 1) r / n) - floor(i r / n)`.
pub fn share(r: u64, i: u64, n: u64) -> u64 {
    let cum = |k: u64| (u128::from(r) * u128::from(k) / u128::from(n)) as u64;
    cum(i + 1) - cum(i)
}

/// Splits `plan` into `workers` segments that add up to it (see the module docs), each a plan
/// of its own with `threads` threads at most (never more than its exchanges), and says how.
pub fn split(plan: &Plan, workers: usize) -> Result<(Split, Vec<Plan>), SplitError> {
    if workers == 0 {
        return Err(SplitError(
            "a distributed run needs at least one worker".into(),
        ));
    }
    let n = workers as u64;
    let with_threads = |mut p: Plan| {
        p.threads = p.threads.min(p.exchanges.len()).max(1);
        for (i, e) in p.exchanges.iter_mut().enumerate() {
            e.thread = i % p.threads;
        }
        // Cores are the worker's own to choose.
        p.pin_cores.clear();
        p.reader_pin_cores.clear();
        p
    };
    if plan.exchanges.len() >= workers {
        let segments = (0..workers)
            .map(|w| {
                let mut p = plan.clone();
                p.exchanges = plan
                    .exchanges
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % workers == w)
                    .map(|(_, e)| e.clone())
                    .collect();
                with_threads(p)
            })
            .collect();
        return Ok((Split::Exchanges, segments));
    }
    if !plan.rates_are_constant() {
        return Err(SplitError(format!(
            "{} exchange(s) among {workers} workers: the rates would have to be cut, and only \
             constant rates can be cut exactly; use at least as many exchanges as workers",
            plan.exchanges.len()
        )));
    }
    let segments = (0..n)
        .map(|w| {
            let mut p = plan.clone();
            // Each worker simulates its own share of every exchange: its records differ from
            // the others' (a seed of its own), as they would from separate feed handlers.
            p.seed = plan.seed.wrapping_add(w);
            for e in &mut p.exchanges {
                e.trades_per_sec = share(e.trades_per_sec, w, n);
                e.book_per_sec = share(e.book_per_sec, w, n);
                e.trades_pattern = PatternSpec::Constant {
                    rate: Some(e.trades_per_sec as f64),
                };
                e.book_pattern = PatternSpec::Constant {
                    rate: Some(e.book_per_sec as f64),
                };
            }
            with_threads(p)
        })
        .collect();
    Ok((Split::Rates, segments))
}

#[cfg(test)]
mod tests {
    use crate::plan::patterns::PatternSpec;
    use crate::plan::segments::{share, split, Split};
    use crate::plan::{ClockSource, ExchangePlan, Pacing, PacingMode, Plan, Stream, WriterMode};

    /// A plan of `exchanges` exchanges at 10,000 trades and 5,000 book updates per second.
    fn plan(exchanges: u16) -> Plan {
        Plan {
            exchanges: (0..exchanges)
                .map(|id| ExchangePlan {
                    id,
                    name: format!("ex{id}"),
                    trades_per_sec: 10_000,
                    book_per_sec: 5_000,
                    trades_capacity: 8192,
                    book_capacity: 4096,
                    thread: 0,
                    trades_pattern: PatternSpec::Constant {
                        rate: Some(10_000.0),
                    },
                    book_pattern: PatternSpec::Constant {
                        rate: Some(5_000.0),
                    },
                })
                .collect(),
            symbols: vec!["BTC/USD".into()],
            threads: 1,
            pin_cores: Vec::new(),
            pacing: Pacing {
                mode: PacingMode::Hybrid,
                spin_ns: None,
            },
            clock: ClockSource::Monotonic,
            writer_mode: WriterMode::Overwrite,
            consumers: 1,
            reader_pin_cores: Vec::new(),
            reader_delay_ns: 0,
            seed: 42,
            warmup_secs: 1,
            duration_secs: 60,
            interval_ns: 1_000_000_000,
            point_secs: 1,
            lag_budget_ns: 1_000_000,
            scenario: None,
            record: None,
            replay: None,
            transport: Default::default(),
            chaos: None,
        }
    }

    #[test]
    fn shares_add_up_to_the_whole_whatever_the_count() {
        for r in [0, 1, 7, 10_000, 333_333, 6_000_000, u64::MAX / 4] {
            for n in 1..=13 {
                let sum: u128 = (0..n).map(|i| u128::from(share(r, i, n))).sum();
                assert_eq!(sum, u128::from(r), "r {r} n {n}");
                let (lo, hi) = (0..n)
                    .map(|i| share(r, i, n))
                    .fold((u64::MAX, 0), |(a, b), s| (a.min(s), b.max(s)));
                assert!(hi - lo <= 1, "shares differ by one at most: r {r} n {n}");
            }
        }
    }

    #[test]
    fn segments_add_up_to_the_plan() {
        let plan = plan(5);
        for workers in [1, 2, 3, 5] {
            let (how, segments) = split(&plan, workers).unwrap();
            assert_eq!(how, Split::Exchanges);
            assert_eq!(segments.len(), workers);
            let mut ids: Vec<u16> = segments
                .iter()
                .flat_map(|s| s.exchanges.iter().map(|e| e.id))
                .collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![0, 1, 2, 3, 4]);
            for stream in Stream::ALL {
                let total: u64 = segments.iter().map(|s| s.target_rate(stream)).sum();
                assert_eq!(total, plan.target_rate(stream));
            }
        }
        let (how, segments) = split(&plan, 7).unwrap();
        assert_eq!(how, Split::Rates);
        for stream in Stream::ALL {
            let total: u64 = segments.iter().map(|s| s.target_rate(stream)).sum();
            assert_eq!(total, plan.target_rate(stream), "{stream:?}");
        }
        assert!(split(&plan, 0).is_err());
    }

    #[test]
    fn segments_pass_the_check_and_broken_plans_do_not() {
        let whole = plan(5);
        for n in 1..=7 {
            for seg in split(&whole, n).unwrap().1 {
                seg.check().unwrap();
            }
        }
        type Break = fn(&mut Plan);
        let broken: [(&str, Break); 6] = [
            ("threads", |p| p.threads = 0),
            ("thread 3", |p| p.exchanges[0].thread = 3),
            ("power of two", |p| p.exchanges[1].trades_capacity = 1000),
            ("repeated", |p| p.exchanges[1].id = 0),
            ("interval", |p| p.interval_ns = 7),
            ("total rate", |p| p.exchanges[0].trades_per_sec = u64::MAX),
        ];
        for (what, f) in broken {
            let mut p = whole.clone();
            f(&mut p);
            let e = p.check().unwrap_err();
            assert!(e.contains(what) || e.contains("outside"), "{what}: {e}");
        }
    }
}
