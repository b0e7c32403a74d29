//! JUnit XML (`--junit FILE`), so that CI systems show which target failed: one test case per
//! target check of the verdict, one for the validity of the run itself, and, with
//! `--baseline`, one per judged metric of the comparison.
//!
//! The layout is the common denominator that Jenkins, GitLab, GitHub test reporters and
//! Buildkite read: `<testsuites>` of `<testsuite>` of `<testcase>` with `<failure>`, `<error>`
//! or `<skipped>`.

use std::fmt::Write as _;

use super::format::{escape, format_change, format_threshold, format_value, iso8601_utc};
use crate::results::compare::{Comparison, Status};
use crate::results::verdict::{Check, Outcome};
use crate::results::Results;

fn measured(c: &Check) -> String {
    match c.unit.as_str() {
        "%" => format!("{:.3}", c.measured),
        "MiB" => format!("{:.1}", c.measured),
        "MiB/h" => format!("{:+.1}", c.measured),
        _ => format!("{:.0}", c.measured),
    }
}

struct Case {
    /// The `testcase` name: a check's name or a metric key.
    name: String,
    /// The `testcase` classname: which suite the case belongs to.
    classname: &'static str,
    /// (element, message, body)
    outcome: Option<(&'static str, String, String)>,
}

fn suite(out: &mut String, name: &str, r: &Results, cases: &[Case], properties: &[(&str, String)]) {
    let count = |e: &str| {
        cases
            .iter()
            .filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == e))
            .count()
    };
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
        escape(name),
        cases.len(),
        count("failure"),
        count("error"),
        count("skipped"),
        r.measured_secs,
        iso8601_utc(r.started_unix_ms)
    );
    if !properties.is_empty() {
        let _ = writeln!(out, "    <properties>");
        for (k, v) in properties {
            let _ = writeln!(
                out,
                "      <property name=\"{}\" value=\"{}\"/>",
                escape(k),
                escape(v)
            );
        }
        let _ = writeln!(out, "    </properties>");
    }
    for c in cases {
        let open = format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
            c.classname,
            escape(&c.name)
        );
        match &c.outcome {
            None => {
                let _ = writeln!(out, "{open}/>");
            }
            Some((element, message, body)) => {
                let _ = writeln!(out, "{open}>");
                if *element == "skipped" {
                    let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(message));
                } else {
                    let kind = if *element == "error" {
                        "RunInvalid"
                    } else {
                        "TargetMissed"
                    };
                    let _ = writeln!(
                        out,
                        "      <{element} message=\"{}\" type=\"{kind}\">{}</{element}>",
                        escape(message),
                        escape(body)
                    );
                }
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    let _ = writeln!(out, "  </testsuite>");
}

/// The JUnit XML of a run, with the comparison against a baseline when there is one.
pub fn render(r: &Results, comparison: Option<&Comparison>) -> String {
    let invalid = r.verdict.outcome == Outcome::Invalid;
    let mut cases = Vec::new();
    cases.push(Case {
        name: "Run validity".into(),
        classname: "load-tester.run",
        outcome: if invalid {
            let reason = r
                .verdict
                .invalid_reason
                .clone()
                .unwrap_or_else(|| "the run is invalid".into());
            Some(("error", reason.clone(), reason))
        } else {
            r.interrupted.as_ref().map(|signal| {
                let m = format!(
                    "interrupted by {signal} after {:.1} s of {} s planned",
                    r.measured_secs, r.plan.duration_secs
                );
                ("failure", m.clone(), m)
            })
        },
    });
    let faults: Vec<String> = r
        .chaos
        .iter()
        .flat_map(|c| &c.faults)
        .map(|f| f.check_name())
        .collect();
    // A fault's check is its own case in the chaos suite, with what happened.
    for c in r
        .verdict
        .checks
        .iter()
        .filter(|c| !faults.contains(&c.name))
    {
        let outcome = if invalid {
            Some((
                "skipped",
                "not judged: the run is invalid".to_string(),
                String::new(),
            ))
        } else if c.passed {
            None
        } else {
            let m = format!(
                "measured {} {}, target {} {}",
                measured(c),
                c.unit,
                c.target,
                c.unit
            );
            Some(("failure", m.clone(), m))
        };
        cases.push(Case {
            name: c.name.clone(),
            classname: "load-tester.targets",
            outcome,
        });
    }
    let plan = &r.plan;
    let properties = vec![
        ("exchanges", plan.exchanges.len().to_string()),
        (
            "target_rate",
            plan.total_target_rate().to_string() + " msgs/s",
        ),
        ("duration_secs", plan.duration_secs.to_string()),
        ("warmup_secs", plan.warmup_secs.to_string()),
        ("measured_secs", format!("{:.3}", r.measured_secs)),
        ("outcome", format!("{:?}", r.verdict.outcome).to_lowercase()),
        ("tool", format!("{} {}", r.tool.name, r.tool.version)),
    ];
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut suites = String::new();
    suite(
        &mut suites,
        "load-tester performance targets",
        r,
        &cases,
        &properties,
    );
    let mut total = cases.len();
    let mut failures = cases
        .iter()
        .filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == "failure"))
        .count();
    let errors = usize::from(invalid);
    if let Some(chaos) = &r.chaos {
        let cases: Vec<Case> = chaos
            .faults
            .iter()
            .map(|f| Case {
                name: f.check_name(),
                classname: "load-tester.chaos",
                outcome: (!f.passed).then(|| ("failure", f.verdict.clone(), f.summary())),
            })
            .collect();
        total += cases.len();
        failures += cases.iter().filter(|c| c.outcome.is_some()).count();
        let props = vec![
            ("chaos_seed", chaos.seed.to_string()),
            ("restart_readers", chaos.restart_readers.to_string()),
        ];
        suite(&mut suites, "load-tester chaos faults", r, &cases, &props);
    }
    if let Some(cmp) = comparison {
        let cases: Vec<Case> = cmp
            .metrics
            .iter()
            .filter(|m| !matches!(m.status, Status::NotJudged(_)))
            .map(|m| Case {
                name: m.key.clone(),
                classname: "load-tester.baseline",
                outcome: (m.status == Status::Regressed).then(|| {
                    let msg = format!(
                        "{} -> {} {} ({} beyond {} of baseline {})",
                        format_value(m.baseline, m.unit),
                        format_value(m.current, m.unit),
                        m.unit,
                        format_change(m.change_pct),
                        format_threshold(m),
                        cmp.baseline
                    );
                    ("failure", msg.clone(), msg)
                }),
            })
            .collect();
        total += cases.len();
        failures += cases.iter().filter(|c| c.outcome.is_some()).count();
        let props = vec![("baseline", cmp.baseline.clone())];
        suite(
            &mut suites,
            "load-tester comparison with baseline",
            r,
            &cases,
            &props,
        );
    }
    let _ = writeln!(
        out,
        "<testsuites name=\"load-tester\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        r.measured_secs
    );
    out.push_str(&suites);
    out.push_str("</testsuites>\n");
    out
}

/// Writes the JUnit XML to `target` (see [`super::files::Target::write`]).
pub fn write(
    r: &Results,
    comparison: Option<&Comparison>,
    target: &super::files::Target,
) -> std::io::Result<()> {
    target.write(render(r, comparison).as_bytes())
}

#[cfg(test)]
mod tests {
    use crate::output::junit::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&apos;");
        assert_eq!(escape("x\u{1}y"), "x?y");
    }

    #[test]
    fn each_fault_is_a_case_of_its_own_suite() {
        let mut r = crate::results::testdata::sample_results(1);
        let chaos = crate::results::testdata::sample_chaos();
        for f in &chaos.faults {
            r.verdict.checks.push(crate::results::verdict::Check {
                name: f.check_name(),
                target: "detected".into(),
                measured: 0.0,
                unit: "ms".into(),
                passed: f.passed,
            });
        }
        r.verdict.outcome = crate::results::verdict::Outcome::Failed;
        r.chaos = Some(chaos);
        let xml = render(&r, None);
        assert!(
            xml.contains("<testsuite name=\"load-tester chaos faults\""),
            "{xml}"
        );
        assert_eq!(xml.matches("classname=\"load-tester.chaos\"").count(), 2);
        // Not twice: the targets suite leaves the faults to theirs.
        assert_eq!(
            xml.matches("name=\"Fault 0 stop-reader@2s:200ms\"").count(),
            1
        );
        assert!(xml.contains("<failure message=\"not detected\" type=\"TargetMissed\">stop-reader"));
        assert!(xml.contains("<property name=\"chaos_seed\" value=\"7\"/>"));
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00");
        assert_eq!(iso8601_utc(1_714_566_896_000), "2024-05-01T12:34:56");
    }
}
