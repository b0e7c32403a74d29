//! What watches a run while it goes: the live outputs (progress view, interval log, Prometheus
//! metrics) and the results accumulator. They see the run only through this trait, one merged
//! [`IntervalReport`] per interval in index order, and never reach back into it.

use crate::plan::Plan;

use super::IntervalReport;

/// Facts about a run known when its load starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// Where the run's transport lives (the bus's run directory), for the user's tools.
    pub location: String,
    /// Wall-clock start of interval 0, ms since the Unix epoch.
    pub started_unix_ms: u64,
}

/// Sees the run as it goes.
pub trait Observer {
    /// Load starts at the next instant.
    fn started(&mut self, _plan: &Plan, _start: &RunStart) {}
    /// One interval is complete: every producer has reported it. Called once per interval, in
    /// index order, with no gaps (an interval nobody reported arrives empty).
    fn interval(&mut self, _report: &IntervalReport) {}
}

/// Several observers as one, called in order.
pub struct Tee<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Tee<'_> {
    fn started(&mut self, plan: &Plan, start: &RunStart) {
        for o in &mut self.0 {
            o.started(plan, start);
        }
    }

    fn interval(&mut self, report: &IntervalReport) {
        for o in &mut self.0 {
            o.interval(report);
        }
    }
}
