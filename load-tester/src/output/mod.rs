//! Everything that renders results: the console report, the live progress view, JSON, the
//! HdrHistogram interval log and percentile distributions, the HTML report, JUnit XML. Outputs
//! only read results; none of them changes what was measured.

pub mod comparison;
pub mod console;
pub mod files;
pub mod format;
pub mod hlog;
pub mod html;
pub mod json;
pub mod junit;
pub mod metrics;
pub mod progress;
pub mod reports;

pub use format::{human_ns, thousands};

/// Turns colours off when the `NO_COLOR` environment variable is set and not empty
/// (<https://no-color.org>).
pub fn honour_no_color() {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        ::console::set_colors_enabled(false);
        ::console::set_colors_enabled_stderr(false);
    }
}
