//! The files a run writes besides the console report: the JSON results (`--json-output`), the
//! HdrHistogram interval log (`--hlog`), percentile distributions (`--hgrm-dir`), the HTML report
//! (`--html-report`), JUnit XML (`--junit`), and the comparison with a baseline (`--baseline`).
//!
//! Everything that can be refused is refused before the run starts ([`Reports::prepare`]):
//! unwritable paths, an unusable baseline, a baseline of a different load, bad thresholds. After
//! the verdict, [`Reports::finish`] writes the files, each atomically.

use std::path::PathBuf;

use super::files::{check_dir_writable, check_distinct, Target};
use crate::plan::Plan;
use crate::results::compare::{self, Comparison, Thresholds};
use crate::results::file::{self, Loaded};
use crate::results::Results;

use super::hlog::HlogWriter;

/// The baseline of `--baseline`, loaded and checked before the run.
#[derive(Debug)]
struct Baseline {
    /// The baseline results file, read and checked.
    loaded: Loaded,
    /// The thresholds of the comparison: the defaults, then `--thresholds`, then `--threshold`.
    thresholds: Thresholds,
    /// Every configuration difference from this run's plan (load differences only if allowed).
    warnings: Vec<String>,
}

/// What the user asked a run to write, by flag.
#[derive(Debug, Clone, Default)]
pub struct OutputRequest {
    /// `--json-output`.
    pub json: Option<PathBuf>,
    /// `--hlog`.
    pub hlog: Option<PathBuf>,
    /// `--hgrm-dir`.
    pub hgrm_dir: Option<PathBuf>,
    /// `--html-report`.
    pub html: Option<PathBuf>,
    /// `--junit`.
    pub junit: Option<PathBuf>,
    /// `--baseline`.
    pub baseline: Option<PathBuf>,
    /// `--thresholds`, `--threshold`, `--allow-config-change` (with `--baseline`).
    pub compare: compare::Options,
}

/// The outputs of one run, checked and ready.
pub struct Reports {
    /// The interval log, written while the run goes: tee it with the progress view.
    pub hlog: Option<HlogWriter>,
    /// `--json-output`: resolved before the run, and no other output's file.
    json: Option<Target>,
    /// `--hgrm-dir`: checked, before the run, to be a directory files can be created in.
    hgrm_dir: Option<PathBuf>,
    /// `--html-report`: resolved as `json` is.
    html: Option<Target>,
    /// `--junit`: resolved as `json` is.
    junit: Option<Target>,
    /// Whether an output goes to standard output, so the human-readable report must not.
    stdout_taken: bool,
    /// `--baseline`, loaded and found comparable with this run's plan before the run.
    baseline: Option<Baseline>,
}

impl Reports {
    /// Checks every output path, the baseline and the thresholds of `args`, and creates the
    /// interval log. Errors are one line naming the flag.
    pub fn prepare(args: &OutputRequest, plan: &Plan) -> Result<Self, String> {
        let resolve = |flag: &str, path: &Option<PathBuf>| -> Result<Option<Target>, String> {
            path.as_ref()
                .map(|p| {
                    Target::resolve(p, true).map_err(|m| format!("{flag} {}: {m}", p.display()))
                })
                .transpose()
        };
        let json = resolve("--json-output", &args.json)?;
        let hlog = resolve("--hlog", &args.hlog)?;
        let html = resolve("--html-report", &args.html)?;
        let junit = resolve("--junit", &args.junit)?;
        let named: Vec<(&str, &Target)> = [
            ("--json-output", &json),
            ("--hlog", &hlog),
            ("--html-report", &html),
            ("--junit", &junit),
        ]
        .into_iter()
        .filter_map(|(flag, t)| t.as_ref().map(|t| (flag, t)))
        .collect();
        check_distinct(&named)?;
        let stdout_taken = named.iter().any(|(_, t)| t.is_stdout());
        if let Some(dir) = &args.hgrm_dir {
            check_dir_writable(dir).map_err(|m| format!("--hgrm-dir {}: {m}", dir.display()))?;
        }
        let baseline = match &args.baseline {
            None => None,
            Some(path) => {
                let thresholds = args.compare.thresholds().map_err(|e| e.0)?;
                let loaded = file::load(path).map_err(|e| format!("--baseline {e}"))?;
                let warnings = compare::check_config(
                    &loaded.results.plan,
                    plan,
                    args.compare.allow_config_change,
                )
                .map_err(|e| format!("--baseline {}: {e}", path.display()))?;
                Some(Baseline {
                    loaded,
                    thresholds,
                    warnings,
                })
            }
        };
        let hlog = match &hlog {
            Some(t) => Some(
                HlogWriter::create(t).map_err(|e| format!("--hlog {}: {e}", t.path().display()))?,
            ),
            None => None,
        };
        Ok(Self {
            hlog,
            json,
            hgrm_dir: args.hgrm_dir.clone(),
            html,
            junit,
            stdout_taken,
            baseline,
        })
    }

    /// Whether one of the outputs writes to standard output (`-`): the console report then goes
    /// to standard error, so that standard output carries that output alone.
    pub fn stdout_taken(&self) -> bool {
        self.stdout_taken
    }

    /// After the verdict: writes the JSON results, closes the interval log, compares with the
    /// baseline (printing the table on stdout), and writes the percentile distributions, the
    /// HTML report and the JUnit XML. An output that fails does not keep the others from being
    /// written. Returns the comparison, if any, and one line per output that failed.
    pub fn finish(self, results: &Results) -> (Option<Comparison>, Vec<String>) {
        let mut errors = Vec::new();
        if let Some(t) = &self.json {
            match super::json::write(results, t) {
                Ok(()) if t.is_stdout() => {}
                Ok(()) => eprintln!("Results written to {}", t.path().display()),
                Err(e) => errors.push(format!("--json-output {}: {e}", t.path().display())),
            }
        }
        if let Some(h) = self.hlog {
            let path = h.path().to_path_buf();
            match h.finish() {
                Ok(n) => eprintln!(
                    "HdrHistogram interval log ({n} intervals) written to {}",
                    path.display()
                ),
                Err(e) => errors.push(format!("--hlog {}: {e}", path.display())),
            }
        }
        if let Some(dir) = &self.hgrm_dir {
            match super::hlog::write_hgrm_dir(results, dir) {
                Ok(files) => eprintln!(
                    "{} percentile distributions (.hgrm, microseconds) written to {}",
                    files.len(),
                    dir.display()
                ),
                Err(e) => errors.push(format!("--hgrm-dir {e}")),
            }
        }
        let comparison = match self.baseline {
            None => None,
            Some(b) => match Loaded::new("this run".into(), results.clone()) {
                Ok(current) => {
                    let c = compare::compare(&b.loaded, &current, &b.thresholds, b.warnings);
                    let table = super::comparison::render(&c);
                    if self.stdout_taken {
                        eprint!("{table}");
                    } else {
                        print!("{table}");
                    }
                    Some(c)
                }
                Err(e) => {
                    errors.push(format!("--baseline: {e}"));
                    None
                }
            },
        };
        if let Some(t) = &self.html {
            match super::html::write(results, comparison.as_ref(), t) {
                Ok(()) if t.is_stdout() => {}
                Ok(()) => eprintln!("HTML report written to {}", t.path().display()),
                Err(e) => errors.push(format!("--html-report {}: {e}", t.path().display())),
            }
        }
        if let Some(t) = &self.junit {
            match super::junit::write(results, comparison.as_ref(), t) {
                Ok(()) if t.is_stdout() => {}
                Ok(()) => eprintln!("JUnit XML written to {}", t.path().display()),
                Err(e) => errors.push(format!("--junit {}: {e}", t.path().display())),
            }
        }
        (comparison, errors)
    }
}

#[cfg(test)]
mod tests {
    use crate::output::reports::*;
    use crate::results::compare::Status;
    use crate::results::testdata::sample_results;

    fn loaded(r: Results) -> Loaded {
        Loaded::new("x".into(), r).unwrap()
    }

    #[test]
    fn a_run_compared_with_itself_does_not_regress() {
        let r = sample_results(1);
        let c = compare::compare(
            &loaded(r.clone()),
            &loaded(r),
            &Thresholds::default(),
            Vec::new(),
        );
        assert!(!c.regressed());
        let p99 = c
            .metrics
            .iter()
            .find(|m| m.key == "latency.service.all.p99")
            .unwrap();
        assert_eq!(p99.change_pct, Some(0.0));
        assert_eq!(p99.status, Status::Ok);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn slower_histograms_regress_and_faster_ones_improve() {
        let base = loaded(sample_results(1));
        let slow = loaded(sample_results(3));
        let c = compare::compare(&base, &slow, &Thresholds::default(), Vec::new());
        let keys: Vec<&str> = c.regressions().map(|m| m.key.as_str()).collect();
        assert!(keys.contains(&"latency.service.all.p99"), "{keys:?}");
        assert!(keys.contains(&"latency.response.trades.p50"), "{keys:?}");
        // Every write of the slow run is slower than the baseline's P99 ...
        let share = c
            .metrics
            .iter()
            .find(|m| m.key == "latency.service.all.slower_than_base_p99_pct")
            .unwrap();
        assert!(
            share.current.unwrap() > 2.0 * share.baseline.unwrap(),
            "{share:?}"
        );
        assert_eq!(share.status, Status::Regressed);
        // ... and lag is not judged by default.
        assert!(!keys.iter().any(|k| k.starts_with("latency.lag")));
        assert!(c.regressed());

        let c = compare::compare(&slow, &base, &Thresholds::default(), Vec::new());
        assert!(!c.regressed());
        let p99 = c
            .metrics
            .iter()
            .find(|m| m.key == "latency.service.all.p99")
            .unwrap();
        assert_eq!(p99.status, Status::Improved);
        assert!(p99.change_pct.unwrap() < -50.0);
        assert!(!c.regressed());
    }

    #[test]
    fn thresholds_decide_what_regresses() {
        let base = loaded(sample_results(1));
        let slow = loaded(sample_results(3));
        let mut t = Thresholds::default();
        t.set_arg("latency.*.*.*=off").unwrap();
        let c = compare::compare(&base, &slow, &t, Vec::new());
        assert!(!c.regressed(), "{:?}", c.regressions().collect::<Vec<_>>());
    }

    #[test]
    fn hand_edited_summaries_are_reported_and_the_histogram_wins() {
        let mut r = sample_results(1);
        let true_p99 = r.latency.service.all.p99;
        r.latency.service.all.p99 = 1;
        let l = loaded(r);
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("latency.service.all") && w.contains("disagrees")),
            "{:?}",
            l.warnings
        );
        assert_eq!(
            l.histograms[&("service", "all")].value_at_quantile(0.99),
            true_p99
        );
        let mut r = sample_results(1);
        r.latency.response.book.histogram = "AAAA".into();
        let e = Loaded::new("f.json".into(), r).unwrap_err().0;
        assert!(
            e.contains("f.json") && e.contains("latency.response.book"),
            "{e}"
        );
    }

    #[test]
    fn different_loads_are_refused_unless_allowed() {
        let base = sample_results(1).plan;
        let mut cur = base.clone();
        cur.exchanges[0].trades_per_sec *= 2;
        cur.duration_secs += 1;
        let e = compare::check_config(&base, &cur, false).unwrap_err().0;
        assert!(e.contains("per-exchange rates"), "{e}");
        assert!(e.contains("--allow-config-change"), "{e}");
        let w = compare::check_config(&base, &cur, true).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|l| l.contains("duration")));
        let mut cur = base.clone();
        cur.seed += 1;
        let w = compare::check_config(&base, &cur, false).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn junit_has_one_case_per_target() {
        let r = sample_results(1);
        let xml = crate::output::junit::render(&r, None);
        let cases = xml.matches("<testcase ").count();
        assert_eq!(cases, r.verdict.checks.len() + 1);
        for c in &r.verdict.checks {
            assert!(
                xml.contains(&format!(
                    "name=\"{}\"",
                    crate::output::format::escape(&c.name)
                )),
                "{}",
                c.name
            );
        }
        let failed = r.verdict.checks.iter().filter(|c| !c.passed).count();
        assert_eq!(xml.matches("<failure ").count(), failed);
        assert!(xml.contains(&format!("failures=\"{failed}\"")));

        let mut strict = r.clone();
        strict.verdict.checks[3].passed = false;
        let xml = crate::output::junit::render(&strict, None);
        assert!(xml.contains("<failure message=\"measured"));
        assert!(xml.contains(&format!("name=\"{}\"", strict.verdict.checks[3].name)));

        let mut invalid = r;
        invalid.verdict.outcome = crate::results::verdict::Outcome::Invalid;
        invalid.verdict.invalid_reason = Some("generator <behind>".into());
        let xml = crate::output::junit::render(&invalid, None);
        assert_eq!(xml.matches("<error ").count(), 1);
        assert!(xml.contains("generator &lt;behind&gt;"));
        assert_eq!(
            xml.matches("<skipped ").count(),
            invalid.verdict.checks.len()
        );
    }

    #[test]
    fn junit_lists_regressions_of_the_comparison() {
        let base = loaded(sample_results(1));
        let slow = sample_results(3);
        let c = compare::compare(&base, &loaded(slow.clone()), &Thresholds::default(), vec![]);
        let xml = crate::output::junit::render(&slow, Some(&c));
        assert!(xml.contains("load-tester comparison with baseline"));
        assert_eq!(
            xml.matches("classname=\"load-tester.baseline\"").count(),
            c.metrics
                .iter()
                .filter(|m| !matches!(m.status, Status::NotJudged(_)))
                .count()
        );
        assert!(xml.contains("name=\"latency.service.all.p99\""));
        assert!(xml.matches("<failure ").count() >= c.regressions().count());
    }
}
