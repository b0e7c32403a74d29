//! `load-tester clean`: removes the run directories that crashed runs left behind.

use super::error;
use alphapulse_bus::CleanOutcome;

/// The files the tester writes into a run directory besides the bus's own: a feed's
/// description, and the file a `fill-shm` fault takes space with (left behind, with all the
/// space it took, by a tester that was killed during the fault).
const COMPANIONS: [&str; 2] = [
    crate::transport::feed::FEED_NAME,
    crate::run::chaos::FILL_NAME,
];

/// Runs the command; returns the exit status.
pub(super) fn run(shm_dir: Option<std::path::PathBuf>) -> i32 {
    let base = shm_dir.unwrap_or_else(alphapulse_bus::default_base_dir);
    match alphapulse_bus::clean_stale_runs_with(&base, &COMPANIONS) {
        Ok(runs) => {
            let removed = runs.iter().filter(|r| r.removed()).count();
            for r in &runs {
                match &r.outcome {
                    CleanOutcome::Removed => println!("removed: {}", r.path.display()),
                    CleanOutcome::Alive => {
                        println!("kept (its process is alive): {}", r.path.display())
                    }
                    CleanOutcome::Kept { reason } => {
                        println!("refused: {}: {reason}", r.path.display())
                    }
                }
            }
            println!(
                "{removed} stale run director{} removed from {}",
                if removed == 1 { "y" } else { "ies" },
                base.display()
            );
            0
        }
        Err(e) => error(e),
    }
}
