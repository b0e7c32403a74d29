//! Comparison of two runs, metric by metric: the logic of `load-tester compare BASELINE.json
//! CURRENT.json` and of `--baseline FILE` on a run. Rendering lives in
//! [`crate::output::comparison`].
//!
//! A metric whose change in the worse direction exceeds its threshold is a regression;
//! thresholds have defaults per metric and are configurable by pattern (`--thresholds FILE`,
//! `--threshold PATTERN=PCT`).
//!
//! Latency metrics are computed from the stored histograms, not copied from the summary numbers:
//! a hand-edited summary that disagrees with its histogram is reported, and the histogram wins.
//! Beyond the percentiles, the histograms give one metric that summary numbers cannot: the share
//! of the current run's writes slower than the baseline's P99.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plan::Plan;
use crate::results::file::{kind_label, InputError, Loaded, KINDS, STREAMS};

/// Which way a metric gets better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Higher is better (throughput).
    Higher,
    /// Lower is better (latency, errors, resources).
    Lower,
}

/// How one metric fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Status {
    /// Within its threshold.
    Ok,
    /// Better than the baseline by more than its threshold.
    Improved,
    /// Worse than the baseline by more than its threshold.
    Regressed,
    /// Shown, not judged: no threshold, or too few samples, or no value.
    NotJudged(String),
}

/// One metric of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Dotted key that thresholds match, e.g. `latency.service.all.p99`.
    pub key: String,
    /// Section of the report it belongs to.
    pub section: String,
    /// Short label within the section.
    pub label: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// The baseline's value (`None`: nothing recorded).
    pub baseline: Option<f64>,
    /// The current run's value.
    pub current: Option<f64>,
    /// Which way is better.
    pub better: Better,
    /// `(current - baseline) / baseline`, percent; infinite when the baseline is 0 and the
    /// current value is not.
    pub change_pct: Option<f64>,
    /// Change in the worse direction that counts as a regression, percent (`None`: not judged).
    pub threshold_pct: Option<f64>,
    /// The outcome.
    pub status: Status,
}

/// A threshold: percent, or not judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A change in the worse direction above this percentage is a regression.
    Pct(f64),
    /// Shown, never a regression.
    Off,
}

/// Thresholds by metric-key pattern: dot-separated segments, `*` matching any one segment.
/// The most specific pattern wins (fewest `*`); user patterns beat the defaults; among equals
/// the one given last wins.
///
/// Beside the percentage, a metric has a *noise floor*: the least absolute change, in the
/// metric's unit, that can count as a regression or an improvement. Back-to-back runs of the
/// same load on a shared VM move a 60 ns write by a few ns but a response-time P99 by tens of
/// microseconds; a percentage alone flags the latter every time. Floors match by pattern like
/// thresholds ([`DEFAULT_NOISE_FLOORS`], `--noise-floor PATTERN=VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// `(pattern, threshold, user)` in the order given: the defaults (`user == false`) first,
    /// then user rules, each of whose patterns matches at least one metric key.
    rules: Vec<(String, Threshold, bool)>,
    /// `(pattern, floor, user)` in the order given, as `rules`; a floor is in the unit of the
    /// metrics its pattern matches (ns for latencies), at least 0.
    floors: Vec<(String, f64, bool)>,
}

/// The default thresholds, percent. Generator lag is the tester's own lateness (judged by the
/// verdict, which makes a lagging run INVALID), so it is shown but not judged here.
pub const DEFAULT_THRESHOLDS: &[(&str, Option<f64>)] = &[
    ("throughput.*.rate", Some(5.0)),
    ("latency.*.*.mean", Some(20.0)),
    ("latency.*.*.p50", Some(20.0)),
    ("latency.*.*.p90", Some(20.0)),
    ("latency.*.*.p99", Some(25.0)),
    ("latency.*.*.p999", Some(50.0)),
    ("latency.*.*.slower_than_base_p99_pct", Some(100.0)),
    ("latency.lag.*.*", None),
    ("errors.error_rate_pct", Some(0.0)),
    ("resources.cpu_working_avg_pct", Some(25.0)),
    ("resources.rss_peak_mib", Some(20.0)),
];

/// The default noise floors, in each metric's unit (ns for latencies, percentage points for
/// shares, MiB for memory). Chosen from back-to-back default runs on a 2-core VM
/// (docs/reports.md): a write's service time is steady to a few ns, so a 2x slower write
/// (+50 ns and more) is caught; response time and end-to-end latency carry the machine's
/// scheduling, whose tails move by milliseconds from one run to the next, so only their medians
/// are judged finely.
pub const DEFAULT_NOISE_FLOORS: &[(&str, f64)] = &[
    ("latency.service.*.p50", 20.0),
    ("latency.service.*.p90", 20.0),
    ("latency.service.*.mean", 20.0),
    ("latency.service.*.p99", 100.0),
    ("latency.service.*.p999", 500.0),
    ("latency.service.*.slower_than_base_p99_pct", 1.0),
    ("latency.response.*.p50", 200.0),
    ("latency.response.*.p90", 1_000.0),
    ("latency.response.*.mean", 50_000.0),
    ("latency.response.*.p99", 1_000_000.0),
    ("latency.response.*.p999", 10_000_000.0),
    ("latency.response.*.slower_than_base_p99_pct", 5.0),
    ("latency.e2e.*.p50", 200.0),
    ("latency.e2e.*.p90", 1_000.0),
    ("latency.e2e.*.mean", 50_000.0),
    ("latency.e2e.*.p99", 1_000_000.0),
    ("latency.e2e.*.p999", 10_000_000.0),
    ("latency.e2e.*.slower_than_base_p99_pct", 5.0),
    ("throughput.*.rate", 0.0),
    ("resources.cpu_avg_pct", 5.0),
    ("resources.cpu_working_avg_pct", 10.0),
    ("resources.rss_peak_mib", 5.0),
];

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rules: DEFAULT_THRESHOLDS
                .iter()
                .map(|(p, t)| {
                    (
                        p.to_string(),
                        t.map_or(Threshold::Off, Threshold::Pct),
                        false,
                    )
                })
                .collect(),
            floors: DEFAULT_NOISE_FLOORS
                .iter()
                .map(|(p, f)| (p.to_string(), *f, false))
                .collect(),
        }
    }
}

/// A floor as `--noise-floor` and the thresholds file write it: a number in the metric's unit,
/// or a duration with a unit (`250ns`, `2us`, `1.5ms`, `1s`) for latencies.
fn parse_floor(value: &str) -> Result<f64, String> {
    let v = value.trim();
    let (number, scale) = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ]
    .iter()
    .find_map(|(unit, scale)| v.strip_suffix(unit).map(|n| (n.trim(), *scale)))
    .unwrap_or((v, 1.0));
    match number.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x * scale),
        _ => Err(format!(
            "noise floor {value:?} is not a number >= 0 (with ns, us, ms or s for latencies)"
        )),
    }
}

fn matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    p.len() == k.len() && p.iter().zip(&k).all(|(p, k)| *p == "*" || p == k)
}

fn parse_threshold(value: &str) -> Result<Threshold, String> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("off") {
        return Ok(Threshold::Off);
    }
    match v.trim_end_matches('%').parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(Threshold::Pct(x)),
        _ => Err(format!(
            "threshold {value:?} is not a percentage >= 0 or \"off\""
        )),
    }
}

impl Thresholds {
    /// Adds a user rule; `pattern` must match at least one metric key.
    pub fn set(&mut self, pattern: &str, threshold: Threshold) -> Result<(), String> {
        let keys = all_keys();
        if !keys.iter().any(|k| matches(pattern, k)) {
            return Err(format!(
                "{pattern:?} matches no metric; metric keys look like latency.service.all.p99, \
                 throughput.total.rate, errors.error_rate_pct, resources.cpu_avg_pct \
                 (`*` matches one segment)"
            ));
        }
        self.rules.push((pattern.to_string(), threshold, true));
        Ok(())
    }

    /// Adds a user noise floor; `pattern` must match at least one metric key.
    pub fn set_floor(&mut self, pattern: &str, floor: f64) -> Result<(), String> {
        if !all_keys().iter().any(|k| matches(pattern, k)) {
            return Err(format!(
                "{pattern:?} matches no metric; metric keys look like latency.service.all.p99"
            ));
        }
        self.floors.push((pattern.to_string(), floor, true));
        Ok(())
    }

    /// Adds a noise floor given as `PATTERN=VALUE` (see [`DEFAULT_NOISE_FLOORS`]).
    pub fn set_floor_arg(&mut self, arg: &str) -> Result<(), String> {
        let (pattern, value) = arg.split_once('=').ok_or_else(|| {
            format!("{arg:?}: expected PATTERN=VALUE, e.g. latency.response.*.p99=200us")
        })?;
        let f = parse_floor(value).map_err(|e| format!("{pattern}: {e}"))?;
        self.set_floor(pattern.trim(), f)
    }

    /// The noise floor of `key`, in its unit (0 when no pattern matches).
    pub fn floor(&self, key: &str) -> f64 {
        self.floors
            .iter()
            .filter(|(p, _, _)| matches(p, key))
            .max_by_key(|(p, _, user)| (*user, usize::MAX - p.matches('*').count()))
            .map_or(0.0, |(_, f, _)| *f)
    }

    /// Adds a rule given as `PATTERN=PCT` (or `PATTERN=off`).
    pub fn set_arg(&mut self, arg: &str) -> Result<(), String> {
        let (pattern, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected PATTERN=PCT, e.g. latency.*.*.p99=10"))?;
        let t = parse_threshold(value).map_err(|e| format!("{pattern}: {e}"))?;
        self.set(pattern.trim(), t)
    }

    /// Reads rules from a TOML file of `"pattern" = pct` (or `"off"`) lines, and noise floors
    /// from its `[noise_floor]` table of `"pattern" = value` lines.
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let name = path.display();
        let text = crate::results::file::read_text(path).map_err(|e| format!("{name}: {e}"))?;
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = format!("{name}: {}", e.message().trim());
            crate::plan::text::shorten_numbers(&message)
        })?;
        if let Some(floors) = table.remove("noise_floor") {
            let toml::Value::Table(floors) = floors else {
                return Err(format!(
                    "{name}: noise_floor must be a table of \"pattern\" = value"
                ));
            };
            for (pattern, value) in floors {
                let f = match &value {
                    toml::Value::Integer(i) => parse_floor(&i.to_string()),
                    toml::Value::Float(f) => parse_floor(&f.to_string()),
                    toml::Value::String(s) => parse_floor(s),
                    other => Err(format!("noise floor {other} is not a number or a duration")),
                }
                .map_err(|e| format!("{name}: noise_floor: {pattern}: {e}"))?;
                self.set_floor(&pattern, f)
                    .map_err(|e| format!("{name}: noise_floor: {e}"))?;
            }
        }
        for (pattern, value) in table {
            let t = match &value {
                toml::Value::Integer(i) => parse_threshold(&i.to_string()),
                toml::Value::Float(f) => parse_threshold(&f.to_string()),
                toml::Value::String(s) => parse_threshold(s),
                other => Err(format!(
                    "threshold {other} is not a percentage >= 0 or \"off\""
                )),
            }
            .map_err(|e| format!("{name}: {pattern}: {e}"))?;
            self.set(&pattern, t).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// The threshold of `key`.
    pub fn get(&self, key: &str) -> Threshold {
        self.rules
            .iter()
            .filter(|(p, _, _)| matches(p, key))
            .max_by_key(|(p, _, user)| (*user, usize::MAX - p.matches('*').count()))
            .map_or(Threshold::Off, |(_, t, _)| *t)
    }
}

/// Two runs' configurations side by side: what differs in the load itself (comparing those is
/// meaningless unless asked for) and what differs in how it was generated or measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigDiff {
    /// Differences in the offered load: exchanges, rates, symbols, writer mode.
    pub load: Vec<String>,
    /// Other differences: duration, warm-up, pacing, threads, clock, rings, seed, lag budget.
    pub other: Vec<String>,
}

/// Compares the configurations of two runs.
pub fn config_diff(base: &Plan, cur: &Plan) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    let mut diff = |load: bool, what: &str, b: String, c: String| {
        if b != c {
            let line = format!("{what}: baseline {b}, current {c}");
            if load {
                d.load.push(line)
            } else {
                d.other.push(line)
            }
        }
    };
    diff(
        true,
        "exchanges",
        base.exchanges.len().to_string(),
        cur.exchanges.len().to_string(),
    );
    let rates = |p: &Plan| {
        p.exchanges
            .iter()
            .map(|e| format!("{}+{}", e.trades_per_sec, e.book_per_sec))
            .collect::<Vec<_>>()
            .join(",")
    };
    diff(
        true,
        "per-exchange rates (trades+book msgs/s)",
        rates(base),
        rates(cur),
    );
    diff(
        true,
        "symbols",
        base.symbols.len().to_string(),
        cur.symbols.len().to_string(),
    );
    let mode = |p: &Plan| {
        match p.writer_mode {
            crate::plan::WriterMode::Backpressure => "backpressure",
            crate::plan::WriterMode::Overwrite => "overwrite",
        }
        .to_string()
    };
    diff(true, "writer mode", mode(base), mode(cur));
    diff(
        false,
        "duration (s)",
        base.duration_secs.to_string(),
        cur.duration_secs.to_string(),
    );
    diff(
        false,
        "warm-up (s)",
        base.warmup_secs.to_string(),
        cur.warmup_secs.to_string(),
    );
    diff(
        false,
        "generator threads",
        base.threads.to_string(),
        cur.threads.to_string(),
    );
    diff(
        false,
        "pinned cores",
        format!("{:?}", base.pin_cores),
        format!("{:?}", cur.pin_cores),
    );
    diff(
        false,
        "pacing",
        base.pacing.describe(),
        cur.pacing.describe(),
    );
    diff(
        false,
        "clock",
        format!("{:?}", base.clock),
        format!("{:?}", cur.clock),
    );
    let caps = |p: &Plan| {
        p.exchanges
            .iter()
            .map(|e| format!("{}/{}", e.trades_capacity, e.book_capacity))
            .collect::<Vec<_>>()
            .join(",")
    };
    diff(false, "ring capacities", caps(base), caps(cur));
    diff(false, "seed", base.seed.to_string(), cur.seed.to_string());
    diff(
        false,
        "lag budget (ns)",
        base.lag_budget_ns.to_string(),
        cur.lag_budget_ns.to_string(),
    );
    d
}

/// Checks that two runs may be compared: an error naming every difference in the offered load
/// unless `allow` is set; the other differences as warnings.
pub fn check_config(base: &Plan, cur: &Plan, allow: bool) -> Result<Vec<String>, InputError> {
    let d = config_diff(base, cur);
    if !d.load.is_empty() && !allow {
        return Err(InputError(format!(
            "the baseline ran a different load ({}); the runs are not comparable. \
             Compare runs of the same configuration, or pass --allow-config-change",
            d.load.join("; ")
        )));
    }
    Ok(d.load
        .iter()
        .chain(&d.other)
        .map(|l| format!("configuration differs: {l}"))
        .collect())
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The baseline's source.
    pub baseline: String,
    /// The current run's source.
    pub current: String,
    /// Every metric, in report order.
    pub metrics: Vec<Metric>,
    /// Things the reader must know: configuration differences, interrupted or invalid runs,
    /// hand-edited files.
    pub warnings: Vec<String>,
}

impl Comparison {
    /// The metrics that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Metric> {
        self.metrics
            .iter()
            .filter(|m| m.status == Status::Regressed)
    }

    /// Whether anything regressed.
    pub fn regressed(&self) -> bool {
        self.regressions().next().is_some()
    }
}

/// A latency metric's statistic.
#[derive(Clone, Copy)]
enum Stat {
    Quantile(&'static str, &'static str, f64),
    Mean,
    Max,
    SlowerThanBaseP99,
}

const STATS: [Stat; 8] = [
    Stat::Quantile("p50", "P50", 0.5),
    Stat::Quantile("p90", "P90", 0.9),
    Stat::Quantile("p99", "P99", 0.99),
    Stat::Quantile("p999", "P99.9", 0.999),
    Stat::Quantile("p9999", "P99.99", 0.9999),
    Stat::Max,
    Stat::Mean,
    Stat::SlowerThanBaseP99,
];

/// Samples beyond a percentile needed before a change of it is judged.
pub const MIN_TAIL_SAMPLES: f64 = 10.0;

impl Stat {
    fn key(self) -> &'static str {
        match self {
            Stat::Quantile(k, _, _) => k,
            Stat::Mean => "mean",
            Stat::Max => "max",
            Stat::SlowerThanBaseP99 => "slower_than_base_p99_pct",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Stat::Quantile(_, l, _) => l,
            Stat::Mean => "Mean",
            Stat::Max => "Max",
            Stat::SlowerThanBaseP99 => "Slower than baseline P99",
        }
    }
}

fn all_keys() -> Vec<String> {
    let mut keys: Vec<String> = ["total", "trades", "book"]
        .iter()
        .flat_map(|s| {
            [
                format!("throughput.{s}.rate"),
                format!("throughput.{s}.peak_rate"),
                format!("throughput.{s}.achievement_pct"),
                format!("throughput.{s}.backlog"),
            ]
        })
        .collect();
    for kind in KINDS {
        for stream in STREAMS {
            for stat in STATS {
                keys.push(format!("latency.{kind}.{stream}.{}", stat.key()));
            }
        }
    }
    for k in [
        "errors.error_rate_pct",
        "errors.buffer_overflows",
        "errors.write_failures",
        "resources.cpu_avg_pct",
        "resources.cpu_working_avg_pct",
        "resources.cpu_peak_pct",
        "resources.rss_peak_mib",
        "resources.rss_avg_mib",
    ] {
        keys.push(k.to_string());
    }
    keys
}

/// Share of `h`'s values above `value`, percent.
fn share_above(h: &Histogram<u64>, value: u64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let above = h.len() - h.count_between(0, value).min(h.len());
    100.0 * above as f64 / h.len() as f64
}

fn judge(
    baseline: Option<f64>,
    current: Option<f64>,
    better: Better,
    threshold: Threshold,
    floor: f64,
    few: Option<String>,
) -> (Option<f64>, Option<f64>, Status) {
    let (Some(b), Some(c)) = (baseline, current) else {
        return (
            None,
            None,
            Status::NotJudged("no value in one of the runs".into()),
        );
    };
    let change = if b == 0.0 {
        if c == 0.0 {
            0.0
        } else {
            f64::INFINITY * c.signum()
        }
    } else {
        100.0 * (c - b) / b.abs()
    };
    let Threshold::Pct(t) = threshold else {
        return (Some(change), None, Status::NotJudged("no threshold".into()));
    };
    if let Some(reason) = few {
        return (Some(change), Some(t), Status::NotJudged(reason));
    }
    let worse = match better {
        Better::Lower => change,
        Better::Higher => -change,
    };
    if (worse > t || (-worse > t && t > 0.0)) && (c - b).abs() <= floor {
        return (
            Some(change),
            Some(t),
            Status::NotJudged(format!(
                "a change of {} is within the noise floor of {}",
                trim_number((c - b).abs()),
                trim_number(floor)
            )),
        );
    }
    let status = if worse > t {
        Status::Regressed
    } else if -worse > t && t > 0.0 {
        Status::Improved
    } else {
        Status::Ok
    };
    (Some(change), Some(t), status)
}

/// `1234.5` as `1234.5`, `2000.0` as `2000`: a number in a message, as short as it is exact.
fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Compares `current` against `baseline` metric by metric. `extra_warnings` (e.g. from
/// [`check_config`]) head the warnings.
pub fn compare(
    baseline: &Loaded,
    current: &Loaded,
    thresholds: &Thresholds,
    extra_warnings: Vec<String>,
) -> Comparison {
    let mut metrics = Vec::new();
    #[allow(clippy::too_many_arguments)]
    let mut push = |key: String,
                    section: &str,
                    label: &str,
                    unit: &'static str,
                    better: Better,
                    b: Option<f64>,
                    c: Option<f64>,
                    few: Option<String>| {
        let threshold = thresholds.get(&key);
        let floor = thresholds.floor(&key);
        let (change_pct, threshold_pct, status) = judge(b, c, better, threshold, floor, few);
        metrics.push(Metric {
            key,
            section: section.to_string(),
            label: label.to_string(),
            unit,
            baseline: b,
            current: c,
            better,
            change_pct,
            threshold_pct,
            status,
        });
    };

    let (b, c) = (&baseline.results, &current.results);
    for (name, bt, ct) in [
        ("total", &b.throughput.total, &c.throughput.total),
        ("trades", &b.throughput.trades, &c.throughput.trades),
        ("book", &b.throughput.book, &c.throughput.book),
    ] {
        let section = "Throughput";
        push(
            format!("throughput.{name}.rate"),
            section,
            &format!("{name} rate"),
            "msgs/s",
            Better::Higher,
            Some(bt.actual_rate),
            Some(ct.actual_rate),
            None,
        );
        push(
            format!("throughput.{name}.peak_rate"),
            section,
            &format!("{name} peak 1-s rate"),
            "msgs/s",
            Better::Higher,
            Some(bt.peak_rate),
            Some(ct.peak_rate),
            None,
        );
        push(
            format!("throughput.{name}.achievement_pct"),
            section,
            &format!("{name} achievement"),
            "%",
            Better::Higher,
            Some(bt.achievement_pct),
            Some(ct.achievement_pct),
            None,
        );
        push(
            format!("throughput.{name}.backlog"),
            section,
            &format!("{name} due, never sent"),
            "msgs",
            Better::Lower,
            Some(bt.backlog as f64),
            Some(ct.backlog as f64),
            None,
        );
    }

    let mut warnings = extra_warnings;
    for kind in KINDS {
        for stream in STREAMS {
            let (Some(bh), Some(ch)) = (
                baseline.histograms.get(&(kind, stream)),
                current.histograms.get(&(kind, stream)),
            ) else {
                let has = |l: &Loaded| l.histograms.contains_key(&(kind, stream));
                if stream == "all" && has(baseline) != has(current) {
                    warnings.push(format!(
                        "{} is in only one of the runs (readers in one, none in the other): not compared",
                        kind_label(kind).to_lowercase()
                    ));
                }
                continue;
            };
            let section = format!("{}, {stream}", kind_label(kind));
            let base_p99 = (!bh.is_empty()).then(|| bh.value_at_quantile(0.99));
            for stat in STATS {
                let key = format!("latency.{kind}.{stream}.{}", stat.key());
                let value = |h: &Histogram<u64>| -> Option<f64> {
                    if h.is_empty() {
                        return None;
                    }
                    Some(match stat {
                        Stat::Quantile(_, _, q) => h.value_at_quantile(q) as f64,
                        Stat::Mean => h.mean(),
                        Stat::Max => h.max() as f64,
                        Stat::SlowerThanBaseP99 => share_above(h, base_p99?),
                    })
                };
                let tail = |h: &Histogram<u64>, q: f64| h.len() as f64 * (1.0 - q);
                let tail_few = |q: f64| {
                    let n = tail(bh, q).min(tail(ch, q));
                    (n < MIN_TAIL_SAMPLES).then(|| {
                        format!(
                            "too few samples: {n:.1} beyond P{} (at least {MIN_TAIL_SAMPLES} needed)",
                            100.0 * q
                        )
                    })
                };
                let few = match stat {
                    Stat::Quantile(_, _, q) => tail_few(q),
                    Stat::SlowerThanBaseP99 => tail_few(0.99),
                    Stat::Mean | Stat::Max => ((bh.len().min(ch.len()) as f64) < MIN_TAIL_SAMPLES)
                        .then(|| "too few samples".to_string()),
                };
                let unit = if matches!(stat, Stat::SlowerThanBaseP99) {
                    "%"
                } else {
                    "ns"
                };
                push(
                    key,
                    &section,
                    stat.label(),
                    unit,
                    Better::Lower,
                    value(bh),
                    value(ch),
                    few,
                );
            }
        }
    }

    let section = "Errors";
    push(
        "errors.error_rate_pct".into(),
        section,
        "error rate",
        "%",
        Better::Lower,
        Some(b.errors.error_rate_pct),
        Some(c.errors.error_rate_pct),
        None,
    );
    push(
        "errors.buffer_overflows".into(),
        section,
        "buffer overflows",
        "writes",
        Better::Lower,
        Some(b.errors.buffer_overflows as f64),
        Some(c.errors.buffer_overflows as f64),
        None,
    );
    push(
        "errors.write_failures".into(),
        section,
        "write failures",
        "writes",
        Better::Lower,
        Some(b.errors.write_failures as f64),
        Some(c.errors.write_failures as f64),
        None,
    );
    let section = "Resources (tester process)";
    let (br, cr) = (&b.resources, &c.resources);
    let samples = |n: usize| (n == 0).then(|| "no resource samples".to_string());
    let few_res = samples(br.samples).or_else(|| samples(cr.samples));
    for (key, label, unit, bv, cv) in [
        (
            "resources.cpu_avg_pct",
            "CPU avg (% of one core)",
            "%",
            br.cpu_avg_pct,
            cr.cpu_avg_pct,
        ),
        (
            "resources.cpu_working_avg_pct",
            "CPU working avg (% of one core)",
            "%",
            br.cpu_working_avg_pct,
            cr.cpu_working_avg_pct,
        ),
        (
            "resources.cpu_peak_pct",
            "CPU peak (% of one core)",
            "%",
            br.cpu_peak_pct,
            cr.cpu_peak_pct,
        ),
        (
            "resources.rss_peak_mib",
            "RSS peak",
            "MiB",
            br.rss_peak_mib,
            cr.rss_peak_mib,
        ),
        (
            "resources.rss_avg_mib",
            "RSS avg",
            "MiB",
            br.rss_avg_mib,
            cr.rss_avg_mib,
        ),
    ] {
        push(
            key.into(),
            section,
            label,
            unit,
            Better::Lower,
            Some(bv),
            Some(cv),
            few_res.clone(),
        );
    }

    warnings.extend(baseline.warnings.iter().cloned());
    warnings.extend(current.warnings.iter().cloned());
    if (b.measured_secs - c.measured_secs).abs() > 0.5 {
        warnings.push(format!(
            "measured time differs: baseline {:.1} s, current {:.1} s",
            b.measured_secs, c.measured_secs
        ));
    }
    Comparison {
        baseline: baseline.source.clone(),
        current: current.source.clone(),
        metrics,
        warnings,
    }
}

/// Options of a comparison, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--thresholds FILE`.
    pub thresholds_file: Option<PathBuf>,
    /// `--threshold PATTERN=PCT`, in order.
    pub threshold: Vec<String>,
    /// `--noise-floor PATTERN=VALUE`, in order.
    pub noise_floor: Vec<String>,
    /// `--allow-config-change`.
    pub allow_config_change: bool,
}

impl Options {
    /// The thresholds: the defaults, then the file, then the flags.
    pub fn thresholds(&self) -> Result<Thresholds, InputError> {
        let mut t = Thresholds::default();
        if let Some(path) = &self.thresholds_file {
            t.load_file(path)
                .map_err(|e| InputError(format!("--thresholds {e}")))?;
        }
        for arg in &self.threshold {
            t.set_arg(arg)
                .map_err(|e| InputError(format!("--threshold {e}")))?;
        }
        for arg in &self.noise_floor {
            t.set_floor_arg(arg)
                .map_err(|e| InputError(format!("--noise-floor {e}")))?;
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use crate::results::compare::*;

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("latency.*.*.p99", "latency.service.all.p99"));
        assert!(!matches("latency.*.*.p99", "latency.service.all.p999"));
        assert!(!matches("latency.*.p99", "latency.service.all.p99"));
        assert!(matches("errors.error_rate_pct", "errors.error_rate_pct"));
    }

    #[test]
    fn most_specific_and_user_rules_win() {
        let mut t = Thresholds::default();
        assert_eq!(t.get("latency.service.all.p99"), Threshold::Pct(25.0));
        assert_eq!(t.get("latency.service.all.max"), Threshold::Off);
        assert_eq!(t.get("latency.lag.all.p99"), Threshold::Off);
        assert_eq!(t.get("throughput.total.rate"), Threshold::Pct(5.0));
        t.set_arg("latency.*.*.p99=10").unwrap();
        assert_eq!(t.get("latency.response.book.p99"), Threshold::Pct(10.0));
        t.set_arg("latency.service.all.p99=off").unwrap();
        assert_eq!(t.get("latency.service.all.p99"), Threshold::Off);
        assert_eq!(t.get("latency.service.book.p99"), Threshold::Pct(10.0));
        assert!(t.set_arg("latency.service.all.p98=5").is_err());
        assert!(t.set_arg("latency.*.*.p99=-5").is_err());
        assert!(t.set_arg("latency.*.*.p99").is_err());
        assert!(t.set_arg("latency.*.*.p99=fast").is_err());
    }

    #[test]
    fn judging_follows_direction_and_threshold() {
        let j = |b, c, better, t| judge(Some(b), Some(c), better, Threshold::Pct(t), 0.0, None);
        assert_eq!(j(100.0, 130.0, Better::Lower, 25.0).2, Status::Regressed);
        assert_eq!(j(100.0, 120.0, Better::Lower, 25.0).2, Status::Ok);
        assert_eq!(j(100.0, 70.0, Better::Lower, 25.0).2, Status::Improved);
        assert_eq!(j(100.0, 90.0, Better::Higher, 5.0).2, Status::Regressed);
        assert_eq!(j(100.0, 130.0, Better::Higher, 5.0).2, Status::Improved);
        let (change, _, status) = j(0.0, 0.5, Better::Lower, 0.0);
        assert_eq!(change, Some(f64::INFINITY));
        assert_eq!(status, Status::Regressed);
        assert_eq!(j(0.0, 0.0, Better::Lower, 0.0).2, Status::Ok);
        assert_eq!(j(100.0, 130.0, Better::Lower, 25.0).0, Some(30.0));
        assert!(matches!(
            judge(
                Some(1.0),
                Some(2.0),
                Better::Lower,
                Threshold::Off,
                0.0,
                None
            )
            .2,
            Status::NotJudged(_)
        ));
        assert!(matches!(
            judge(
                None,
                Some(2.0),
                Better::Lower,
                Threshold::Pct(1.0),
                0.0,
                None
            )
            .2,
            Status::NotJudged(_)
        ));
    }

    #[test]
    fn a_change_within_the_noise_floor_is_not_a_regression() {
        let t = Thresholds::default();
        // A 12 ns move of a 50 ns P90: +24%, but noise.
        let floor = t.floor("latency.service.all.p90");
        let (_, _, s) = judge(
            Some(50.0),
            Some(62.0),
            Better::Lower,
            Threshold::Pct(20.0),
            floor,
            None,
        );
        assert!(
            matches!(s, Status::NotJudged(ref r) if r.contains("noise floor")),
            "{s:?}"
        );
        // A 2x slower write is caught.
        let (_, _, s) = judge(
            Some(60.0),
            Some(120.0),
            Better::Lower,
            Threshold::Pct(20.0),
            floor,
            None,
        );
        assert_eq!(s, Status::Regressed);
        let mut t = Thresholds::default();
        t.set_floor_arg("latency.response.*.p99=200us").unwrap();
        assert_eq!(t.floor("latency.response.book.p99"), 200_000.0);
        assert_eq!(t.floor("latency.e2e.all.p99"), 1_000_000.0);
        assert!(t.set_floor_arg("latency.response.*.p99=-1").is_err());
        assert!(t.set_floor_arg("latency.nothing.*.p99=1").is_err());
        assert_eq!(parse_floor("1.5ms"), Ok(1_500_000.0));
    }

    #[test]
    fn share_above_counts_the_tail() {
        let mut h = crate::report::histogram::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p99 = h.value_at_quantile(0.99);
        let share = share_above(&h, p99);
        assert!((share - 1.0).abs() < 0.2, "{share}");
        assert_eq!(share_above(&h, 10_000_000), 0.0);
        assert_eq!(share_above(&h, 0), 100.0);
    }
}
