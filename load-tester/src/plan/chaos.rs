//! Fault injection: which faults a run injects, when, into what, and how long each may take to
//! recover. Parsed from `--chaos SPEC` (or a scenario's `[[chaos]]` tables) and resolved, with
//! the seed, into a fixed schedule before the run starts, so that a chaos run is reproducible
//! and every bad value is refused before any load.
//!
//! A spec is `KIND@WHEN[:ARG]...[:NAME=VALUE]...`: `kill-reader@10s`, `stop-reader@20s:500ms`,
//! `slow-reader@random:50us:2s:reader=1`, `stall-generator@~20s:200ms` (on average every 20 s,
//! from a seeded Poisson process), `fill-shm@30s:all:2s`. See docs/chaos.md.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a reader process; with `--restart-readers` a new one resumes where the dead one
    /// last reported.
    KillReader,
    /// SIGSTOP a reader for a while, then SIGCONT.
    StopReader,
    /// Make a reader busy-wait a number of ns per record for a while.
    SlowReader,
    /// An exchange's writers close their rings and new rings (a new epoch) take the same names.
    RestartWriter,
    /// Every generator thread stops sending for a while (open loop: what fell due is sent late).
    StallGenerator,
    /// Take space in the run's file system for a while.
    FillShm,
    /// Flip a byte of one written record (after its checksum was sealed).
    CorruptRecord,
    /// UDP feed: drop every datagram for a while.
    NetLossBurst,
    /// UDP feed: delay every datagram by an extra amount for a while.
    NetDelaySpike,
}

impl FaultKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillReader,
        FaultKind::StopReader,
        FaultKind::SlowReader,
        FaultKind::RestartWriter,
        FaultKind::StallGenerator,
        FaultKind::FillShm,
        FaultKind::CorruptRecord,
        FaultKind::NetLossBurst,
        FaultKind::NetDelaySpike,
    ];

    /// The spec name: `kill-reader`, `stop-reader`, ...
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillReader => "kill-reader",
            FaultKind::StopReader => "stop-reader",
            FaultKind::SlowReader => "slow-reader",
            FaultKind::RestartWriter => "restart-writer",
            FaultKind::StallGenerator => "stall-generator",
            FaultKind::FillShm => "fill-shm",
            FaultKind::CorruptRecord => "corrupt-record",
            FaultKind::NetLossBurst => "net-loss-burst",
            FaultKind::NetDelaySpike => "net-delay-spike",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What its positional arguments are, for errors and help.
    pub fn usage(self) -> &'static str {
        match self {
            FaultKind::KillReader => "kill-reader@WHEN",
            FaultKind::StopReader => "stop-reader@WHEN:DURATION",
            FaultKind::SlowReader => "slow-reader@WHEN:DELAY_PER_RECORD:DURATION",
            FaultKind::RestartWriter => "restart-writer@WHEN",
            FaultKind::StallGenerator => "stall-generator@WHEN:DURATION",
            FaultKind::FillShm => "fill-shm@WHEN:BYTES|all:DURATION",
            FaultKind::CorruptRecord => "corrupt-record@WHEN",
            FaultKind::NetLossBurst => "net-loss-burst@WHEN:DURATION",
            FaultKind::NetDelaySpike => "net-delay-spike@WHEN:EXTRA_DELAY:DURATION",
        }
    }

    /// Whether it acts on one reader process.
    pub fn targets_reader(self) -> bool {
        matches!(
            self,
            FaultKind::KillReader | FaultKind::StopReader | FaultKind::SlowReader
        )
    }

    /// Whether it acts on one exchange.
    pub fn targets_exchange(self) -> bool {
        matches!(self, FaultKind::RestartWriter | FaultKind::CorruptRecord)
    }

    /// Whether it only exists on the UDP feed.
    pub fn needs_udp(self) -> bool {
        matches!(self, FaultKind::NetLossBurst | FaultKind::NetDelaySpike)
    }

    /// Whether it only exists on the shared-memory bus.
    pub fn needs_shm(self) -> bool {
        matches!(self, FaultKind::RestartWriter)
    }

    /// Time it may take, by default, from the end of the fault until the stream is healthy.
    pub fn default_budget_ns(self) -> u64 {
        match self {
            // A new process has to start, attach and catch up.
            FaultKind::KillReader => 2_000_000_000,
            _ => 1_000_000_000,
        }
    }

    /// Range of its duration, ns (`None`: the fault is instantaneous).
    fn duration_range(self) -> Option<(u64, u64)> {
        match self {
            FaultKind::KillReader | FaultKind::RestartWriter | FaultKind::CorruptRecord => None,
            FaultKind::StopReader | FaultKind::StallGenerator | FaultKind::NetLossBurst => {
                Some((MS, 10 * S))
            }
            FaultKind::SlowReader | FaultKind::FillShm | FaultKind::NetDelaySpike => {
                Some((10 * MS, 60 * S))
            }
        }
    }
}

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Longest recovery budget, ns.
pub const MAX_BUDGET_NS: u64 = 60 * S;
/// Most faults one run injects.
pub const MAX_FAULTS: usize = 1000;
/// Healthy stream a fault needs before it, to compare with: no fault starts earlier, ns.
pub const MIN_LEAD_NS: u64 = S;
/// `fill-shm` amount meaning "everything that is free".
pub const FILL_ALL: u64 = u64::MAX;

/// When a fault is injected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// At this time after the start of the run, ns.
    At(u64),
    /// Once, at a seeded uniformly random time.
    Random,
    /// Repeatedly, at seeded random times with this mean gap, ns (a Poisson process, each
    /// arrival counted from the end of the previous fault's recovery window).
    Every(u64),
}

/// One fault as the user wrote it, before its time and target are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What it does.
    pub kind: FaultKind,
    /// When.
    pub when: When,
    /// How long it lasts, ns (0 for an instantaneous one).
    pub duration_ns: u64,
    /// slow-reader: busy delay per record, ns; fill-shm: bytes ([`FILL_ALL`]: all);
    /// net-delay-spike: extra delay, ns; 0 otherwise.
    pub amount: u64,
    /// The reader it acts on (`None`: chosen with the seed).
    pub reader: Option<usize>,
    /// The exchange it acts on (`None`: chosen with the seed).
    pub exchange: Option<u16>,
    /// Recovery budget (`None`: the kind's, or `--chaos-budget`'s).
    pub budget_ns: Option<u64>,
    /// The text it came from.
    pub text: String,
}

/// One fault of the schedule: its time and target fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Position in the schedule (0, 1, ...), ordered by `at_ns`.
    pub id: usize,
    /// What it does.
    pub kind: FaultKind,
    /// When it is injected, ns after the start of the run.
    pub at_ns: u64,
    /// How long it lasts, ns (0: instantaneous).
    pub duration_ns: u64,
    /// See [`FaultSpec::amount`].
    pub amount: u64,
    /// The reader it acts on (reader faults only).
    pub reader: Option<usize>,
    /// The exchange it acts on (writer and record faults only).
    pub exchange: Option<u16>,
    /// How long after its end the stream must be healthy again, ns.
    pub budget_ns: u64,
    /// The spec it came from.
    pub spec: String,
}

impl Fault {
    /// When it ends, ns after the start (its injection, for an instantaneous one).
    pub fn end_ns(&self) -> u64 {
        self.at_ns + self.duration_ns
    }

    /// The end of its recovery window, ns after the start.
    pub fn deadline_ns(&self) -> u64 {
        self.end_ns() + self.budget_ns
    }

    /// A short description: `stop-reader 500 ms (reader 1)`.
    pub fn describe(&self) -> String {
        let mut s = self.kind.name().to_string();
        match self.kind {
            FaultKind::SlowReader => {
                s += &format!(" {} per record", show_ns(self.amount));
            }
            FaultKind::FillShm if self.amount == FILL_ALL => s += " all",
            FaultKind::FillShm => s += &format!(" {}", show_bytes(self.amount)),
            FaultKind::NetDelaySpike => s += &format!(" +{}", show_ns(self.amount)),
            _ => {}
        }
        if self.duration_ns > 0 {
            s += &format!(" for {}", show_ns(self.duration_ns));
        }
        if let Some(r) = self.reader {
            s += &format!(" (reader {r})");
        }
        if let Some(e) = self.exchange {
            s += &format!(" (exchange {e})");
        }
        s
    }
}

/// A run's faults, fixed before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosPlan {
    /// The seed that chose random times and targets.
    pub seed: u64,
    /// A killed reader is replaced by a new one that resumes where it last reported.
    pub restart_readers: bool,
    /// The schedule, ordered by injection time.
    pub faults: Vec<Fault>,
}

/// What the schedule is resolved against.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Length of the run, ns.
    pub run_ns: u64,
    /// Reader processes.
    pub readers: usize,
    /// Exchange ids of the run.
    pub exchanges: u16,
    /// The run's records travel over the shared-memory bus.
    pub shm: bool,
    /// The run's records travel over the UDP feed.
    pub udp: bool,
}

/// `1.5 ms`, `250 ns`, `2 s`, `13.79 ms`: at most two decimals, none that are zero.
pub fn show_ns(ns: u64) -> String {
    let (v, unit) = if ns >= S {
        (ns as f64 / S as f64, "s")
    } else if ns >= MS {
        (ns as f64 / MS as f64, "ms")
    } else if ns >= 1000 {
        (ns as f64 / 1000.0, "us")
    } else {
        return format!("{ns} ns");
    };
    let text = format!("{v:.2}");
    format!(
        "{} {unit}",
        text.trim_end_matches('0').trim_end_matches('.')
    )
}

/// `64 MiB`, `512 KiB`, `100 B`.
pub fn show_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, k) in UNITS {
        if b >= k {
            return format!("{} {u}", (b as f64 / k as f64 * 10.0).round() / 10.0);
        }
    }
    format!("{b} B")
}

/// Parses a time with a unit (`250ns`, `100us`, `2ms`, `1.5s`, `2m`) into ns, at most a day.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let what = || format!("{s:?} is not a time with a unit (ns, us, ms, s or m; e.g. 500ms)");
    let t = s.trim();
    let (num, scale) = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
    ]
    .iter()
    .find_map(|(u, k)| t.strip_suffix(u).map(|n| (n, *k)))
    .ok_or_else(what)?;
    let v: f64 = num.trim().parse().map_err(|_| what())?;
    let ns = v * scale;
    if !ns.is_finite() || !(0.0..=86_400e9).contains(&ns) {
        return Err(what());
    }
    Ok(ns.round() as u64)
}

/// Parses a size (`4096`, `64KiB`, `64MiB`, `1GiB`, `64M`) into bytes, or `all`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t == "all" {
        return Ok(FILL_ALL);
    }
    let what = || format!("{s:?} is not a size (e.g. 64MiB, 1GiB, 4096) or all");
    let (num, scale) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(u, k)| t.strip_suffix(u).map(|n| (n, *k)))
    .unwrap_or((t, 1));
    let v: u64 = num.trim().parse().map_err(|_| what())?;
    let b = v.checked_mul(scale).ok_or_else(what)?;
    if b == 0 {
        return Err(format!("{s:?}: a fill of 0 bytes takes nothing"));
    }
    Ok(b)
}

impl FaultSpec {
    /// Parses `KIND@WHEN[:ARG]...[:NAME=VALUE]...`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let kinds = || {
            FaultKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (kind, rest) = text
            .split_once('@')
            .ok_or_else(|| format!("{text:?}: expected KIND@WHEN, e.g. kill-reader@10s"))?;
        let kind = FaultKind::parse(kind.trim())
            .ok_or_else(|| format!("{text:?}: unknown fault {kind:?} (known: {})", kinds()))?;
        let mut parts = rest.split(':');
        let when = parts.next().unwrap_or_default().trim();
        let when = if when == "random" {
            When::Random
        } else if let Some(mean) = when.strip_prefix('~') {
            let mean = parse_time(mean).map_err(|e| format!("{text:?}: {e}"))?;
            if mean < 100 * MS {
                return Err(format!(
                    "{text:?}: a mean gap of {} is below 100 ms",
                    show_ns(mean)
                ));
            }
            When::Every(mean)
        } else {
            When::At(parse_time(when).map_err(|e| {
                format!("{text:?}: WHEN must be a time (10s), random, or ~MEAN_GAP (~20s): {e}")
            })?)
        };
        let mut spec = FaultSpec {
            kind,
            when,
            duration_ns: 0,
            amount: 0,
            reader: None,
            exchange: None,
            budget_ns: None,
            text: text.to_string(),
        };
        let mut positional = Vec::new();
        for p in parts {
            match p.split_once('=') {
                Some((name, value)) => spec.set(name.trim(), value.trim())?,
                None => positional.push(p.trim()),
            }
        }
        let wanted = kind.usage().matches(':').count();
        if positional.len() != wanted {
            return Err(format!(
                "{text:?}: {} takes {wanted} argument(s): {}",
                kind.name(),
                kind.usage()
            ));
        }
        let err = |e: String| format!("{text:?}: {e}");
        match kind {
            FaultKind::StopReader | FaultKind::StallGenerator | FaultKind::NetLossBurst => {
                spec.duration_ns = parse_time(positional[0]).map_err(err)?
            }
            FaultKind::SlowReader | FaultKind::NetDelaySpike => {
                spec.amount = parse_time(positional[0]).map_err(err)?;
                spec.duration_ns = parse_time(positional[1]).map_err(err)?;
            }
            FaultKind::FillShm => {
                spec.amount = parse_bytes(positional[0]).map_err(err)?;
                spec.duration_ns = parse_time(positional[1]).map_err(err)?;
            }
            FaultKind::KillReader | FaultKind::RestartWriter | FaultKind::CorruptRecord => {}
        }
        spec.check()?;
        Ok(spec)
    }

    /// Sets a named argument (`reader`, `exchange`, `budget`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let text = &self.text;
        match name {
            "reader" if self.kind.targets_reader() => {
                self.reader = Some(value.parse().map_err(|_| {
                    format!("{text:?}: reader={value:?} is not a reader index (0, 1, ...)")
                })?)
            }
            "exchange" if self.kind.targets_exchange() => {
                self.exchange = Some(value.parse().map_err(|_| {
                    format!("{text:?}: exchange={value:?} is not an exchange id (0, 1, ...)")
                })?)
            }
            "budget" => {
                self.budget_ns = Some(parse_time(value).map_err(|e| format!("{text:?}: {e}"))?)
            }
            _ => {
                let allowed = match (self.kind.targets_reader(), self.kind.targets_exchange()) {
                    (true, _) => "reader=N, budget=TIME",
                    (_, true) => "exchange=N, budget=TIME",
                    _ => "budget=TIME",
                };
                return Err(format!(
                    "{text:?}: {} has no argument {name:?} (it takes {allowed})",
                    self.kind.name()
                ));
            }
        }
        Ok(())
    }

    /// Checks the ranges that do not depend on the run.
    pub fn check(&self) -> Result<(), String> {
        let text = &self.text;
        if let Some((lo, hi)) = self.kind.duration_range() {
            if !(lo..=hi).contains(&self.duration_ns) {
                return Err(format!(
                    "{text:?}: a {} of {} is out of range ({} to {})",
                    self.kind.name(),
                    show_ns(self.duration_ns),
                    show_ns(lo),
                    show_ns(hi)
                ));
            }
        }
        match self.kind {
            FaultKind::SlowReader if !(1..=MS).contains(&self.amount) => {
                return Err(format!(
                    "{text:?}: a delay per record of {} is out of range (1 ns to 1 ms)",
                    show_ns(self.amount)
                ))
            }
            FaultKind::NetDelaySpike if !(1000..=S).contains(&self.amount) => {
                return Err(format!(
                    "{text:?}: an extra delay of {} is out of range (1 us to 1 s)",
                    show_ns(self.amount)
                ))
            }
            _ => {}
        }
        if let Some(b) = self.budget_ns {
            if !(MS..=MAX_BUDGET_NS).contains(&b) {
                return Err(format!(
                    "{text:?}: a recovery budget of {} is out of range (1 ms to 60 s)",
                    show_ns(b)
                ));
            }
        }
        Ok(())
    }
}

/// Parses `KIND=TIME` of `--chaos-budget`.
pub fn parse_budget(s: &str) -> Result<(FaultKind, u64), String> {
    let (kind, time) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KIND=TIME, e.g. kill-reader=3s"))?;
    let kind = FaultKind::parse(kind.trim()).ok_or_else(|| format!("{s:?}: unknown fault"))?;
    let ns = parse_time(time)?;
    if !(MS..=MAX_BUDGET_NS).contains(&ns) {
        return Err(format!(
            "{s:?}: a recovery budget of {} is out of range (1 ms to 60 s)",
            show_ns(ns)
        ));
    }
    Ok((kind, ns))
}

/// Fixes the time and target of every fault of `specs` for a run of `shape`, with `seed`;
/// `budgets` overrides the kinds' default budgets. Refuses, with one line, a fault the run
/// cannot take: beyond its end, too early to have a healthy stream before it, needing readers
/// it has not, on a transport it does not exist on, or overlapping another.
pub fn resolve(
    specs: &[FaultSpec],
    shape: &Shape,
    seed: u64,
    restart_readers: bool,
    budgets: &[(FaultKind, u64)],
) -> Result<ChaosPlan, String> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xC4A0_5EED);
    let mut faults = Vec::new();
    if restart_readers && !shape.shm {
        return Err(
            "--restart-readers: a restarted reader resumes from the rings of the shared-memory \
             bus; it needs --transport shm"
                .into(),
        );
    }
    for spec in specs {
        let text = &spec.text;
        let kind = spec.kind;
        if kind.needs_udp() && !shape.udp {
            return Err(format!(
                "{text:?}: {} acts on the UDP feed; it needs --transport udp",
                kind.name()
            ));
        }
        if kind.needs_shm() && !shape.shm {
            return Err(format!(
                "{text:?}: {} acts on the rings of the shared-memory bus; it needs --transport shm",
                kind.name()
            ));
        }
        if kind != FaultKind::FillShm && shape.readers == 0 {
            return Err(format!(
                "{text:?}: {} needs readers to act on or to detect it, and the run has none \
                 (--consumers 0)",
                kind.name()
            ));
        }
        if let Some(r) = spec.reader.filter(|&r| r >= shape.readers) {
            return Err(format!(
                "{text:?}: reader {r} does not exist (the run has {} reader(s): 0 to {})",
                shape.readers,
                shape.readers.saturating_sub(1)
            ));
        }
        if let Some(e) = spec.exchange.filter(|&e| e >= shape.exchanges) {
            return Err(format!(
                "{text:?}: exchange {e} does not exist (the run has exchanges 0 to {})",
                shape.exchanges.saturating_sub(1)
            ));
        }
        let budget_ns = spec
            .budget_ns
            .or_else(|| budgets.iter().rev().find(|b| b.0 == kind).map(|b| b.1))
            .unwrap_or_else(|| kind.default_budget_ns());
        let window = spec.duration_ns + budget_ns;
        // The last moment a fault may start: its recovery window ends before the run does.
        let latest = shape
            .run_ns
            .checked_sub(window)
            .filter(|&l| l >= MIN_LEAD_NS);
        let Some(latest) = latest else {
            return Err(format!(
                "{text:?}: the fault and its recovery budget ({}) need a run of at least {}; \
                 this one lasts {}",
                show_ns(window),
                show_ns(window + MIN_LEAD_NS),
                show_ns(shape.run_ns)
            ));
        };
        let mut times = Vec::new();
        match spec.when {
            When::At(t) if t < MIN_LEAD_NS => {
                return Err(format!(
                    "{text:?}: a fault at {} leaves no healthy stream before it to compare \
                     with; inject it at 1s or later",
                    show_ns(t)
                ))
            }
            When::At(t) if t > latest => {
                return Err(format!(
                    "{text:?}: at {} the fault and its recovery budget ({}) end after the run \
                     ({}); inject it at {} at the latest",
                    show_ns(t),
                    show_ns(window),
                    show_ns(shape.run_ns),
                    show_ns(latest)
                ))
            }
            When::At(t) => times.push(t),
            When::Random => times.push(rng.gen_range(MIN_LEAD_NS..=latest)),
            When::Every(mean) => {
                let mut t = MIN_LEAD_NS;
                loop {
                    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                    t += (-u.ln() * mean as f64) as u64;
                    if t > latest || times.len() >= MAX_FAULTS {
                        break;
                    }
                    times.push(t);
                    t += window;
                }
            }
        }
        for at_ns in times {
            let reader = kind.targets_reader().then(|| {
                spec.reader
                    .unwrap_or_else(|| rng.gen_range(0..shape.readers))
            });
            let exchange = kind.targets_exchange().then(|| {
                spec.exchange
                    .unwrap_or_else(|| rng.gen_range(0..shape.exchanges))
            });
            faults.push(Fault {
                id: 0,
                kind,
                at_ns,
                duration_ns: spec.duration_ns,
                amount: spec.amount,
                reader,
                exchange,
                budget_ns,
                spec: text.clone(),
            });
        }
    }
    if faults.len() > MAX_FAULTS {
        return Err(format!(
            "--chaos: {} faults; at most {MAX_FAULTS}",
            faults.len()
        ));
    }
    faults.sort_by_key(|f| (f.at_ns, f.kind));
    for (i, f) in faults.iter_mut().enumerate() {
        f.id = i;
    }
    // Each fault is judged by what happened in its window: two windows that overlap could not
    // tell whose loss is whose. A fill of the file system may hold while another fault happens
    // (a restart that meets a full /dev/shm is the point of it).
    for (i, a) in faults.iter().enumerate() {
        for b in &faults[i + 1..] {
            let fill = a.kind == FaultKind::FillShm || b.kind == FaultKind::FillShm;
            if !fill && b.at_ns < a.deadline_ns() {
                return Err(format!(
                    "--chaos: {} at {} and {} at {} overlap (the first one's recovery window \
                     ends at {}); space them out{}",
                    a.kind.name(),
                    show_ns(a.at_ns),
                    b.kind.name(),
                    show_ns(b.at_ns),
                    show_ns(a.deadline_ns()),
                    if [a, b]
                        .iter()
                        .any(|f| f.spec.contains('~') || f.spec.contains("random"))
                    {
                        " or choose another --chaos-seed"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Ok(ChaosPlan {
        seed,
        restart_readers,
        faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            run_ns: 30 * S,
            readers: 2,
            exchanges: 3,
            shm: true,
            udp: false,
        }
    }

    #[test]
    fn times_are_shown_with_their_unit() {
        assert_eq!(show_ns(250), "250 ns");
        assert_eq!(show_ns(200 * MS), "200 ms");
        assert_eq!(show_ns(13_789_432), "13.79 ms");
        assert_eq!(show_ns(1_500 * MS), "1.5 s");
        assert_eq!(show_ns(50_000), "50 us");
    }

    #[test]
    fn specs_parse_with_their_arguments() {
        let s = FaultSpec::parse("stop-reader@20s:500ms:reader=1").unwrap();
        assert_eq!(s.kind, FaultKind::StopReader);
        assert_eq!(s.when, When::At(20 * S));
        assert_eq!(s.duration_ns, 500 * MS);
        assert_eq!(s.reader, Some(1));
        let s = FaultSpec::parse("fill-shm@~10s:64MiB:2s:budget=3s").unwrap();
        assert_eq!(s.when, When::Every(10 * S));
        assert_eq!(s.amount, 64 << 20);
        assert_eq!(s.budget_ns, Some(3 * S));
        assert_eq!(
            FaultSpec::parse("fill-shm@5s:all:1s").unwrap().amount,
            FILL_ALL
        );
        let s = FaultSpec::parse("slow-reader@random:50us:2s").unwrap();
        assert_eq!(
            (s.when, s.amount, s.duration_ns),
            (When::Random, 50_000, 2 * S)
        );
    }

    #[test]
    fn bad_specs_are_refused_with_what_to_fix() {
        for (bad, says) in [
            ("explode@1s", "unknown fault"),
            ("kill-reader", "expected KIND@WHEN"),
            ("kill-reader@soon", "WHEN must be"),
            ("stop-reader@2s", "takes 1 argument"),
            ("stop-reader@2s:1h", "not a time"),
            ("stop-reader@2s:20s", "out of range"),
            ("slow-reader@2s:5ms:1s", "out of range"),
            ("kill-reader@2s:exchange=1", "has no argument"),
            ("kill-reader@2s:budget=0s", "out of range"),
            ("fill-shm@2s:lots:1s", "not a size"),
            ("stall-generator@~1ms:10ms", "below 100 ms"),
        ] {
            let e = FaultSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_schedule_is_checked_against_the_run() {
        let r = |specs: &[&str], shape: Shape| {
            let specs: Vec<_> = specs.iter().map(|s| FaultSpec::parse(s).unwrap()).collect();
            resolve(&specs, &shape, 7, false, &[])
        };
        assert!(r(&["kill-reader@40s"], shape())
            .unwrap_err()
            .contains("end after the run"));
        assert!(r(&["kill-reader@0.5s"], shape())
            .unwrap_err()
            .contains("1s or later"));
        assert!(r(&["kill-reader@2s:reader=2"], shape())
            .unwrap_err()
            .contains("does not exist"));
        assert!(r(&["net-loss-burst@2s:10ms"], shape())
            .unwrap_err()
            .contains("--transport udp"));
        let none = Shape {
            readers: 0,
            ..shape()
        };
        assert!(r(&["kill-reader@2s"], none)
            .unwrap_err()
            .contains("has none"));
        assert!(r(&["kill-reader@2s", "stop-reader@3s:10ms"], shape())
            .unwrap_err()
            .contains("overlap"));
        // A fill may hold while a restart happens.
        let p = r(&["fill-shm@2s:all:3s", "restart-writer@3s"], shape()).unwrap();
        assert_eq!(p.faults.len(), 2);
        assert_eq!(p.faults[1].exchange.map(|e| e < 3), Some(true));
    }

    #[test]
    fn random_times_are_seeded_and_inside_the_run() {
        let specs = vec![FaultSpec::parse("stall-generator@~3s:100ms").unwrap()];
        let a = resolve(&specs, &shape(), 1, false, &[]).unwrap();
        let b = resolve(&specs, &shape(), 1, false, &[]).unwrap();
        let c = resolve(&specs, &shape(), 2, false, &[]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.faults.len() > 2, "{:?}", a.faults);
        for f in &a.faults {
            assert!(f.at_ns >= MIN_LEAD_NS && f.deadline_ns() <= 30 * S, "{f:?}");
        }
        for w in a.faults.windows(2) {
            assert!(w[1].at_ns >= w[0].deadline_ns());
        }
    }
}
