//! Performance targets: the defaults of the original design's "Performance Targets" table, or a
//! TOML file that replaces any of them.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The targets a run is judged against. Every field has a default; a targets file overrides
/// the fields it names and may name no other.
///
/// ```
/// let t: alphapulse_load_tester::results::targets::Targets = toml::from_str("write_p99_ns = 5000").unwrap();
/// assert_eq!(t.write_p99_ns, 5000);
/// assert_eq!(t.min_throughput, 10_000.0); // the default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Targets {
    /// Least total throughput, messages per second (trades plus book updates).
    pub min_throughput: f64,
    /// Least achievement, percent of the target rate actually sent.
    pub min_achievement_pct: f64,
    /// Write (service-time) P50 must be below this, nanoseconds.
    pub write_p50_ns: u64,
    /// Write (service-time) P99 must be below this, nanoseconds.
    pub write_p99_ns: u64,
    /// Write (service-time) P99.9 must be below this, nanoseconds.
    pub write_p999_ns: u64,
    /// Average CPU of the tester process must be below this, percent of one core.
    pub max_cpu_pct: f64,
    /// Peak resident memory of the tester process must be below this, MiB.
    pub max_memory_mib: f64,
    /// Failed writes and buffer overflows must be below this share of attempts, percent.
    pub max_error_rate_pct: f64,
    /// If set: resident memory may grow by at most this much per hour (least-squares slope
    /// over the measured time series), MiB/h. Judged on runs of at least 10 points.
    pub max_rss_growth_mib_per_hour: Option<f64>,
    /// If set: write P99 of the last tenth of the run may exceed the first tenth's by at most
    /// this much, percent.
    pub max_p99_degradation_pct: Option<f64>,
    /// If set: throughput of the last tenth may fall below the first tenth's by at most this
    /// much, percent.
    pub max_throughput_degradation_pct: Option<f64>,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            min_throughput: 10_000.0,
            min_achievement_pct: 95.0,
            write_p50_ns: 100_000,
            write_p99_ns: 1_000_000,
            write_p999_ns: 10_000_000,
            max_cpu_pct: 50.0,
            max_memory_mib: 500.0,
            max_error_rate_pct: 0.01,
            max_rss_growth_mib_per_hour: None,
            max_p99_degradation_pct: None,
            max_throughput_degradation_pct: None,
        }
    }
}

/// Why a targets file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}{location}: {message}")]
pub struct TargetsError {
    path: String,
    location: String,
    message: String,
}

impl Targets {
    /// Reads a targets file. The error names the file, the line and the key when it can.
    pub fn load(path: &Path) -> Result<Self, TargetsError> {
        let err = |location: String, message: String| TargetsError {
            path: path.display().to_string(),
            location,
            message,
        };
        let text = crate::results::file::read_text(path).map_err(|e| err(String::new(), e))?;
        let targets: Targets = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    format!(
                        ", line {}",
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    )
                })
                .unwrap_or_default();
            let message = e.message().trim().replace('\n', " ");
            err(line, crate::plan::text::shorten_numbers(&message))
        })?;
        targets.validate().map_err(|m| err(String::new(), m))?;
        Ok(targets)
    }

    /// Checks that every target is a finite, non-negative number.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("min_throughput", self.min_throughput),
            ("min_achievement_pct", self.min_achievement_pct),
            ("max_cpu_pct", self.max_cpu_pct),
            ("max_memory_mib", self.max_memory_mib),
            ("max_error_rate_pct", self.max_error_rate_pct),
            (
                "max_rss_growth_mib_per_hour",
                self.max_rss_growth_mib_per_hour.unwrap_or(0.0),
            ),
            (
                "max_p99_degradation_pct",
                self.max_p99_degradation_pct.unwrap_or(0.0),
            ),
            (
                "max_throughput_degradation_pct",
                self.max_throughput_degradation_pct.unwrap_or(0.0),
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{key} = {value}: must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
