//! The generator's clock: `CLOCK_MONOTONIC` nanoseconds, read cheaply.
//!
//! Every timestamp the tester takes is on `CLOCK_MONOTONIC`, the clock readers in other
//! processes share (a record's `send_ts_ns` is compared with a reader's own `now_ns()`). Reading
//! it through the vDSO costs about 23 ns on this VM, a third of the budget per message at
//! 10M msgs/s. Where the CPU has an invariant TSC and the kernel itself uses the TSC as its
//! clocksource, [`Clock`] reads the TSC instead (about 7 ns) and maps it onto `CLOCK_MONOTONIC`:
//! the mapping is re-anchored on a real `CLOCK_MONOTONIC` reading every millisecond, with a rate
//! measured over the whole run, so its error stays within a few nanoseconds of the real clock.
//! Elsewhere it simply calls [`alphapulse_bus::now_ns`].

use alphapulse_bus::now_ns;

pub use crate::plan::ClockSource;

/// How often the TSC mapping is re-anchored on `CLOCK_MONOTONIC`, ns.
const REANCHOR_NS: u64 = 1_000_000;

/// A per-thread clock of `CLOCK_MONOTONIC` nanoseconds. Not `Sync`: each thread owns one.
///
/// Invariant (TSC source): `now()` returns `anchor_ns + (tsc - anchor_tsc) * mult >> 32`, where
/// the anchor is a simultaneous (TSC, `CLOCK_MONOTONIC`) pair at most about `REANCHOR_NS` old and
/// `mult` is nanoseconds per tick in 32.32 fixed point, measured from the first anchor.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Reads the TSC: asked for, and calibration measured a non-zero rate. Otherwise every read
    /// is `now_ns()` and the fields below are unused.
    tsc: bool,
    /// TSC of the pair taken when calibration began; `mult` is measured from it.
    first_tsc: u64,
    /// `CLOCK_MONOTONIC` ns of that same pair.
    first_ns: u64,
    /// TSC of the current anchor pair.
    anchor_tsc: u64,
    /// `CLOCK_MONOTONIC` ns taken together with `anchor_tsc`.
    anchor_ns: u64,
    /// ns per tick, 32.32 fixed point: `(anchor_ns - first_ns) / (anchor_tsc - first_tsc)` as
    /// of the last anchor that moved past the first pair (else it is kept).
    mult: u64,
    /// `REANCHOR_NS` in ticks at `mult`: a read this many ticks past the anchor (or before it)
    /// re-anchors instead; `u64::MAX` when not reading the TSC.
    reanchor_ticks: u64,
    /// TSC source: the largest value returned so far (0 before the first); re-anchoring may
    /// land a few ns before the extrapolation it replaces, and a clock that goes backwards
    /// would make durations negative.
    last: u64,
}

/// Whether this machine's TSC can stand in for `CLOCK_MONOTONIC`: the CPU says it is invariant
/// (`constant_tsc` and `nonstop_tsc`) and the kernel uses it as its clocksource.
pub fn tsc_usable() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let source =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    has("constant_tsc") && has("nonstop_tsc") && source.trim() == "tsc"
}

#[inline(always)]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects and exists on every x86_64 CPU; `Clock` only
        // relies on its value when `tsc_usable()` found an invariant TSC.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

#[inline(always)]
fn rdtsc_fenced() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: LFENCE and RDTSC have no memory effects and exist on every x86_64 CPU (SSE2
        // is baseline). LFENCE keeps RDTSC from executing before the instructions before it
        // have completed, so a timestamp taken after a write call is not taken during it.
        unsafe {
            core::arch::x86_64::_mm_lfence();
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

impl Clock {
    /// A clock on `source`. For [`ClockSource::Tsc`], takes about 10 ms to calibrate.
    pub fn new(source: ClockSource) -> Self {
        let mut c = Self {
            tsc: source == ClockSource::Tsc,
            first_tsc: 0,
            first_ns: 0,
            anchor_tsc: 0,
            anchor_ns: 0,
            mult: 0,
            reanchor_ticks: u64::MAX,
            last: 0,
        };
        if c.tsc {
            let (t0, n0) = pair();
            let until = n0 + 10_000_000;
            let mut last = (t0, n0);
            while last.1 < until {
                last = pair();
            }
            c.first_tsc = t0;
            c.first_ns = n0;
            c.mult = (u128::from(last.1 - n0) << 32)
                .checked_div(u128::from(last.0.saturating_sub(t0)))
                .unwrap_or(0) as u64;
            if c.mult == 0 {
                c.tsc = false;
                return c;
            }
            c.reanchor_ticks = ((u128::from(REANCHOR_NS) << 32) / u128::from(c.mult)) as u64;
            c.anchor_tsc = last.0;
            c.anchor_ns = last.1;
        }
        c
    }

    /// The source this clock reads.
    pub fn source(&self) -> ClockSource {
        if self.tsc {
            ClockSource::Tsc
        } else {
            ClockSource::Monotonic
        }
    }

    /// `CLOCK_MONOTONIC` now, ns. The TSC read may execute a few cycles ahead of the code
    /// before it: right for a timestamp taken *before* an operation (it can only make the
    /// operation look longer), wrong for one taken after it; use [`Self::now_after`] there.
    #[inline]
    pub fn now(&mut self) -> u64 {
        if !self.tsc {
            return now_ns();
        }
        self.at(rdtsc())
    }

    /// `CLOCK_MONOTONIC` now, ns, taken only once every instruction before it has completed:
    /// for the end of a measured operation.
    #[inline]
    pub fn now_after(&mut self) -> u64 {
        if !self.tsc {
            return now_ns();
        }
        self.at(rdtsc_fenced())
    }

    #[inline(always)]
    fn at(&mut self, t: u64) -> u64 {
        let delta = t.wrapping_sub(self.anchor_tsc);
        let ns = if delta >= self.reanchor_ticks {
            self.reanchor()
        } else {
            self.anchor_ns + ((u128::from(delta) * u128::from(self.mult)) >> 32) as u64
        };
        self.last = self.last.max(ns);
        self.last
    }

    #[cold]
    fn reanchor(&mut self) -> u64 {
        let (t, n) = pair();
        self.anchor_tsc = t;
        self.anchor_ns = n;
        let span = t.saturating_sub(self.first_tsc);
        if span > 0 && n > self.first_ns {
            self.mult = ((u128::from(n - self.first_ns) << 32) / u128::from(span)) as u64;
            self.reanchor_ticks =
                ((u128::from(REANCHOR_NS) << 32) / u128::from(self.mult.max(1))) as u64;
        }
        n
    }
}

/// A (TSC, `CLOCK_MONOTONIC`) pair taken as close together as possible: the TSC is read on
/// both sides of the clock read and the midpoint kept, and of three tries the one with the
/// narrowest bracket wins, so that an interrupt inside one try cannot skew the mapping.
fn pair() -> (u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..3 {
        let a = rdtsc_fenced();
        let n = now_ns();
        let b = rdtsc_fenced();
        let width = b.wrapping_sub(a);
        if width < best.2 {
            best = (a + width / 2, n, width);
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use crate::run::clock::*;

    #[test]
    fn tracks_the_monotonic_clock() {
        let source = if tsc_usable() {
            ClockSource::Tsc
        } else {
            ClockSource::Monotonic
        };
        let mut c = Clock::new(source);
        let mut worst = 0i64;
        let mut last = 0;
        for _ in 0..200_000 {
            let before = now_ns();
            let ours = c.now();
            let after = now_ns();
            // Within the bracket, allowing 2 us for preemption between the reads.
            let err = if ours < before {
                before as i64 - ours as i64
            } else if ours > after {
                ours as i64 - after as i64
            } else {
                0
            };
            if after - before < 2_000 {
                worst = worst.max(err);
            }
            assert!(ours >= last, "went backwards");
            last = ours;
        }
        assert!(
            worst < 1_000,
            "worst error {worst} ns against CLOCK_MONOTONIC ({source:?})"
        );
    }
}
