//! `load-tester compare BASELINE CURRENT`.

use super::error;
use crate::config::cli::CompareArgs;
use crate::output::comparison::render;
use crate::results::compare::{check_config, compare, Comparison, Options};
use crate::results::file::{load, InputError};

/// Prints the comparison; returns 0, 1 on a regression, 2 when an input is unusable.
pub(super) fn run(a: &CompareArgs) -> i32 {
    let options = Options {
        thresholds_file: a.thresholds.clone(),
        threshold: a.threshold.clone(),
        noise_floor: a.noise_floor.clone(),
        allow_config_change: a.allow_config_change,
    };
    let go = || -> Result<Comparison, InputError> {
        let thresholds = options.thresholds()?;
        let b = load(&a.baseline)?;
        let c = load(&a.current)?;
        let warnings = check_config(
            &b.results.plan,
            &c.results.plan,
            options.allow_config_change,
        )?;
        Ok(compare(&b, &c, &thresholds, warnings))
    };
    match go() {
        Ok(c) => {
            print!("{}", render(&c));
            crate::exit::of_comparison(c.regressed())
        }
        Err(e) => error(e),
    }
}
