//! The live view: an indicatif progress bar with the last second's figures on a terminal, plain
//! lines (one per second, on stderr) otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{human_ns, thousands};
use crate::plan::Plan;
use crate::report::observe::{Observer, RunStart};
use crate::report::IntervalReport;
use crate::results::Point;

/// Shows progress while the engine runs.
pub struct Progress {
    /// The bar, if stdout and stderr were both terminals at creation (else plain lines);
    /// hidden until `started`.
    bar: Option<ProgressBar>,
    /// Warm-up plus duration, seconds; 0 until `started`.
    total_secs: u64,
    /// Intervals of the warm-up (interval `i` is warm-up when `i < warmup_intervals`); 0 until
    /// `started`.
    warmup_intervals: u64,
    /// End of the last interval shown, whole seconds since the start of the run (0 before).
    done_secs: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A bar when both stdout and stderr are terminals, plain lines otherwise.
    pub fn new() -> Self {
        let interactive = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Self {
            bar: interactive.then(ProgressBar::hidden),
            total_secs: 0,
            warmup_intervals: 0,
            done_secs: 0,
        }
    }

    /// Removes the bar, leaving the last line on screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

fn line(point: &Point) -> String {
    let errors = point.trades.errors + point.book.errors;
    // End-to-end figures exist only with readers; the stream with more traffic speaks for both.
    let e2e = if point.trades.sent >= point.book.sent {
        point.trades.e2e
    } else {
        point.book.e2e
    };
    let delivery = if e2e.max > 0 {
        format!(" | e2e p50 {} p99 {}", human_ns(e2e.p50), human_ns(e2e.p99))
    } else {
        String::new()
    };
    format!(
        "TPS {} OPS {} | write p50 {} p99 {}{delivery} | errors {} | CPU {:.0}%",
        thousands(point.trades.rate as u64),
        thousands(point.book.rate as u64),
        human_ns(point.trades.service.p50.max(point.book.service.p50)),
        human_ns(point.trades.service.p99.max(point.book.service.p99)),
        thousands(errors),
        point.cpu_pct
    )
}

impl Observer for Progress {
    fn started(&mut self, plan: &Plan, start: &RunStart) {
        self.total_secs = plan.total_secs();
        self.warmup_intervals = plan.warmup_intervals();
        // Users need it for `load-tester read --run-dir`.
        if start.location.starts_with('/') {
            eprintln!("Run directory: {}", start.location);
        } else {
            eprintln!("Transport: {}", start.location);
        }
        if let Some(bar) = &mut self.bar {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_length(self.total_secs);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.green} [{elapsed_precise}] [{bar:40.cyan/blue}] {pos}/{len}s ({eta}) {msg}",
                )
                .expect("constant template")
                .progress_chars("#>-"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
    }

    fn interval(&mut self, report: &IntervalReport) {
        // After the load ended (what readers copied after it): no second of the run to show.
        if report.covered_ns == 0 && report.index > 0 {
            return;
        }
        let point = &Point::of_interval(report, report.index < self.warmup_intervals);
        self.done_secs = (point.start_secs + point.secs).round() as u64;
        let phase = if point.warmup { " (warm-up)" } else { "" };
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done_secs);
                bar.set_message(fit(&format!("{}{phase}", line(point)), message_width()));
            }
            None => eprintln!(
                "[{:>5}/{}s] {}{phase}",
                self.done_secs,
                self.total_secs,
                line(point)
            ),
        }
    }
}

/// Columns the bar's template takes besides the message: spinner, elapsed time, a 40-column
/// bar, position and ETA.
const BAR_COLUMNS: usize = 80;

/// Columns left for the message on this terminal (the line must not wrap).
fn message_width() -> usize {
    let (_, cols) = ::console::Term::stderr().size();
    usize::from(cols).saturating_sub(BAR_COLUMNS).max(20)
}

/// `text` cut to `width` characters, with an ellipsis when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use crate::output::progress::fit;

    #[test]
    fn long_lines_are_cut_to_the_width() {
        assert_eq!(fit("short", 20), "short");
        let cut = fit(&"x".repeat(300), 50);
        assert_eq!(cut.chars().count(), 50);
        assert!(cut.ends_with('…'));
    }
}
