//! `load-tester clean`: removes the run directories that crashed runs left behind.

use super::error;
use alphapulse_bus::CleanOutcome;

/// Runs the command; returns the exit status.
pub(super) fn run(shm_dir: Option<std::path::PathBuf>) -> i32 {
    let base = shm_dir.unwrap_or_else(alphapulse_bus::default_base_dir);
    match alphapulse_bus::clean_stale_runs(&base) {
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
