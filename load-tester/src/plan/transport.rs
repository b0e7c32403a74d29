//! Which transport a run writes through, and how its network path is impaired.

use serde::{Deserialize, Serialize};

/// A transport of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The shared-memory bus (`alphapulse-bus`): rings in /dev/shm.
    Shm,
    /// A UDP datagram feed framed after MoldUDP64 (docs/feed-format.md).
    Udp,
    /// The same feed over Unix datagram sockets (abstract names: nothing on disk).
    Uds,
    /// iceoryx2 publish-subscribe (cargo feature `iceoryx2`).
    Iceoryx2,
}

impl TransportKind {
    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Shm => "shm",
            TransportKind::Udp => "udp",
            TransportKind::Uds => "uds",
            TransportKind::Iceoryx2 => "iceoryx2",
        }
    }
}

/// How the records travel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportPlan {
    /// The transport.
    pub kind: TransportKind,
    /// Datagram transports: most records per datagram. Records due back to back (the rate
    /// leaves no time between them) share a datagram up to this many; 1 sends each at once.
    pub batch: u16,
    /// UDP: a multicast group (IPv4) and port the feed is sent to, loopback enabled; `None`:
    /// unicast to each reader's own loopback port.
    pub group: Option<(String, u16)>,
    /// Impairment of the datagram path, applied in the sending process.
    pub impairment: Impairment,
    /// How long readers hold records behind a gap, ns (`--gap-wait`); `None`: the default
    /// for the impairment ([`TransportPlan::gap_wait_ns`]).
    #[serde(default)]
    pub gap_wait_ns: Option<u64>,
}

impl TransportPlan {
    /// How long readers hold records behind a gap, ns: `--gap-wait`, else 0 on a path that
    /// does not reorder (a gap is a loss at once), else beyond the longest a datagram can be
    /// held back: four times the jitter, and 10 ms for one held behind its stream's next
    /// datagram, or for a reader preempted on a busy machine (a scheduler tick is 4 ms here).
    pub fn gap_wait_ns(&self) -> u64 {
        self.gap_wait_ns.unwrap_or(
            if self.impairment.reorder_pct > 0.0 || self.impairment.jitter_ns > 0 {
                (4 * self.impairment.jitter_ns).max(10_000_000)
            } else {
                0
            },
        )
    }
}

impl Default for TransportPlan {
    fn default() -> Self {
        Self {
            kind: TransportKind::Shm,
            batch: 1,
            group: None,
            impairment: Impairment::default(),
            gap_wait_ns: None,
        }
    }
}

/// What the sending process does to datagrams before the network sees them: seeded, so that
/// the same seed drops, duplicates, reorders and delays the same datagrams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    /// Added to every datagram's send time, ns.
    pub delay_ns: u64,
    /// Each datagram's delay varies uniformly by up to this much either way, ns (at most
    /// `delay_ns`).
    pub jitter_ns: u64,
    /// Datagrams dropped, percent (long-run rate).
    pub loss_pct: f64,
    /// Mean length of a burst of drops, datagrams: 1 drops independently; more follows a
    /// Gilbert-Elliott chain with that mean bad-state length and `loss_pct` overall.
    pub loss_burst: f64,
    /// Datagrams held back and sent after the next one, percent.
    pub reorder_pct: f64,
    /// Datagrams sent twice, percent.
    pub duplicate_pct: f64,
    /// Seed of every impairment decision.
    pub seed: u64,
}

impl Impairment {
    /// Whether anything is impaired.
    pub fn any(&self) -> bool {
        self.delay_ns > 0
            || self.loss_pct > 0.0
            || self.reorder_pct > 0.0
            || self.duplicate_pct > 0.0
    }
}
