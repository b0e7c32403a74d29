//! `--netem`: a kernel netem qdisc on loopback for the length of a run, where the kernel has
//! one. Only what it added is removed; a root qdisc that was there already is left alone (and
//! the run goes without netem).

/// A netem qdisc this process added to `lo`, removed on drop.
///
/// Invariant: `added` is true only after `tc qdisc add dev lo root netem` succeeded.
pub(super) struct Netem {
    added: bool,
    /// What happened, for the report.
    pub said: String,
}

impl Netem {
    /// Tries to add netem with `words` to loopback; never fails the run.
    pub fn apply(words: &[String]) -> Self {
        let out = std::process::Command::new("tc")
            .args(["qdisc", "add", "dev", "lo", "root", "netem"])
            .args(words)
            .output();
        let args = words.join(" ");
        match out {
            Ok(o) if o.status.success() => Self {
                added: true,
                said: format!("kernel netem on lo for the run: {args}"),
            },
            Ok(o) => Self {
                added: false,
                said: format!(
                    "--netem {args} skipped: tc refused ({}); the run has no kernel impairment",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            },
            Err(e) => Self {
                added: false,
                said: format!(
                    "--netem {args} skipped: cannot run tc ({e}); the run has no kernel impairment"
                ),
            },
        }
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        if self.added {
            let _ = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", "lo", "root", "netem"])
                .output();
        }
    }
}
