//! How the numbers of a plan are spelled for people; the reports use the same.

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The longest run of digits a message shows as written; longer ones are cut.
const MAX_DIGITS: usize = 24;

/// `message` with every run of more than 24 digits (a parser's echo of `1e300`, say) cut to
/// its first digits, an ellipsis and how many digits it had, so that an error stays one line a
/// person can read. Everything else is kept as it is.
pub fn shorten_numbers(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4096));
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() > MAX_DIGITS {
            out.push_str(&digits[..6]);
            out.push_str(&format!("... ({} digits)", digits.len()));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in message.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}
