//! Open-loop pacing: when each message is meant to be sent, and how a generator waits for it.
//!
//! A schedule gives *intended* send times that depend only on the target rate, never on how long
//! earlier sends took (that is what keeps the load open-loop, and why response time is measured
//! from the intended time: a stall delays every later send, and every one of them reports it).

use std::time::Duration;

use crate::plan::patterns::LoadPattern;
use crate::plan::{Pacing, PacingMode};
use crate::report::end::PacingReport;
use crate::run::clock::Clock;
use crate::source::replay::ReplayFeed;

/// The intended send times of one source at a constant rate.
///
/// The k-th message (from 0) is due at `start + floor(k * 1e9 / rate)` ns, computed in 128-bit
/// integers, so the long-run rate is exact (300,000/s means 300,000 per second, not the
/// 1e9/floor(1e9/300,000) a fixed integer period would give) and no error accumulates.
#[derive(Debug, Clone)]
pub struct ConstantRate {
    /// Intended time of message 0, ns.
    start_ns: u64,
    /// Messages per second, > 0; fixed.
    rate: u64,
    /// Index of the next message: messages scheduled so far.
    next: u64,
    /// `floor(next * 1e9 / rate)`, kept incrementally: no 128-bit division per message.
    offset_ns: u64,
    /// `next * 1e9 mod rate`.
    remainder: u64,
    /// `1e9 / rate` and `1e9 mod rate`.
    step: (u64, u64),
}

impl ConstantRate {
    /// A schedule of `rate` messages per second from `start_ns`. `rate` must be above 0.
    pub fn new(start_ns: u64, rate: u64) -> Self {
        assert!(rate > 0, "a schedule needs a rate above 0");
        Self {
            start_ns,
            rate,
            next: 0,
            offset_ns: 0,
            remainder: 0,
            step: (1_000_000_000 / rate, 1_000_000_000 % rate),
        }
    }

    /// The intended time of the next message.
    #[inline]
    pub fn due(&self) -> u64 {
        self.start_ns + self.offset_ns
    }

    /// Moves to the following message.
    #[inline]
    pub fn advance(&mut self) {
        self.next += 1;
        self.offset_ns += self.step.0;
        self.remainder += self.step.1;
        if self.remainder >= self.rate {
            self.remainder -= self.rate;
            self.offset_ns += 1;
        }
    }

    /// Messages whose intended time is before `t_ns`.
    pub fn count_before(&self, t_ns: u64) -> u64 {
        let elapsed = u128::from(t_ns.saturating_sub(self.start_ns));
        // The k-th message is due before t iff k * 1e9 / rate < elapsed (floored), i.e.
        // k < ceil(elapsed * rate / 1e9).
        (elapsed * u128::from(self.rate)).div_ceil(1_000_000_000) as u64
    }

    /// Messages scheduled so far (the index of the next one).
    pub fn scheduled(&self) -> u64 {
        self.next
    }
}

/// The intended send times of one source: a [`ConstantRate`] (the fast path), any
/// [`LoadPattern`], or a capture's recorded times.
#[derive(Debug)]
pub enum Schedule {
    /// A constant rate, computed in integers.
    Constant(ConstantRate),
    /// A pattern; `due` is the next intended time (`u64::MAX` when it sends no more).
    Pattern {
        /// The pattern.
        pattern: Box<dyn LoadPattern>,
        /// The next intended time, ns.
        due: u64,
        /// Messages scheduled so far.
        scheduled: u64,
    },
    /// A capture's records, each due at its recorded time (see [`crate::plan::ReplayPlan`]).
    Replay(ReplayFeed),
}

impl Schedule {
    /// A schedule from `start_ns` following `pattern`.
    pub fn pattern(start_ns: u64, mut pattern: Box<dyn LoadPattern>) -> Self {
        let due = pattern
            .next_delay()
            .map_or(u64::MAX, |d| start_ns.saturating_add(d.as_nanos() as u64));
        Schedule::Pattern {
            pattern,
            due,
            scheduled: 0,
        }
    }

    /// The intended time of the next message (`u64::MAX`: none).
    #[inline]
    pub fn due(&self) -> u64 {
        match self {
            Schedule::Constant(c) => c.due(),
            Schedule::Pattern { due, .. } => *due,
            Schedule::Replay(f) => f.due(),
        }
    }

    /// The recorded record whose time [`Schedule::due`] is (replay only; empty otherwise).
    #[inline]
    pub fn recorded(&self) -> &[u8] {
        match self {
            Schedule::Replay(f) => f.current(),
            _ => &[],
        }
    }

    /// Why a replay ended before its window did (the capture turned bad), if it did.
    pub fn failure(&self) -> Option<String> {
        match self {
            Schedule::Replay(f) => f.error().map(ToString::to_string),
            _ => None,
        }
    }

    /// Moves to the following message.
    #[inline]
    pub fn advance(&mut self) {
        match self {
            Schedule::Constant(c) => c.advance(),
            Schedule::Pattern {
                pattern,
                due,
                scheduled,
            } => {
                *scheduled += 1;
                *due = match pattern.next_delay() {
                    Some(d) => due.saturating_add(d.as_nanos() as u64),
                    None => u64::MAX,
                };
            }
            Schedule::Replay(f) => f.advance(),
        }
    }

    /// Messages due before `t_ns` that have not been scheduled yet (the backlog at `t_ns`),
    /// by the interval they were due in: `(index, count)` pairs in index order, intervals of
    /// `interval_ns` from `start_ns`. Consumes the schedule up to `t_ns`: call it once, at the
    /// end.
    pub fn unsent_by_interval(
        &mut self,
        t_ns: u64,
        start_ns: u64,
        interval_ns: u64,
    ) -> Vec<(u64, u64)> {
        let index_of = |t: u64| t.saturating_sub(start_ns) / interval_ns;
        let mut out: Vec<(u64, u64)> = Vec::new();
        match self {
            Schedule::Constant(c) => {
                if c.due() >= t_ns {
                    return out;
                }
                let first = index_of(c.due());
                let last = index_of(t_ns - 1);
                let mut done = c.scheduled();
                for i in first..=last {
                    let until = (start_ns + (i + 1) * interval_ns).min(t_ns);
                    let n = c.count_before(until).saturating_sub(done);
                    done += n;
                    if n > 0 {
                        out.push((i, n));
                    }
                }
            }
            Schedule::Pattern { .. } | Schedule::Replay(_) => {
                while self.due() < t_ns {
                    let i = index_of(self.due());
                    match out.last_mut() {
                        Some((last, n)) if *last == i => *n += 1,
                        _ => out.push((i, 1)),
                    }
                    self.advance();
                }
            }
        }
        out
    }
}

/// How a generator thread waits until an intended send time.
///
/// Hybrid pacing sleeps until `window_ns` before the send time and spins the rest: a sleep
/// ends late by the machine's wake-up latency (20 to 40 us on a busy VM), and spinning the
/// last stretch keeps that lateness out of the schedule. Unless the window is fixed
/// (`--spin-us`), it is calibrated: before the run from a series of short sleeps, and during it
/// from every sleep the pacer takes, as the 99th percentile of how late sleeps ended plus a
/// margin, so the window follows the machine.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The pacing mode.
    mode: PacingMode,
    /// Hybrid: how long before a due time sleeping stops and spinning starts, ns; between
    /// [`MIN_WINDOW_NS`] and [`MAX_WINDOW_NS`] when calibrated.
    window_ns: u64,
    /// Whether the window was fixed by the user (never recalibrated).
    fixed: bool,
    /// How late the last sleeps ended, ns (saturated at `u32::MAX`); `count` of them are valid.
    late: [u32; LATE_SAMPLES],
    /// Valid entries of `late`, at most [`LATE_SAMPLES`]; the window is recomputed when full.
    count: usize,
    /// The 99th percentile of lateness the window was last computed from, ns.
    late_p99_ns: u64,
}

/// Longest a generator sleeps in one go, so that it notices a stop request and keeps heartbeats
/// and measurement intervals going while a slow source waits.
pub const MAX_WAIT_NS: u64 = 50_000_000;
/// Smallest calibrated spin window, ns.
pub const MIN_WINDOW_NS: u64 = 2_000;
/// Largest calibrated spin window, ns: beyond it the machine is too busy to pace by sleeping.
pub const MAX_WINDOW_NS: u64 = 2_000_000;
/// What the calibrated window adds to the lateness percentile, ns.
const WINDOW_MARGIN_NS: u64 = 5_000;
/// Sleeps the window is computed from.
const LATE_SAMPLES: usize = 256;
/// Sleeps taken to calibrate before the run, and how long each asks for.
const CALIBRATION_SLEEPS: usize = 64;
const CALIBRATION_SLEEP_NS: u64 = 50_000;

impl Pacer {
    /// A pacer for `pacing`, calibrated on this thread if the window is not fixed. Unless it
    /// only spins, it also lowers this thread's timer slack to 1 ns, so that sleeps end when
    /// asked rather than up to 50 us later.
    pub fn new(pacing: Pacing, clock: &mut Clock) -> Self {
        if pacing.mode != PacingMode::Spin {
            // Best effort: without it sleeps are just less precise, and the lag shows it.
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        }
        let (window_ns, fixed) = match (pacing.mode, pacing.spin_ns) {
            (PacingMode::Sleep, _) => (0, true),
            (_, Some(ns)) => (ns, true),
            (_, None) => (MIN_WINDOW_NS, false),
        };
        let mut p = Self {
            mode: pacing.mode,
            window_ns,
            fixed,
            late: [0; LATE_SAMPLES],
            count: 0,
            late_p99_ns: 0,
        };
        if pacing.mode != PacingMode::Spin {
            for _ in 0..CALIBRATION_SLEEPS {
                let before = clock.now();
                std::thread::sleep(Duration::from_nanos(CALIBRATION_SLEEP_NS));
                let late = clock.now().saturating_sub(before + CALIBRATION_SLEEP_NS);
                p.observe(late);
            }
            p.recalibrate();
        }
        p
    }

    /// What the pacer does now, for the report.
    pub fn report(&self) -> PacingReport {
        PacingReport {
            window_ns: self.window_ns,
            late_p99_ns: self.late_p99_ns,
            calibrated: !self.fixed,
        }
    }

    fn observe(&mut self, late_ns: u64) {
        if self.count < LATE_SAMPLES {
            self.late[self.count] = late_ns.min(u64::from(u32::MAX)) as u32;
            self.count += 1;
        }
        if self.count == LATE_SAMPLES {
            self.recalibrate();
        }
    }

    #[cold]
    fn recalibrate(&mut self) {
        if self.count == 0 {
            return;
        }
        let samples = &mut self.late[..self.count];
        samples.sort_unstable();
        let p99 = u64::from(samples[(samples.len() * 99).div_ceil(100) - 1]);
        self.late_p99_ns = p99;
        self.count = 0;
        if !self.fixed {
            self.window_ns = (p99 + WINDOW_MARGIN_NS).clamp(MIN_WINDOW_NS, MAX_WINDOW_NS);
        }
    }

    /// Waits until `clock.now() >= due`; returns that time and how long of the wait was spent
    /// spinning on the CPU (which, unlike sleeping, costs CPU).
    #[inline]
    pub fn wait_until(&mut self, clock: &mut Clock, due: u64) -> Woke {
        let mut spun_ns = 0;
        // The clock at the previous spin, while spinning.
        let mut last_spin: Option<u64> = None;
        loop {
            let now = clock.now();
            if let Some(prev) = last_spin {
                // A gap this long between two looks at the clock is time the thread was not
                // running (preempted, or an interrupt): not CPU it spent, on a busy machine
                // often most of a wait.
                let gap = now.saturating_sub(prev);
                if gap <= DESCHEDULED_NS {
                    spun_ns += gap;
                }
            }
            if now >= due {
                return Woke { at: now, spun_ns };
            }
            let remaining = due - now;
            if self.mode != PacingMode::Spin && remaining > self.window_ns {
                let asked = remaining - self.window_ns;
                std::thread::sleep(Duration::from_nanos(asked));
                let late = clock.now().saturating_sub(now + asked);
                self.observe(late);
                last_spin = None;
            } else {
                last_spin = Some(now);
                std::hint::spin_loop();
            }
        }
    }
}

/// The longest gap between two looks at the clock of a spinning thread that counts as spinning,
/// ns: one look takes tens of ns, so a longer gap is the thread off its core.
const DESCHEDULED_NS: u64 = 20_000;

/// The end of a wait: when it ended, and how much of it was spent spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Woke {
    /// The time the wait ended, ns (at or after the time waited for).
    pub at: u64,
    /// Time spent spinning on the clock while on the CPU, ns (gaps longer than
    /// `DESCHEDULED_NS` between two looks at the clock left out).
    pub spun_ns: u64,
}

#[cfg(test)]
mod tests {
    use crate::run::pacing::*;

    #[test]
    fn rate_is_exact_over_a_second() {
        for rate in [1, 3, 7, 300_000, 333_333, 1_000_000, 10_000_000] {
            let mut s = ConstantRate::new(1_000, rate);
            let mut n = 0;
            while s.due() < 1_000 + 1_000_000_000 {
                n += 1;
                s.advance();
            }
            assert_eq!(n, rate, "rate {rate}");
            assert_eq!(
                s.due() - 1_000,
                (u128::from(n) * 1_000_000_000 / u128::from(rate)) as u64
            );
            assert_eq!(s.count_before(1_000 + 1_000_000_000), rate);
        }
    }

    #[test]
    fn backlog_lands_in_the_interval_it_was_due_in() {
        // 10 msgs/s from t=0, 1 s intervals, nothing sent: the backlog at 2.5 s is 10 + 10 + 5.
        let mut s = Schedule::Constant(ConstantRate::new(0, 10));
        assert_eq!(
            s.unsent_by_interval(2_500_000_000, 0, 1_000_000_000),
            vec![(0, 10), (1, 10), (2, 5)]
        );
        // Three sent already: they are not backlog.
        let mut c = ConstantRate::new(0, 10);
        for _ in 0..3 {
            c.advance();
        }
        let mut s = Schedule::Constant(c);
        assert_eq!(
            s.unsent_by_interval(1_000_000_000, 0, 1_000_000_000),
            vec![(0, 7)]
        );
        let pattern = crate::plan::patterns::PatternSpec::Constant { rate: Some(10.0) }.build(1);
        let mut p = Schedule::pattern(0, pattern);
        assert_eq!(
            p.unsent_by_interval(2_500_000_000, 0, 1_000_000_000),
            vec![(0, 10), (1, 10), (2, 5)]
        );
    }

    #[test]
    fn count_before_matches_walking_the_schedule() {
        let mut s = ConstantRate::new(0, 7_777);
        for t in [0, 1, 128_584, 128_585, 999_999_999, 5_000_000_000] {
            let mut walk = ConstantRate::new(0, 7_777);
            let mut n = 0;
            while walk.due() < t {
                n += 1;
                walk.advance();
            }
            assert_eq!(s.count_before(t), n, "t {t}");
        }
        s.advance();
        assert_eq!(s.scheduled(), 1);
    }
}
