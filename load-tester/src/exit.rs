//! The one place that maps outcomes to the process's exit status.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | passed (or, for `compare`, no regression) |
//! | 1 | a target missed, or a regression against the baseline |
//! | 2 | usage, configuration or input error: nothing was judged |
//! | 3 | the run is invalid: the tester itself could not keep its schedule |
//! | 130 / 143 | interrupted by SIGINT / SIGTERM (results of the measured time are still written) |

use crate::results::verdict::Outcome;

/// Passed.
pub const OK: i32 = 0;
/// A target missed, or a regression against the baseline.
pub const FAILED: i32 = 1;
/// A usage, configuration or input error.
pub const USAGE: i32 = 2;
/// The run is invalid.
pub const INVALID: i32 = 3;
/// Interrupted by SIGINT.
pub const SIGINT: i32 = 130;
/// Interrupted by SIGTERM.
pub const SIGTERM: i32 = 143;

/// The exit status of a verdict's outcome: 0, 1 or 3.
pub fn of_outcome(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Passed => OK,
        Outcome::Failed => FAILED,
        Outcome::Invalid => INVALID,
    }
}

/// The exit status of a comparison: 1 when anything regressed, else 0.
pub fn of_comparison(regressed: bool) -> i32 {
    if regressed {
        FAILED
    } else {
        OK
    }
}

/// The exit status of a load test: the signal's when one interrupted it, else the verdict's,
/// made 1 by a regression against the baseline when nothing worse already holds.
pub fn of_run(outcome: Outcome, interrupted_by: Option<i32>, regressed: bool) -> i32 {
    let code = interrupted_by.unwrap_or_else(|| of_outcome(outcome));
    if code == OK && regressed {
        FAILED
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use crate::exit::{of_run, FAILED, INVALID, OK, SIGINT};
    use crate::results::verdict::Outcome;

    #[test]
    fn a_regression_fails_only_what_would_pass() {
        assert_eq!(of_run(Outcome::Passed, None, false), OK);
        assert_eq!(of_run(Outcome::Passed, None, true), FAILED);
        assert_eq!(of_run(Outcome::Invalid, None, true), INVALID);
        assert_eq!(of_run(Outcome::Passed, Some(SIGINT), true), SIGINT);
    }
}
