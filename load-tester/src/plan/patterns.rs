//! Load patterns: how the target rate of one stream of one exchange varies over a run.
//!
//! A pattern is an arrival process. The generator asks it for the delay from one intended send
//! time to the next ([`LoadPattern::next_delay`]), sends open-loop on those times, and measures
//! response time from them; the engine asks it what rate it targeted over each interval
//! ([`LoadPattern::expected_between`]), which is what achievement is judged against.
//!
//! Built-in patterns ([`PatternSpec`]): constant, Poisson arrivals, burst, ramp, stages (like
//! k6's ramping-arrival-rate) and sine. Each deterministic pattern places the k-th message at the
//! exact time where the integral of its rate reaches k, so long-run rates are exact; Poisson's
//! are exact in expectation. A user's own pattern implements [`LoadPattern`] (see
//! `examples/custom_pattern.rs`).

use std::f64::consts::PI;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::plan::limits::MAX_RATE_PER_STREAM;

/// An arrival process for one stream.
///
/// ```
/// use std::time::Duration;
/// use alphapulse_load_tester::plan::patterns::LoadPattern;
///
/// /// 1,000 msgs/s for the first half of every second, nothing in the second half.
/// #[derive(Debug)]
/// struct HalfOn { t: f64 }
///
/// impl LoadPattern for HalfOn {
///     fn next_delay(&mut self) -> Option<Duration> {
///         let prev = self.t;
///         self.t += 0.001;
///         if self.t.fract() >= 0.5 { self.t = self.t.ceil(); }
///         Some(Duration::from_secs_f64(self.t - prev))
///     }
///     fn rate_at(&self, t: f64) -> f64 { if t.fract() < 0.5 { 1000.0 } else { 0.0 } }
/// }
/// ```
pub trait LoadPattern: Send + std::fmt::Debug {
    /// The time from the previous message's intended send time to the next one's (for the first
    /// message: from the start of the run); `None` when the pattern sends nothing more.
    ///
    /// It is a schedule, not a limit: the generator sends at these times whatever happened
    /// before, and charges any delay to response time.
    fn next_delay(&mut self) -> Option<Duration>;

    /// The target rate at `t` seconds into the run, messages per second.
    fn rate_at(&self, t: f64) -> f64;

    /// Messages the pattern targets between `from` and `to` seconds. The default integrates
    /// [`Self::rate_at`] in 1 ms steps; built-in patterns answer exactly.
    fn expected_between(&self, from: f64, to: f64) -> f64 {
        let steps = ((to - from) * 1000.0).ceil().max(1.0) as u64;
        let dt = (to - from) / steps as f64;
        (0..steps)
            .map(|i| self.rate_at(from + (i as f64 + 0.5) * dt) * dt)
            .sum()
    }
}

/// One stage of a [`PatternSpec::Stages`] pattern: the rate moves linearly to `target` over
/// `secs` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Length of the stage, seconds (at least 1).
    pub secs: u64,
    /// Rate at the end of the stage, messages per second.
    pub target: f64,
}

/// A rate as the descriptions spell it: `1234567.0` as `1,234,567`.
fn group(v: f64) -> String {
    crate::plan::text::thousands(v.round().max(0.0) as u64)
}

/// A built-in pattern as a scenario file or the plan spells it. Rates are messages per second;
/// a missing `rate` is the stream's rate (`--trades-per-second` or
/// `--orderbook-updates-per-second`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PatternSpec {
    /// A constant rate.
    Constant {
        /// The rate.
        rate: Option<f64>,
    },
    /// Poisson arrivals: exponential gaps with mean `1 / rate`.
    Poisson {
        /// The mean rate.
        rate: Option<f64>,
    },
    /// `rate`, except for `burst_secs` seconds of `burst_rate` from `offset_secs` into every
    /// period of `period_secs` seconds.
    Burst {
        /// The rate between bursts.
        rate: Option<f64>,
        /// The rate inside a burst.
        burst_rate: f64,
        /// Length of a burst, whole seconds.
        burst_secs: u64,
        /// Time from the start of one burst to the next, whole seconds.
        period_secs: u64,
        /// Start of the burst within each period, whole seconds (default 0).
        #[serde(default)]
        offset_secs: u64,
    },
    /// A linear ramp from `from` to `to` over `secs` seconds, then `to`.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
        /// Length of the ramp, seconds (at least 1).
        secs: u64,
    },
    /// Stages, as k6's ramping-arrival-rate: from `start`, the rate moves linearly to each
    /// stage's target over its length; after the last stage it stays at the last target. The
    /// stages must cover the whole run.
    Stages {
        /// Rate at the start (default 0).
        #[serde(default)]
        start: f64,
        /// The stages.
        stages: Vec<Stage>,
    },
    /// `rate + amplitude * sin(2 pi t / period_secs)`.
    Sine {
        /// The mean rate.
        rate: Option<f64>,
        /// Amplitude, at most the mean rate.
        amplitude: f64,
        /// Period, seconds (at least 1).
        period_secs: f64,
    },
}

impl Default for PatternSpec {
    fn default() -> Self {
        PatternSpec::Constant { rate: None }
    }
}

/// Why a pattern cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

fn check_rate(what: &str, r: f64) -> Result<(), PatternError> {
    if !r.is_finite() || r < 0.0 {
        return Err(PatternError(format!(
            "{what} = {}: must be a finite rate >= 0",
            show(r)
        )));
    }
    if r > MAX_RATE_PER_STREAM as f64 {
        return Err(PatternError(format!(
            "{what} = {}: above the {MAX_RATE_PER_STREAM} msgs/s one stream may target",
            show(r)
        )));
    }
    Ok(())
}

/// A number from a scenario file as an error message shows it: as written for ordinary values,
/// in scientific notation for huge or tiny ones (`1e300`, not three hundred digits).
fn show(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-6..1e15).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl PatternSpec {
    /// The same pattern with every missing rate set to `default_rate`.
    pub fn resolved(&self, default_rate: f64) -> PatternSpec {
        let fill = |r: &Option<f64>| Some(r.unwrap_or(default_rate));
        match self {
            PatternSpec::Constant { rate } => PatternSpec::Constant { rate: fill(rate) },
            PatternSpec::Poisson { rate } => PatternSpec::Poisson { rate: fill(rate) },
            PatternSpec::Burst {
                rate,
                burst_rate,
                burst_secs,
                period_secs,
                offset_secs,
            } => PatternSpec::Burst {
                rate: fill(rate),
                burst_rate: *burst_rate,
                burst_secs: *burst_secs,
                period_secs: *period_secs,
                offset_secs: *offset_secs,
            },
            PatternSpec::Sine {
                rate,
                amplitude,
                period_secs,
            } => PatternSpec::Sine {
                rate: fill(rate),
                amplitude: *amplitude,
                period_secs: *period_secs,
            },
            other => other.clone(),
        }
    }

    /// The pattern in words, rates in messages per second: `10,000/s`, `Poisson, mean 5,000/s`,
    /// `5,000/s with 2 s bursts of 100,000/s every 10 s`, ... (rates resolved or not).
    pub fn describe(&self) -> String {
        let rate = |r: &Option<f64>| match r {
            Some(r) => format!("{}/s", group(*r)),
            None => "the stream's rate".into(),
        };
        match self {
            PatternSpec::Constant { rate: r } => rate(r),
            PatternSpec::Poisson { rate: r } => format!("Poisson, mean {}", rate(r)),
            PatternSpec::Burst {
                rate: r,
                burst_rate,
                burst_secs,
                period_secs,
                offset_secs,
            } => format!(
                "{} with {burst_secs} s bursts of {}/s every {period_secs} s (from {offset_secs} s)",
                rate(r),
                group(*burst_rate)
            ),
            PatternSpec::Ramp { from, to, secs } => {
                format!("ramp {}/s to {}/s over {secs} s", group(*from), group(*to))
            }
            PatternSpec::Stages { start, stages } => {
                let steps: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{}/s over {} s", group(s.target), s.secs))
                    .collect();
                format!("stages from {}/s: {}", group(*start), steps.join(", "))
            }
            PatternSpec::Sine {
                rate: r,
                amplitude,
                period_secs,
            } => format!(
                "sine {} +- {}/s, period {period_secs} s",
                rate(r),
                group(*amplitude)
            ),
        }
    }

    /// The highest rate the pattern reaches, messages per second (its mean for Poisson).
    pub fn peak_rate(&self) -> f64 {
        let rate = |r: &Option<f64>| r.unwrap_or(0.0);
        match self {
            PatternSpec::Constant { rate: r } | PatternSpec::Poisson { rate: r } => rate(r),
            PatternSpec::Burst {
                rate: r,
                burst_rate,
                ..
            } => rate(r).max(*burst_rate),
            PatternSpec::Ramp { from, to, .. } => from.max(*to),
            PatternSpec::Stages { start, stages } => {
                stages.iter().map(|s| s.target).fold(*start, f64::max)
            }
            PatternSpec::Sine {
                rate: r, amplitude, ..
            } => rate(r) + amplitude,
        }
    }

    /// The rate of a constant pattern, if this is one.
    pub fn constant_rate(&self) -> Option<f64> {
        match self {
            PatternSpec::Constant { rate } => *rate,
            _ => None,
        }
    }

    /// Checks the pattern for a run of `total_secs` seconds; the message names the key at
    /// fault. Call on a [`Self::resolved`] spec.
    pub fn validate(&self, total_secs: u64) -> Result<(), PatternError> {
        let rate = |r: &Option<f64>| r.unwrap_or(0.0);
        match self {
            PatternSpec::Constant { rate: r } | PatternSpec::Poisson { rate: r } => {
                check_rate("rate", rate(r))
            }
            PatternSpec::Burst {
                rate: r,
                burst_rate,
                burst_secs,
                period_secs,
                offset_secs,
            } => {
                check_rate("rate", rate(r))?;
                check_rate("burst_rate", *burst_rate)?;
                if *burst_secs == 0 {
                    return Err(PatternError(
                        "burst_secs = 0: a burst lasts at least 1 s".into(),
                    ));
                }
                if period_secs <= burst_secs {
                    return Err(PatternError(format!(
                        "period_secs = {period_secs} must be longer than burst_secs = {burst_secs}"
                    )));
                }
                if offset_secs + burst_secs > *period_secs {
                    return Err(PatternError(format!(
                        "offset_secs = {offset_secs}: a burst must end within its period \
                         (offset_secs + burst_secs <= period_secs = {period_secs})"
                    )));
                }
                Ok(())
            }
            PatternSpec::Ramp { from, to, secs } => {
                check_rate("from", *from)?;
                check_rate("to", *to)?;
                if *secs == 0 {
                    return Err(PatternError("secs = 0: a ramp lasts at least 1 s (use a constant or a burst for a step)".into()));
                }
                Ok(())
            }
            PatternSpec::Stages { start, stages } => {
                check_rate("start", *start)?;
                if stages.is_empty() {
                    return Err(PatternError(
                        "stages is empty: give at least one stage".into(),
                    ));
                }
                for (i, s) in stages.iter().enumerate() {
                    check_rate(&format!("stages[{i}].target"), s.target)?;
                    if s.secs == 0 {
                        return Err(PatternError(format!(
                            "stages[{i}].secs = 0: a stage lasts at least 1 s"
                        )));
                    }
                }
                let sum: u64 = stages.iter().map(|s| s.secs).sum();
                if sum != total_secs {
                    return Err(PatternError(format!(
                        "stages add up to {sum} s but the run lasts {total_secs} s (warm-up plus duration); make them equal"
                    )));
                }
                Ok(())
            }
            PatternSpec::Sine {
                rate: r,
                amplitude,
                period_secs,
            } => {
                check_rate("rate", rate(r))?;
                if !amplitude.is_finite() || *amplitude < 0.0 || *amplitude > rate(r) {
                    return Err(PatternError(format!(
                        "amplitude = {}: must be between 0 and the mean rate {} (a rate cannot go negative)",
                        show(*amplitude),
                        show(rate(r))
                    )));
                }
                if !period_secs.is_finite() || *period_secs < 1.0 {
                    return Err(PatternError(format!(
                        "period_secs = {}: must be at least 1",
                        show(*period_secs)
                    )));
                }
                check_rate("rate + amplitude", rate(r) + amplitude)
            }
        }
    }

    /// Whether second `[t, t + 1)` of the run lies wholly inside (`Some(true)`) or wholly
    /// outside (`Some(false)`) a burst; `None` for patterns without bursts.
    pub fn in_burst(&self, second: u64) -> Option<bool> {
        match self {
            PatternSpec::Burst {
                burst_secs,
                period_secs,
                offset_secs,
                ..
            } => {
                let x = second % period_secs;
                Some(x >= *offset_secs && x < offset_secs + burst_secs)
            }
            _ => None,
        }
    }

    /// The pattern, ready to generate. `seed` feeds the random ones.
    pub fn build(&self, seed: u64) -> Box<dyn LoadPattern> {
        let rate = |r: &Option<f64>| r.unwrap_or(0.0);
        match self {
            PatternSpec::Constant { rate: r } => {
                Box::new(Curve::periodic(vec![(0.0, rate(r)), (1.0, rate(r))], 1.0))
            }
            PatternSpec::Poisson { rate: r } => Box::new(Poisson {
                rate: rate(r),
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            }),
            PatternSpec::Burst {
                rate: r,
                burst_rate,
                burst_secs,
                period_secs,
                offset_secs,
            } => {
                let (b, p, o) = (*burst_secs as f64, *period_secs as f64, *offset_secs as f64);
                // One period from t = 0: base, the burst over [o, o + b), base again; steps are
                // zero-length segments. Validation keeps o + b <= p.
                let mut pts = Vec::new();
                let base = rate(r);
                let burst = *burst_rate;
                let in_burst = |t: f64| t >= o && t < o + b;
                let mut edges = vec![0.0, o, o + b, p];
                edges.sort_by(f64::total_cmp);
                edges.dedup();
                for w in edges.windows(2) {
                    let rt = if in_burst((w[0] + w[1]) / 2.0) {
                        burst
                    } else {
                        base
                    };
                    pts.push((w[0], rt));
                    pts.push((w[1], rt));
                }
                Box::new(Curve::periodic(pts, p))
            }
            PatternSpec::Ramp { from, to, secs } => {
                Box::new(Curve::open(vec![(0.0, *from), (*secs as f64, *to)], *to))
            }
            PatternSpec::Stages { start, stages } => {
                let mut pts = vec![(0.0, *start)];
                let mut t = 0.0;
                for s in stages {
                    t += s.secs as f64;
                    pts.push((t, s.target));
                }
                let last = pts.last().map_or(0.0, |p| p.1);
                Box::new(Curve::open(pts, last))
            }
            PatternSpec::Sine {
                rate: r,
                amplitude,
                period_secs,
            } => {
                // 256 linear pieces a period: the trapezoid rule over a whole period of a sine
                // sums to its mean exactly, so the long-run rate is exact.
                let n = 256;
                let pts = (0..=n)
                    .map(|i| {
                        let t = *period_secs * i as f64 / n as f64;
                        (t, rate(r) + amplitude * (2.0 * PI * t / period_secs).sin())
                    })
                    .collect();
                Box::new(Curve::periodic(pts, *period_secs))
            }
        }
    }
}

/// A piecewise-linear rate curve, open-ended (the rate stays at `tail` after the last point) or
/// periodic. The k-th message goes where the integral of the rate from 0 reaches k.
#[derive(Debug, Clone)]
struct Curve {
    /// (time, rate) points, times non-decreasing from 0; equal times make a step.
    pts: Vec<(f64, f64)>,
    /// Some(period): the points cover one period, repeated forever.
    period: Option<f64>,
    /// Rate after the last point of an open curve.
    tail: f64,
    /// Messages per period (periodic curves).
    per_period: f64,
    /// The next message number (0-based, a whole number): messages handed out so far.
    k: f64,
    /// Sum of the delays handed out so far, ns: the largest rounded absolute time so far (0
    /// before the first); each delay is a difference of rounded times, so the sum never drifts.
    emitted_ns: u64,
    /// Period the search position is in (a whole number; 0 for an open curve).
    cycle: f64,
    /// Segment `pts[seg]..pts[seg + 1]` of the search position; `pts.len() - 1` once an open
    /// curve is past its last point. Only moves forward (wrapping to 0 with `cycle`).
    seg: usize,
    /// Integral of the rate from time 0 to the start of segment `seg` of period `cycle`.
    w_seg: f64,
}

impl Curve {
    fn open(pts: Vec<(f64, f64)>, tail: f64) -> Self {
        Self::new(pts, None, tail)
    }

    fn periodic(pts: Vec<(f64, f64)>, period: f64) -> Self {
        Self::new(pts, Some(period), 0.0)
    }

    fn new(pts: Vec<(f64, f64)>, period: Option<f64>, tail: f64) -> Self {
        let per_period = pts
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum();
        Self {
            pts,
            period,
            tail,
            per_period,
            k: 0.0,
            emitted_ns: 0,
            cycle: 0.0,
            seg: 0,
            w_seg: 0.0,
        }
    }

    /// Integral of the rate from 0 to `t`.
    fn integral(&self, t: f64) -> f64 {
        let (base, local) = match self.period {
            Some(p) => {
                let c = (t / p).floor();
                (c * self.per_period, t - c * p)
            }
            None => (0.0, t),
        };
        let mut w = base;
        for s in self.pts.windows(2) {
            let (t0, r0) = s[0];
            let (t1, r1) = s[1];
            if local <= t0 {
                return w;
            }
            let end = local.min(t1);
            let d = end - t0;
            let slope = if t1 > t0 { (r1 - r0) / (t1 - t0) } else { 0.0 };
            w += r0 * d + slope * d * d / 2.0;
            if local <= t1 {
                return w;
            }
        }
        let last_t = self.pts.last().map_or(0.0, |p| p.0);
        if self.period.is_none() && local > last_t {
            w += self.tail * (local - last_t);
        }
        w
    }

    /// Time at which the integral reaches `target`, searching forward from the position.
    fn solve(&mut self, target: f64) -> Option<f64> {
        loop {
            let offset = self.period.map_or(0.0, |p| self.cycle * p);
            if let Some(s) = self.pts.get(self.seg..self.seg + 2) {
                let (t0, r0) = s[0];
                let (t1, r1) = s[1];
                let len = t1 - t0;
                let slope = if len > 0.0 { (r1 - r0) / len } else { 0.0 };
                let w_end = self.w_seg + r0 * len + slope * len * len / 2.0;
                if target <= w_end && len > 0.0 {
                    let need = target - self.w_seg;
                    // Stable root of slope/2 d^2 + r0 d - need = 0.
                    let disc = (r0 * r0 + 2.0 * slope * need).max(0.0);
                    let denom = r0 + disc.sqrt();
                    let d = if denom > 0.0 { 2.0 * need / denom } else { 0.0 };
                    return Some(offset + t0 + d.clamp(0.0, len));
                }
                self.w_seg = w_end;
                self.seg += 1;
                continue;
            }
            match self.period {
                Some(_) => {
                    if self.per_period <= 0.0 {
                        return None;
                    }
                    self.cycle += 1.0;
                    self.seg = 0;
                }
                None => {
                    let last_t = self.pts.last().map_or(0.0, |p| p.0);
                    if self.tail <= 0.0 {
                        return None;
                    }
                    return Some(last_t + (target - self.w_seg) / self.tail);
                }
            }
        }
    }
}

impl LoadPattern for Curve {
    fn next_delay(&mut self) -> Option<Duration> {
        let at = self.solve(self.k)?;
        self.k += 1.0;
        let at_ns = (at * 1e9).round() as u64;
        let delay = at_ns.saturating_sub(self.emitted_ns);
        self.emitted_ns += delay;
        Some(Duration::from_nanos(delay))
    }

    fn rate_at(&self, t: f64) -> f64 {
        let local = self.period.map_or(t, |p| t.rem_euclid(p));
        for s in self.pts.windows(2) {
            let (t0, r0) = s[0];
            let (t1, r1) = s[1];
            if local >= t0 && local < t1 {
                return r0 + (r1 - r0) * (local - t0) / (t1 - t0);
            }
        }
        if self.period.is_none() {
            self.tail
        } else {
            self.pts.last().map_or(0.0, |p| p.1)
        }
    }

    fn expected_between(&self, from: f64, to: f64) -> f64 {
        self.integral(to) - self.integral(from)
    }
}

/// Poisson arrivals.
#[derive(Debug)]
struct Poisson {
    /// Mean rate, messages per second; at most 0 means no messages at all.
    rate: f64,
    /// Source of the gaps, seeded from the pattern seed: the same seed, the same schedule.
    rng: Xoshiro256PlusPlus,
}

impl LoadPattern for Poisson {
    fn next_delay(&mut self) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        // Inverse transform: 1 - U is in (0, 1], so the logarithm is finite.
        let u: f64 = self.rng.gen();
        Some(Duration::from_secs_f64(-(1.0 - u).ln() / self.rate))
    }

    fn rate_at(&self, _t: f64) -> f64 {
        self.rate
    }

    fn expected_between(&self, from: f64, to: f64) -> f64 {
        (to - from) * self.rate
    }
}

#[cfg(test)]
mod tests;
