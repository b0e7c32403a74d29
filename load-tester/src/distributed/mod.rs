//! A distributed run: a coordinator that holds the whole plan, and workers on other hosts that
//! each run a segment of it ([`crate::plan::segments`]) on their own bus and stream their
//! interval reports back, which the coordinator merges without loss (docs/distributed.md).
//!
//! - [`protocol`]: the gRPC service and messages (`proto/`), and their conversions;
//! - [`coordinator`]: admits workers, hands out segments, starts them together, merges their
//!   reports into one [`crate::report::IntervalReport`] per interval, and tells a lost worker
//!   from a slow one;
//! - [`worker`]: joins a coordinator, runs its segment with the engine, reports, and stops
//!   when the coordinator is gone;
//! - [`tls`]: the optional TLS of the control channel (rustls).
//!
//! Both sides are a blocking thread that owns the run, talking through channels to a small
//! tokio runtime that owns the network: the engine and the observers stay synchronous, and no
//! measurement runs on an async executor.

pub mod coordinator;
pub mod protocol;
pub mod tls;
pub mod worker;

use std::time::Duration;

/// Each side sends a heartbeat this often, whatever else it sends.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A peer silent for this many intervals (heartbeats included) is gone.
pub const SILENT_INTERVALS: u32 = 3;

/// Whether `token` equals `expected`, in time that does not depend on where they differ nor
/// on whether their lengths do: their SHA-256 digests (always 32 bytes) are compared in
/// constant time. Hashing takes time linear in each token's own length, which says nothing of
/// the other's.
pub fn token_matches(token: &str, expected: &str) -> bool {
    use ring::digest::{digest, SHA256};
    use subtle::ConstantTimeEq as _;
    let (a, b) = (
        digest(&SHA256, token.as_bytes()),
        digest(&SHA256, expected.as_bytes()),
    );
    bool::from(a.as_ref().ct_eq(b.as_ref()))
}

#[cfg(test)]
mod tests {
    use crate::distributed::token_matches;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cres"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
