//! How numbers, durations and text look in every report: one place, so that the console,
//! HTML and JUnit outputs agree.

use crate::results::compare::{Better, Metric};

pub use crate::plan::text::thousands;

/// A duration in ns, in the unit that reads best: `812 ns`, `12.3 us`, `4.56 ms`, `1.23 s`.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// A check's target (`< 1000000`, `>= 95`, `= 0`: the comparison, a space, the number) in
/// `unit`, with its number as the reports print numbers and a long duration also in the unit
/// that reads best: `< 1,000,000 ns (1.00 ms)`. A target of another shape is shown as it is,
/// followed by the unit.
pub fn format_target(target: &str, unit: &str) -> String {
    let with_unit = |s: String| {
        if unit.is_empty() {
            s
        } else {
            format!("{s} {unit}")
        }
    };
    let Some((op, number)) = target.split_once(' ') else {
        return with_unit(target.to_string());
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            let number = if v.fract() == 0.0 && v >= 0.0 {
                thousands(v as u64)
            } else {
                format_value(Some(v), unit)
            };
            let shown = with_unit(format!("{op} {number}"));
            if unit == "ns" && v >= 10_000.0 {
                format!("{shown} ({})", human_ns(v as u64))
            } else {
                shown
            }
        }
        _ => with_unit(target.to_string()),
    }
}

/// The highest sustained rate of a comparison's row: `-` when not searched, `none` when no
/// probe was sustained, `≥ N` when the search stopped at its ceiling.
pub fn format_max_rate(m: Option<&crate::results::transports::MaxRate>) -> String {
    match m {
        None => "-".into(),
        Some(m) => match m.rate {
            None => "none".into(),
            Some(r) if m.at_ceiling => format!(">={}", thousands(r.round() as u64)),
            Some(r) => thousands(r.round() as u64),
        },
    }
}

/// A value in its unit, as the reports print it.
pub fn format_value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else { return "-".into() };
    match unit {
        "%" => format!("{v:.3}"),
        "MiB" => format!("{v:.1}"),
        _ if v.fract() != 0.0 && v.abs() < 1000.0 => format!("{v:.1}"),
        _ => thousands(v.round().max(0.0) as u64),
    }
}

/// A change in percent as the reports print it: `+12.3%`, `-0.4%`, `+inf%`.
pub fn format_change(c: Option<f64>) -> String {
    match c {
        None => "-".into(),
        Some(c) if c.is_infinite() => {
            if c > 0.0 {
                "+inf%".into()
            } else {
                "-inf%".into()
            }
        }
        Some(c) => format!("{c:+.1}%"),
    }
}

/// The threshold as the reports print it: the allowed change in the worse direction.
pub fn format_threshold(m: &Metric) -> String {
    match m.threshold_pct {
        None => "-".into(),
        Some(t) => match m.better {
            Better::Lower => format!("+{t}%"),
            Better::Higher => format!("-{t}%"),
        },
    }
}

/// Escapes text for XML attributes and content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC, `2024-05-01T12:34:56`.
pub fn iso8601_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_numbers_are_cut_and_short_ones_kept() {
        use crate::plan::text::shorten_numbers;
        let huge = format!("floating point `1{}.0`, expected i64", "0".repeat(300));
        assert_eq!(
            shorten_numbers(&huge),
            "floating point `100000... (301 digits).0`, expected i64"
        );
        let fine = "line 3: 18446744073709551615 is out of range";
        assert_eq!(shorten_numbers(fine), fine);
        assert_eq!(shorten_numbers(""), "");
    }

    #[test]
    fn targets_read_as_the_reports_numbers() {
        use super::format_target;
        assert_eq!(format_target("< 1000000", "ns"), "< 1,000,000 ns (1.00 ms)");
        assert_eq!(format_target("< 100", "ns"), "< 100 ns");
        assert_eq!(format_target(">= 10000", "msgs/s"), ">= 10,000 msgs/s");
        assert_eq!(format_target(">= 95", "%"), ">= 95 %");
        assert_eq!(format_target("< 0.01", "%"), "< 0.010 %");
        assert_eq!(format_target("= 0", "records"), "= 0 records");
        assert_eq!(format_target("detected", ""), "detected");
    }

    use crate::output::format::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_798_234), "1,798,234");
        assert_eq!(human_ns(812), "812 ns");
        assert_eq!(human_ns(12_345), "12.3 us");
        assert_eq!(human_ns(4_560_000), "4.56 ms");
    }
}
