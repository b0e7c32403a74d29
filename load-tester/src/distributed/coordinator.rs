//! The coordinator of a distributed run.
//!
//! It listens (a tonic server on a small tokio runtime), admits exactly the run's workers (the
//! right protocol version, token and histogram configuration, a unique identity, before the
//! start), hands each its segment of the plan, waits until every one is ready and its clock
//! offset within the budget, starts them all at one absolute time, and merges their interval
//! reports in a [`Collector`] in which each worker is one producer: counters add, histograms
//! add, nothing is approximated. A worker whose stream ends, that stays silent for
//! [`SILENT_INTERVALS`] intervals (heartbeats included), or that sends what does not convert is
//! lost: the others are stopped, what was measured is kept, and the run's end names it.
//!
//! The run itself is driven from the calling thread ([`coordinate`]), so that the observers
//! (progress view, accumulator, interval log) stay synchronous; the network tasks only convert
//! messages and pass them on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as tmpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::distributed::protocol::{
    histograms_of, histograms_pb, pb, report_from_pb, unix_ns, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use crate::distributed::tls::ServerTls;
use crate::distributed::{token_matches, HEARTBEAT, SILENT_INTERVALS};
use crate::plan::segments::Split;
use crate::plan::Plan;
use crate::report::collect::{Collector, ProducerId};
use crate::report::end::{DistributedEnd, PacingReport, RunEnd, WorkerEnd, WorkerLoss};
use crate::report::histogram::HistogramConfig;
use crate::report::observe::{Observer, RunStart};
use crate::report::{worker_process, IntervalReport};
use crate::run::{sampler, Stop};

use pb::coordinator_message::Body as Out;
use pb::worker_message::Body as In;

/// What the coordinator needs besides the plan.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// How many workers the run waits for.
    pub workers: usize,
    /// The token every worker must present, if any.
    pub token: Option<String>,
    /// How long to wait for every worker to join and get ready.
    pub join_timeout: Duration,
    /// The largest clock offset of a worker the run accepts, ns.
    pub clock_offset_budget_ns: u64,
    /// TLS, when the control channel is encrypted.
    pub tls: Option<ServerTls>,
}

/// Why a distributed run did not produce results.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The port could not be listened on, or the server could not be started.
    #[error("{0}")]
    Listen(String),
    /// Not every worker joined in time.
    #[error("{0}")]
    JoinTimeout(String),
    /// A worker's clock is too far off the coordinator's.
    #[error("{0}")]
    ClockOffset(String),
    /// A worker could not take part (its transport could not be created, say).
    #[error("{0}")]
    WorkerFailed(String),
    /// A stop was requested before the load started.
    #[error("stopped before the load started")]
    StoppedBeforeStart,
    /// A second stop request ended the run at once.
    #[error("the run was ended at once by a second stop request")]
    Aborted,
}

/// What the coordinator tells the user while workers come and go (printed by the caller).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Listening.
    Listening(SocketAddr),
    /// A worker joined and got its segment.
    Joined {
        /// Its index.
        index: usize,
        /// Its identity.
        identity: String,
        /// Where it connected from.
        peer: String,
    },
    /// A worker is ready.
    Ready {
        /// Its index.
        index: usize,
        /// Its clock offset, ns.
        offset_ns: i64,
        /// The round trip of the offset's round, ns.
        round_trip_ns: u64,
    },
    /// Someone was refused, and why.
    Refused {
        /// Where it connected from.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A worker left before the start; its place is free again.
    Left {
        /// Its identity.
        identity: String,
        /// Why.
        reason: String,
    },
    /// Every worker is ready: the load starts at this time (ms since the Unix epoch).
    Starting(u64),
    /// A worker was lost during the run.
    Lost {
        /// Its index.
        index: usize,
        /// Its identity.
        identity: String,
        /// When and why.
        loss: WorkerLoss,
    },
}

/// What a network task tells the coordinator's thread.
enum Event {
    /// A session opened; `tx` is its way back.
    Opened {
        conn: u64,
        peer: String,
        tx: tmpsc::UnboundedSender<Result<pb::CoordinatorMessage, Status>>,
        kill: oneshot::Sender<()>,
        admitted: Arc<AtomicBool>,
    },
    /// A message other than a clock ping or an interval report.
    Message { conn: u64, body: In },
    /// An interval report, converted (or why it does not convert).
    Interval {
        conn: u64,
        report: Result<Box<IntervalReport>, String>,
    },
    /// Any message at all arrived (pings and heartbeats included) at `at`: the peer is alive.
    Seen { conn: u64, at: Instant },
    /// The session ended.
    Closed { conn: u64, why: String },
    /// The network runtime's own pulse, every [`TICK`]: silence is judged only while it is
    /// steady, so that a coordinator starved of CPU never calls its workers silent.
    Tick { at: Instant },
}

/// How often the network runtime pulses.
const TICK: Duration = Duration::from_millis(250);

/// Pulses that must have come regularly before silence is judged (a second of them).
const PULSES: usize = 5;

/// The pulses of the network runtime, newest last.
///
/// Invariant: at most [`PULSES`] instants, in order.
#[derive(Default)]
struct Pulse {
    ticks: std::collections::VecDeque<Instant>,
}

impl Pulse {
    fn tick(&mut self, at: Instant) {
        if self.ticks.len() == PULSES {
            self.ticks.pop_front();
        }
        self.ticks.push_back(at);
    }

    /// The last pulse, when the network runtime has pulsed regularly for a second up to a
    /// moment ago: then whatever arrived before it has been seen.
    fn steady(&self, now: Instant) -> Option<Instant> {
        let last = *self.ticks.back()?;
        let regular = self.ticks.len() == PULSES
            && self
                .ticks
                .iter()
                .zip(self.ticks.iter().skip(1))
                .all(|(a, b)| b.duration_since(*a) <= TICK * 2);
        (regular && now.duration_since(last) <= TICK * 2).then_some(last)
    }
}

/// The gRPC service: each session's messages go to the coordinator's thread.
struct Service {
    events: mpsc::Sender<Event>,
    next: AtomicU64,
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for Service {
    type SessionStream = UnboundedReceiverStream<Result<pb::CoordinatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tmpsc::unbounded_channel();
        let (kill, mut killed) = oneshot::channel();
        let admitted = Arc::new(AtomicBool::new(false));
        let events = self.events.clone();
        let _ = events.send(Event::Opened {
            conn,
            peer,
            tx: tx.clone(),
            kill,
            admitted: Arc::clone(&admitted),
        });
        tokio::spawn(async move {
            // Heartbeats go from here, not from the coordinator's thread, so that they keep
            // going while it judges the run and writes the outputs.
            let mut beat = tokio::time::interval(HEARTBEAT);
            let why = loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = &mut killed => break "closed by the coordinator".to_string(),
                    _ = beat.tick() => {
                        let _ = tx.send(Ok(pb::CoordinatorMessage {
                            body: Some(Out::Heartbeat(pb::Heartbeat {})),
                        }));
                        continue;
                    }
                };
                match next {
                    Ok(Some(m)) => {
                        let _ = events.send(Event::Seen {
                            conn,
                            at: Instant::now(),
                        });
                        match m.body {
                            // Answered here, not on the coordinator's thread, so that the
                            // round trip holds as little of the coordinator's time as can be.
                            Some(In::Ping(p)) => {
                                let received = unix_ns();
                                let pong = pb::ClockPong {
                                    worker_send_unix_ns: p.worker_send_unix_ns,
                                    coordinator_receive_unix_ns: received,
                                    coordinator_send_unix_ns: unix_ns(),
                                };
                                let _ = tx.send(Ok(pb::CoordinatorMessage {
                                    body: Some(Out::Pong(pong)),
                                }));
                            }
                            // Decoded only for an admitted worker: a session that has not said
                            // a valid Hello gets no histogram decoded on its behalf.
                            Some(In::Interval(r)) if admitted.load(Ordering::Acquire) => {
                                let report = report_from_pb(&r).map(Box::new);
                                let _ = events.send(Event::Interval { conn, report });
                            }
                            Some(In::Heartbeat(_)) => {}
                            Some(body) => {
                                let _ = events.send(Event::Message { conn, body });
                            }
                            None => {
                                break "it sent a message without a body".to_string();
                            }
                        }
                    }
                    Ok(None) => break "its stream ended".to_string(),
                    Err(status) => break format!("its stream failed: {}", status.message()),
                }
            };
            let _ = events.send(Event::Closed { conn, why });
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

/// A session the coordinator knows.
struct Conn {
    /// Where it came from.
    peer: String,
    /// Messages to it; dropping the sender ends its response stream.
    tx: tmpsc::UnboundedSender<Result<pb::CoordinatorMessage, Status>>,
    /// Ends its inbound task.
    kill: Option<oneshot::Sender<()>>,
    /// When it opened.
    opened: Instant,
    /// The worker it is, once admitted.
    worker: Option<usize>,
    /// Set when admitted: its network task decodes its reports from then on.
    admitted: Arc<AtomicBool>,
}

impl Conn {
    fn send(&self, body: Out) {
        let _ = self
            .tx
            .send(Ok(pb::CoordinatorMessage { body: Some(body) }));
    }

    fn close(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// A worker of the run.
///
/// Invariants: `index` is its place in `Coordinator::slots`; `producer` is registered once the
/// load starts; at most one of `finished` and `lost` decides how it ended (a worker that
/// finished early may have both: its end is kept, and it counts as lost).
struct Worker {
    /// Its segment: the worker index it asked for, or the free one it was given; fixed.
    index: usize,
    /// The connection it joined on, a key of `Coordinator::conns` while it is open; fixed.
    conn: u64,
    /// What it said when it joined (identity, host, versions), checked at admission; fixed.
    hello: pb::Hello,
    /// What it said once its segment was prepared (clock offset, round trip); `None` until
    /// then, and the load starts only when every worker has one.
    ready: Option<pb::Ready>,
    /// When anything last arrived from it.
    last_seen: Instant,
    /// The next interval it may report; earlier ones it has reported.
    next_interval: u64,
    /// Its producer in the coordinator's collector: `None` before the load starts, then set
    /// once and marked done when it finished or was lost.
    producer: Option<ProducerId>,
    /// The end it reported; set once.
    finished: Option<RunEnd>,
    /// When and why it was lost; set once, and from then on nothing of it is merged.
    lost: Option<WorkerLoss>,
}

impl Worker {
    fn active(&self) -> bool {
        self.finished.is_none() && self.lost.is_none()
    }
}

/// How long a session may stay without saying Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How far ahead of the last Ready the load starts.
const START_LEAD: Duration = Duration::from_secs(1);
/// How long workers get to finish after they were told to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long after the planned end a worker may still be finishing (its readers drain).
const END_GRACE: Duration = Duration::from_secs(30);

/// The coordinator's state through a run. Private: [`coordinate`] drives it.
struct Coordinator<'a> {
    /// The whole run; fixed.
    plan: &'a Plan,
    /// Its segments, one per worker, adding up to `plan` exactly; fixed.
    segments: &'a [Plan],
    /// Port, token, budgets, timeouts; fixed.
    config: &'a CoordinatorConfig,
    /// Everything the network side heard, in order of arrival.
    events: mpsc::Receiver<Event>,
    /// Every open connection by id, a worker's or not yet one; a closed one is removed.
    conns: BTreeMap<u64, Conn>,
    /// One place per segment; `None` while nobody holds it.
    slots: Vec<Option<Worker>>,
    /// The histogram configuration every worker must report in; fixed.
    histograms: HistogramConfig,
    /// Where what happens is said (the caller prints it).
    notices: &'a mut dyn FnMut(Notice),
    /// The network runtime's pulses.
    pulse: Pulse,
}

/// The server and its runtime, kept until the workers have been told the verdict.
pub struct Finisher {
    /// The network runtime; shut down last.
    runtime: tokio::runtime::Runtime,
    /// What the network side still hears (hang-ups, while the workers are told the verdict).
    events: mpsc::Receiver<Event>,
    /// The connections still open after the run.
    conns: BTreeMap<u64, Conn>,
    /// Stops the server; taken once.
    shutdown: Option<oneshot::Sender<()>>,
}

impl Finisher {
    /// Tells every worker still connected the run's exit status and outcome, gives them a
    /// moment to hang up, and stops the server. Returns within about two seconds.
    pub fn finish(self, exit_code: i32, outcome: &str) {
        for c in self.conns.values().filter(|c| c.worker.is_some()) {
            c.send(Out::Done(pb::Done {
                exit_code,
                outcome: outcome.to_string(),
            }));
        }
        self.hang_up();
    }

    /// Waits up to two seconds for the workers to hang up (they have been told why the run
    /// ends), then closes what is left and stops the server.
    fn hang_up(mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut open: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.worker.is_some())
            .map(|(k, _)| *k)
            .collect();
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left) {
                Ok(Event::Closed { conn, .. }) => open.retain(|c| *c != conn),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        for c in self.conns.values_mut() {
            c.close();
        }
        self.conns.clear();
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.runtime.shutdown_timeout(Duration::from_millis(500));
    }
}

/// A plan and its segments, one per worker, as [`crate::plan::segments::split`] made them.
#[derive(Debug, Clone, Copy)]
pub struct SplitPlan<'a> {
    /// The whole plan.
    pub whole: &'a Plan,
    /// How it was split.
    pub split: Split,
    /// The segments, by worker index.
    pub segments: &'a [Plan],
}

/// Runs a distributed run of `plan`'s whole plan, one segment per worker: listens,
/// admits the workers, starts them together, merges their reports into `merged` and hands each
/// worker's own reports, unmerged, to `per_worker` (by worker index). Returns the run's end
/// (with its [`DistributedEnd`]) and what tells the workers the verdict.
pub fn coordinate(
    plan: SplitPlan<'_>,
    config: &CoordinatorConfig,
    stop: &Stop,
    merged: &mut dyn Observer,
    per_worker: &mut dyn FnMut(usize, &IntervalReport),
    notices: &mut dyn FnMut(Notice),
) -> Result<(RunEnd, Finisher), CoordinatorError> {
    // The coordinator may share a machine with workers' generators (a test, a small cluster):
    // every thread of it (they inherit this one's priority) yields to them.
    crate::run::placement::lower_this_thread();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coordinator-net")
        .enable_all()
        .build()
        .map_err(|e| CoordinatorError::Listen(format!("cannot start the network runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .map_err(|e| {
            CoordinatorError::Listen(format!(
                "cannot listen on {}: {e}; choose another --port (or --bind)",
                config.listen
            ))
        })?;
    let listen = listener.local_addr().unwrap_or(config.listen);
    let (events_tx, events) = mpsc::channel();
    let ticks = events_tx.clone();
    runtime.spawn(async move {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            if ticks.send(Event::Tick { at: Instant::now() }).is_err() {
                return;
            }
        }
    });
    let service = pb::coordinator_server::CoordinatorServer::new(Service {
        events: events_tx,
        next: AtomicU64::new(0),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(HEARTBEAT))
        // Longer than the silence that loses a worker, so that a cut link is reported as the
        // silence it is, not as a transport error.
        .http2_keepalive_timeout(Some(HEARTBEAT * SILENT_INTERVALS * 3))
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls.config())
            .map_err(|e| CoordinatorError::Listen(format!("--tls-cert/--tls-key: {e}")))?;
    }
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = builder.add_service(service);
    runtime.spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown_rx.await;
            })
            .await;
    });
    notices(Notice::Listening(listen));

    let SplitPlan {
        whole: plan,
        split,
        segments,
    } = plan;
    let mut c = Coordinator {
        plan,
        segments,
        config,
        events,
        conns: BTreeMap::new(),
        slots: (0..segments.len()).map(|_| None).collect(),
        histograms: HistogramConfig::STANDARD,
        notices,
        pulse: Pulse::default(),
    };
    let outcome = c
        .join(stop)
        .and_then(|start_unix_ns| c.run(start_unix_ns, split, stop, merged, per_worker));
    let Coordinator { events, conns, .. } = c;
    let finisher = Finisher {
        runtime,
        events,
        conns,
        shutdown: Some(shutdown_tx),
    };
    match outcome {
        Ok(end) => Ok((end, finisher)),
        Err(e) => {
            // Whoever is still connected hears why, then the server goes.
            finisher.hang_up();
            Err(e)
        }
    }
}

impl Coordinator<'_> {
    fn notice(&mut self, n: Notice) {
        (self.notices)(n);
    }

    fn worker_of(&mut self, conn: u64) -> Option<&mut Worker> {
        let index = self.conns.get(&conn)?.worker?;
        self.slots.get_mut(index)?.as_mut()
    }

    fn send_to_all(&self, body: &Out) {
        for w in self.slots.iter().flatten() {
            if let Some(c) = self.conns.get(&w.conn) {
                c.send(body.clone());
            }
        }
    }

    fn refuse(&mut self, conn: u64, reason: String) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.send(Out::Refused(pb::Refused {
                reason: reason.clone(),
            }));
            c.close();
            let peer = c.peer.clone();
            self.notice(Notice::Refused { peer, reason });
        }
    }

    /// Whether `hello` may join now; the reason when not.
    fn admit(&self, hello: &pb::Hello, started: bool) -> Result<usize, String> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not this coordinator's {PROTOCOL_VERSION}: run the same \
                 load-tester version on the coordinator and the workers",
                hello.protocol_version
            ));
        }
        if let Some(expected) = &self.config.token {
            if !token_matches(&hello.token, expected) {
                return Err(
                    "wrong token: give the worker the coordinator's --token (or ALPHAPULSE_TOKEN)"
                        .into(),
                );
            }
        }
        let theirs = hello.histograms.as_ref().and_then(histograms_of);
        if theirs != Some(self.histograms) {
            return Err(format!(
                "histogram configuration {:?} is not the coordinator's {:?}: the reports could \
                 not be added without loss",
                hello
                    .histograms
                    .as_ref()
                    .map(|h| (h.lowest, h.highest, h.significant_figures)),
                (
                    self.histograms.lowest,
                    self.histograms.highest,
                    self.histograms.sigfig
                )
            ));
        }
        if started {
            return Err("the run has started; workers join before the start".into());
        }
        if hello.identity.is_empty() || hello.identity.len() > 256 {
            return Err("an identity of 1 to 256 bytes is required".into());
        }
        if self
            .slots
            .iter()
            .flatten()
            .any(|w| w.hello.identity == hello.identity)
        {
            return Err(format!(
                "a worker with the identity {:?} has joined already; give each worker its own \
                 --worker-index",
                hello.identity
            ));
        }
        let wanted = hello
            .worker_index
            .map(|i| i as usize)
            .filter(|&i| self.slots.get(i).is_some_and(Option::is_none));
        wanted
            .or_else(|| self.slots.iter().position(Option::is_none))
            .ok_or_else(|| format!("the run has its {} workers already", self.slots.len()))
    }

    /// Handles what every phase handles alike; returns the events it did not consume.
    fn common(&mut self, event: Event, started: bool) -> Option<Event> {
        match event {
            Event::Opened {
                conn,
                peer,
                tx,
                kill,
                admitted,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        tx,
                        kill: Some(kill),
                        opened: Instant::now(),
                        worker: None,
                        admitted,
                    },
                );
                None
            }
            Event::Tick { at } => {
                self.pulse.tick(at);
                None
            }
            Event::Seen { conn, at } => {
                if let Some(w) = self.worker_of(conn) {
                    w.last_seen = w.last_seen.max(at);
                }
                None
            }
            Event::Message {
                conn,
                body: In::Hello(hello),
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.worker.is_some()) {
                    self.refuse(conn, "a second Hello on one session".into());
                    return None;
                }
                match self.admit(&hello, started) {
                    Err(reason) => self.refuse(conn, reason),
                    Ok(index) => self.welcome(conn, index, hello),
                }
                None
            }
            other => Some(other),
        }
    }

    fn welcome(&mut self, conn: u64, index: usize, hello: pb::Hello) {
        let plan_json = serde_json::to_vec(&self.segments[index]).expect("a plan serializes");
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.worker = Some(index);
        c.admitted.store(true, Ordering::Release);
        c.send(Out::Welcome(pb::Welcome {
            worker_index: index as u32,
            workers: self.slots.len() as u32,
            plan_json,
            histograms: Some(histograms_pb(self.histograms)),
            clock_offset_budget_ns: self.config.clock_offset_budget_ns,
        }));
        let peer = c.peer.clone();
        let identity = hello.identity.clone();
        self.slots[index] = Some(Worker {
            index,
            conn,
            hello,
            ready: None,
            last_seen: Instant::now(),
            next_interval: 0,
            producer: None,
            finished: None,
            lost: None,
        });
        self.notice(Notice::Joined {
            index,
            identity,
            peer,
        });
    }

    /// Sessions that never said Hello are closed after [`HELLO_TIMEOUT`].
    fn close_idle(&mut self) {
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.worker.is_none() && c.kill.is_some())
            .filter(|(_, c)| c.opened.elapsed() > HELLO_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(c) = self.conns.get_mut(&k) {
                c.close();
            }
        }
    }

    fn stop_all(&self, reason: &str, at_once: bool) {
        self.send_to_all(&Out::Stop(pb::Stop {
            reason: reason.to_string(),
            at_once,
        }));
    }

    /// Until every worker has joined and is ready: returns the start time (coordinator clock,
    /// ns since the Unix epoch), having told every worker.
    fn join(&mut self, stop: &Stop) -> Result<u64, CoordinatorError> {
        let deadline = Instant::now() + self.config.join_timeout;
        let mut next_heartbeat = Instant::now() + HEARTBEAT;
        loop {
            if stop.stopping() {
                self.stop_all("the coordinator was stopped before the start", true);
                return Err(CoordinatorError::StoppedBeforeStart);
            }
            let all_ready = self
                .slots
                .iter()
                .all(|s| s.as_ref().is_some_and(|w| w.ready.is_some()));
            if all_ready {
                let start = unix_ns() + START_LEAD.as_nanos() as u64;
                self.send_to_all(&Out::Start(pb::Start {
                    start_unix_ns: start,
                }));
                self.notice(Notice::Starting(start / 1_000_000));
                return Ok(start);
            }
            let now = Instant::now();
            if now >= deadline {
                let joined: Vec<String> = self
                    .slots
                    .iter()
                    .flatten()
                    .map(|w| {
                        format!(
                            "{}{}",
                            w.hello.identity,
                            if w.ready.is_some() {
                                ""
                            } else {
                                " (not ready)"
                            }
                        )
                    })
                    .collect();
                let ready = self
                    .slots
                    .iter()
                    .flatten()
                    .filter(|w| w.ready.is_some())
                    .count();
                let msg = format!(
                    "{} of {} workers joined and {ready} got ready within {} s \
                     (--join-timeout-secs){}; start the missing workers with --mode worker \
                     --coordinator pointing here, or lower --workers",
                    joined.len(),
                    self.slots.len(),
                    self.config.join_timeout.as_secs(),
                    if joined.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", joined.join(", "))
                    }
                );
                self.stop_all(&format!("the run did not start: {msg}"), true);
                return Err(CoordinatorError::JoinTimeout(msg));
            }
            if now >= next_heartbeat {
                next_heartbeat = now + HEARTBEAT;
                self.close_idle();
            }
            let wait = deadline
                .min(next_heartbeat)
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            let Ok(event) = self.events.recv_timeout(wait) else {
                continue;
            };
            let Some(event) = self.common(event, false) else {
                continue;
            };
            match event {
                Event::Message {
                    conn,
                    body: In::Ready(ready),
                } => {
                    let budget = self.config.clock_offset_budget_ns;
                    let Some(w) = self.worker_of(conn) else {
                        continue;
                    };
                    if w.ready.is_some() {
                        continue;
                    }
                    let (index, identity) = (w.index, w.hello.identity.clone());
                    let (offset, trip) = (ready.clock_offset_ns, ready.round_trip_ns);
                    w.ready = Some(ready);
                    self.notice(Notice::Ready {
                        index,
                        offset_ns: offset,
                        round_trip_ns: trip,
                    });
                    // The true offset lies within half the round trip of the estimate:
                    // refused only when even its least possible value exceeds the budget.
                    let least = offset.unsigned_abs().saturating_sub(trip / 2);
                    if least > budget {
                        let msg = format!(
                            "worker {index} ({identity})'s clock is {} off the coordinator's \
                             (at least {}, round trip {}), beyond the budget of {}: synchronize \
                             the hosts' clocks (chrony, NTP) or raise --clock-offset-budget-ms",
                            human(offset.unsigned_abs()),
                            human(least),
                            human(trip),
                            human(budget)
                        );
                        self.stop_all(&format!("the run did not start: {msg}"), true);
                        return Err(CoordinatorError::ClockOffset(msg));
                    }
                }
                Event::Message {
                    conn,
                    body: In::Failed(f),
                } => {
                    if let Some(w) = self.worker_of(conn) {
                        let msg = format!(
                            "worker {} ({}) cannot take part: {}",
                            w.index, w.hello.identity, f.reason
                        );
                        self.stop_all(&format!("the run did not start: {msg}"), true);
                        return Err(CoordinatorError::WorkerFailed(msg));
                    }
                }
                Event::Closed { conn, why } => {
                    if let Some(mut c) = self.conns.remove(&conn) {
                        c.close();
                        if let Some(index) = c.worker {
                            if let Some(w) = self.slots[index].take() {
                                self.notice(Notice::Left {
                                    identity: w.hello.identity,
                                    reason: why,
                                });
                            }
                        }
                    }
                }
                // Nothing else belongs before the start.
                Event::Message { conn, .. } | Event::Interval { conn, .. } => {
                    if let Some(w) = self.worker_of(conn) {
                        let index = w.index;
                        let identity = w.hello.identity.clone();
                        self.slots[index] = None;
                        self.refuse(conn, "a message out of turn before the start".into());
                        self.notice(Notice::Left {
                            identity,
                            reason: "it sent a message out of turn".into(),
                        });
                    }
                }
                Event::Opened { .. } | Event::Seen { .. } | Event::Tick { .. } => {}
            }
        }
    }

    /// From the start to the end of every worker; returns the run's end.
    fn run(
        &mut self,
        start_unix_ns: u64,
        split: Split,
        stop: &Stop,
        merged: &mut dyn Observer,
        per_worker: &mut dyn FnMut(usize, &IntervalReport),
    ) -> Result<RunEnd, CoordinatorError> {
        let plan = self.plan;
        let interval = Duration::from_nanos(plan.interval_ns);
        let silence = interval * SILENT_INTERVALS;
        let start_at =
            Instant::now() + Duration::from_nanos(start_unix_ns.saturating_sub(unix_ns()));
        let planned_end = start_at + Duration::from_secs(plan.total_secs());
        let secs_since_start = |now: Instant| {
            if now >= start_at {
                (now - start_at).as_secs_f64()
            } else {
                -(start_at - now).as_secs_f64()
            }
        };
        let started_unix_ms = start_unix_ns / 1_000_000;
        merged.started(
            plan,
            &RunStart {
                location: format!(
                    "the bus of each of {} workers (their run directories: the results' workers)",
                    self.slots.len()
                ),
                started_unix_ms,
            },
        );
        let mut collector = Collector::new(plan.intervals(), plan.interval_ns);
        for w in self.slots.iter_mut().flatten() {
            w.producer =
                Some(collector.producer(format!("worker {} ({})", w.index, w.hello.identity)));
            // Silence counts from the start, not from the Ready that may be seconds older.
            w.last_seen = start_at;
        }
        let ticks = sampler::ticks_per_sec();
        let self_before = sampler::read("self");
        let mut next_heartbeat = Instant::now() + HEARTBEAT;
        let mut stop_sent: Option<Instant> = None;
        let mut interrupted = false;
        let mut last_check = Instant::now();
        loop {
            if stop.aborted() {
                self.stop_all("the coordinator was stopped at once", true);
                return Err(CoordinatorError::Aborted);
            }
            if stop.stopping() && !interrupted {
                interrupted = true;
                if stop_sent.is_none() {
                    self.stop_all("the coordinator was interrupted", false);
                    stop_sent = Some(Instant::now());
                }
            }
            let now = Instant::now();
            if !self.slots.iter().flatten().any(Worker::active) {
                break;
            }
            // Judged only with nothing queued: when this thread was slow to run, what arrived
            // meanwhile counts before anyone is called silent.
            let queued = if last_check.elapsed() < HEARTBEAT {
                self.events.try_recv().ok()
            } else {
                // A steady stream of events still leaves room for the checks once a second.
                None
            };
            let event = match queued {
                Some(event) => event,
                None => {
                    last_check = Instant::now();
                    // The silent, and those that outstay the stop or the planned end, are lost.
                    let pulse = self.pulse.steady(now);
                    let overdue: Vec<(usize, String)> = self
                        .slots
                        .iter()
                        .flatten()
                        .filter(|w| w.active())
                        .filter_map(|w| {
                            let heard = w.last_seen.max(start_at);
                            let silent = pulse.filter(|&p| p > heard).map(|p| p.duration_since(heard));
                            if silent.is_some_and(|s| s > silence) {
                                Some((
                                    w.index,
                                    format!(
                                        "silent for {:.1} s ({SILENT_INTERVALS} intervals, heartbeats \
                                         included): a network cut, or its host stopped",
                                        silent.unwrap_or_default().as_secs_f64()
                                    ),
                                ))
                            } else if stop_sent.is_some_and(|s| now.duration_since(s) > STOP_GRACE) {
                                Some((
                                    w.index,
                                    format!(
                                        "it did not finish within {} s of being told to stop",
                                        STOP_GRACE.as_secs()
                                    ),
                                ))
                            } else if now > planned_end + END_GRACE {
                                Some((
                                    w.index,
                                    format!(
                                        "it did not finish within {} s of the planned end",
                                        END_GRACE.as_secs()
                                    ),
                                ))
                            } else {
                                None
                            }
                        })
                        .collect();
                    for (index, reason) in overdue {
                        self.lose(
                            index,
                            secs_since_start(now),
                            reason,
                            &mut collector,
                            &mut stop_sent,
                        );
                    }
                    if now >= next_heartbeat {
                        next_heartbeat = now + HEARTBEAT;
                        self.close_idle();
                    }
                    collector.drain(&mut |r| merged.interval(r));
                    let wait = next_heartbeat
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(100));
                    match self.events.recv_timeout(wait) {
                        Ok(event) => event,
                        Err(_) => continue,
                    }
                }
            };
            let Some(event) = self.common(event, true) else {
                continue;
            };
            let at = secs_since_start(Instant::now());
            match event {
                Event::Interval { conn, report } => {
                    let Some((index, next, Some(producer))) = self
                        .worker_of(conn)
                        .filter(|w| w.active())
                        .map(|w| (w.index, w.next_interval, w.producer))
                    else {
                        continue;
                    };
                    let report = match report {
                        Ok(r) if r.index >= next => r,
                        Ok(r) => {
                            let reason = format!(
                                "it sent interval {} after interval {}",
                                r.index,
                                next.saturating_sub(1)
                            );
                            self.lose(index, at, reason, &mut collector, &mut stop_sent);
                            continue;
                        }
                        Err(e) => {
                            let reason = format!("it sent a report that does not convert: {e}");
                            self.lose(index, at, reason, &mut collector, &mut stop_sent);
                            continue;
                        }
                    };
                    if let Some(w) = self.slots[index].as_mut() {
                        w.next_interval = report.index + 1;
                    }
                    per_worker(index, &report);
                    let renamed = rename_processes(*report, index);
                    if let Err(e) = collector.add(producer, &renamed) {
                        let reason = format!("its report does not merge: {e}");
                        self.lose(index, at, reason, &mut collector, &mut stop_sent);
                        continue;
                    }
                    collector.reached(producer, renamed.index + 1);
                }
                Event::Message {
                    conn,
                    body: In::Finished(f),
                } => {
                    let Some(w) = self.worker_of(conn) else {
                        continue;
                    };
                    if !w.active() {
                        continue;
                    }
                    let index = w.index;
                    match serde_json::from_slice::<RunEnd>(&f.run_end_json) {
                        Err(e) => {
                            let reason = format!("its end of run does not parse: {e}");
                            self.lose(index, at, reason, &mut collector, &mut stop_sent);
                        }
                        Ok(end) => {
                            let early = end.interrupted && stop_sent.is_none();
                            if let Some(p) = w.producer {
                                collector.done(p);
                            }
                            w.finished = Some(end);
                            if early {
                                let reason = "it stopped before the end of the run (interrupted \
                                              on its host)"
                                    .to_string();
                                self.lose(index, at, reason, &mut collector, &mut stop_sent);
                            }
                        }
                    }
                }
                Event::Message {
                    conn,
                    body: In::Failed(f),
                } => {
                    if let Some(w) = self.worker_of(conn) {
                        let index = w.index;
                        let reason = format!("it failed: {}", f.reason);
                        self.lose(index, at, reason, &mut collector, &mut stop_sent);
                    }
                }
                Event::Closed { conn, why } => {
                    if let Some(w) = self.worker_of(conn) {
                        if w.active() {
                            let index = w.index;
                            self.lose(index, at, why, &mut collector, &mut stop_sent);
                        }
                    }
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.close();
                    }
                    self.conns.remove(&conn);
                }
                Event::Message { conn, .. } => {
                    if let Some(w) = self.worker_of(conn) {
                        if w.active() {
                            let index = w.index;
                            let reason = "it sent a message out of turn".to_string();
                            self.lose(index, at, reason, &mut collector, &mut stop_sent);
                        }
                    }
                }
                Event::Opened { .. } | Event::Seen { .. } | Event::Tick { .. } => {}
            }
        }
        collector.drain(&mut |r| merged.interval(r));
        collector.finish(&mut |r| merged.interval(r));
        let self_after = sampler::read("self");
        let coordinator = match (&self_before, &self_after) {
            (Some(b), Some(a)) => sampler::usage(b, a, ticks),
            _ => Default::default(),
        };
        Ok(self.end(started_unix_ms, split, interrupted, coordinator))
    }

    /// Marks worker `index` lost, stops counting on it, and stops the others (once).
    fn lose(
        &mut self,
        index: usize,
        at_secs: f64,
        reason: String,
        collector: &mut Collector,
        stop_sent: &mut Option<Instant>,
    ) {
        let Some(w) = self.slots[index].as_mut() else {
            return;
        };
        if w.lost.is_some() {
            return;
        }
        let loss = WorkerLoss { at_secs, reason };
        w.lost = Some(loss.clone());
        if let Some(p) = w.producer {
            collector.done(p);
        }
        let (identity, conn) = (w.hello.identity.clone(), w.conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.send(Out::Stop(pb::Stop {
                reason: format!("this worker was lost: {}", loss.reason),
                at_once: true,
            }));
        }
        self.notice(Notice::Lost {
            index,
            identity: identity.clone(),
            loss: loss.clone(),
        });
        if stop_sent.is_none() {
            *stop_sent = Some(Instant::now());
            let reason = format!("worker {index} ({identity}) was lost: {}", loss.reason);
            for other in self.slots.iter().flatten().filter(|o| o.active()) {
                if let Some(c) = self.conns.get(&other.conn) {
                    c.send(Out::Stop(pb::Stop {
                        reason: reason.clone(),
                        at_once: false,
                    }));
                }
            }
        }
    }

    /// The run's end as the coordinator saw it: the workers' ends combined, and each worker's
    /// facts.
    fn end(
        &self,
        started_unix_ms: u64,
        split: Split,
        interrupted: bool,
        coordinator: crate::report::ProcessUsage,
    ) -> RunEnd {
        let ends: Vec<&RunEnd> = self
            .slots
            .iter()
            .flatten()
            .filter_map(|w| w.finished.as_ref())
            .collect();
        let mut warnings = Vec::new();
        for w in self.slots.iter().flatten() {
            if let Some(e) = &w.finished {
                for msg in &e.warnings {
                    warnings.push(format!("worker {} ({}): {msg}", w.index, w.hello.identity));
                }
            }
        }
        let workers = self
            .slots
            .iter()
            .flatten()
            .map(|w| {
                let ready = w.ready.clone().unwrap_or_default();
                WorkerEnd {
                    index: w.index,
                    identity: w.hello.identity.clone(),
                    host: w.hello.host.clone(),
                    pid: w.hello.pid,
                    tool_version: w.hello.tool_version.clone(),
                    segment: self.segments[w.index].clone(),
                    clock_offset_ns: ready.clock_offset_ns,
                    round_trip_ns: ready.round_trip_ns,
                    cores: ready.cores,
                    location: ready.location,
                    end: w.finished.clone(),
                    lost: w.lost.clone(),
                }
            })
            .collect();
        RunEnd {
            started_unix_ms,
            location: format!(
                "the bus of each of {} workers (their run directories: the results' workers)",
                self.slots.len()
            ),
            clock: ends.first().map_or(self.plan.clock, |e| e.clock),
            clock_cost_ns: ends.iter().map(|e| e.clock_cost_ns).fold(0.0, f64::max),
            pacing: ends
                .iter()
                .flat_map(|e| e.pacing.iter().copied())
                .collect::<Vec<PacingReport>>(),
            cores: ends.iter().map(|e| e.cores).sum(),
            interrupted: interrupted || ends.iter().any(|e| e.interrupted),
            warnings,
            readers: Vec::new(),
            garbage_lines: ends.iter().map(|e| e.garbage_lines).sum(),
            failure: ends.iter().find_map(|e| e.failure.clone()),
            distributed: Some(DistributedEnd {
                split,
                clock_offset_budget_ns: self.config.clock_offset_budget_ns,
                workers,
                coordinator,
            }),
            chaos: None,
        }
    }
}

/// Worker `index`'s processes under names of their own (`w<index>.tester`,
/// `w<index>.reader.<n>`), so that merging does not add one host's memory to another's.
pub fn rename_processes(mut report: IntervalReport, index: usize) -> IntervalReport {
    let processes = std::mem::take(&mut report.processes);
    report.processes = processes
        .into_iter()
        .map(|(name, u)| (worker_process(index, &name), u))
        .collect();
    report
}

/// `ns` in the unit that reads best.
fn human(ns: u64) -> String {
    match ns {
        n if n < 1_000 => format!("{n} ns"),
        n if n < 1_000_000 => format!("{:.1} us", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.2} ms", n as f64 / 1e6),
        n => format!("{:.2} s", n as f64 / 1e9),
    }
}
