//! The comparison with a baseline as a console table, regressions in red and improvements in
//! green.

use std::fmt::Write as _;

use ::console::style;

use super::format::{format_change, format_threshold, format_value};
use crate::results::compare::{Comparison, Metric, Status};

/// The comparison as a console table, regressions in red and improvements in green.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nComparison: {} (current) against {} (baseline)",
        c.current, c.baseline
    );
    for w in &c.warnings {
        let _ = writeln!(out, "{} {w}", style("warning:").yellow().bold());
    }
    let mut section = "";
    for m in &c.metrics {
        if m.section != section {
            section = &m.section;
            let _ = writeln!(
                out,
                "\n{:<44} {:>14} {:>14} {:>9} {:>9}  status",
                style(section).bold(),
                "baseline",
                "current",
                "change",
                "threshold"
            );
        }
        let status = match &m.status {
            Status::Ok => style("ok".to_string()),
            Status::Improved => style("improved".to_string()).green(),
            Status::Regressed => style("REGRESSED".to_string()).red().bold(),
            Status::NotJudged(r) if r == "no threshold" => style(String::new()),
            Status::NotJudged(r) => style(format!("not judged: {r}")).dim(),
        };
        let change = format_change(m.change_pct);
        let change = match m.status {
            Status::Regressed => style(change).red(),
            Status::Improved => style(change).green(),
            _ => style(change),
        };
        let _ = writeln!(
            out,
            "  {:<42} {:>14} {:>14} {:>9} {:>9}  {status}",
            format!("{} ({})", m.label, m.unit),
            format_value(m.baseline, m.unit),
            format_value(m.current, m.unit),
            change,
            format_threshold(m),
        );
    }
    let regressions: Vec<&Metric> = c.regressions().collect();
    let judged = c
        .metrics
        .iter()
        .filter(|m| !matches!(m.status, Status::NotJudged(_)))
        .count();
    let _ = writeln!(out);
    if regressions.is_empty() {
        let _ = writeln!(
            out,
            "{} no regression ({judged} metrics judged against their thresholds)",
            style("✓").green()
        );
    } else {
        let _ = writeln!(
            out,
            "{} {} regression{} ({judged} metrics judged):",
            style("✗").red(),
            regressions.len(),
            if regressions.len() == 1 { "" } else { "s" }
        );
        for m in regressions {
            let _ = writeln!(
                out,
                "  {} {} -> {} {} ({} beyond {})",
                style(&m.key).red(),
                format_value(m.baseline, m.unit),
                format_value(m.current, m.unit),
                m.unit,
                format_change(m.change_pct),
                format_threshold(m)
            );
        }
    }
    out
}
