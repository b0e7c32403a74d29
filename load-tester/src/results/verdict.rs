//! The verdict of a run: PASSED, FAILED, or INVALID when the tester itself could not keep the
//! schedule, with every target checked. [`crate::results::judge`] reaches it.

use serde::{Deserialize, Serialize};

/// The outcome of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every target met.
    Passed,
    /// At least one target missed.
    #[default]
    Failed,
    /// The measurement cannot be trusted: the generator fell behind its schedule for reasons
    /// of its own, or nothing was measured.
    Invalid,
}

/// One target, what was measured, and whether it was met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, as the report prints it.
    pub name: String,
    /// The comparison, e.g. `< 1000000`.
    pub target: String,
    /// The measured value.
    pub measured: f64,
    /// Unit of `measured` and the target.
    pub unit: String,
    /// Whether the target was met.
    pub passed: bool,
}

/// The verdict: every check, and the outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// Every target checked, in report order.
    pub checks: Vec<Check>,
    /// Why the run is invalid, when it is.
    pub invalid_reason: Option<String>,
}
