//! A worker of a distributed run.
//!
//! It dials the coordinator (retrying until the join timeout: in a cluster the workers may start
//! first), says Hello, receives its segment of the plan, checks it as it would any input from the
//! network, prepares its own bus and readers on this host, estimates its clock offset to the
//! coordinator in NTP-style rounds, says Ready, and starts at the coordinator's start time on its
//! own clock. It streams every interval report as its engine completes it, and a heartbeat every
//! second. A coordinator that goes away (its stream ends, or nothing arrives for
//! [`SILENT_INTERVALS`] seconds) stops the run: the engine stops, removes the shared memory, and
//! the caller exits non-zero.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tmpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::distributed::protocol::{
    clock_round, histograms_of, histograms_pb, pb, report_to_pb, unix_ns, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use crate::distributed::tls::ClientTls;
use crate::distributed::{HEARTBEAT, SILENT_INTERVALS};
use crate::plan::Plan;
use crate::report::end::RunEnd;
use crate::report::histogram::HistogramConfig;
use crate::report::observe::{Observer, Tee};
use crate::report::IntervalReport;
use crate::run::engine::{self, EngineError};
use crate::run::Stop;

use pb::coordinator_message::Body as In;
use pb::worker_message::Body as Out;

/// What a worker needs to take part.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator, `HOST:PORT`.
    pub coordinator: String,
    /// The token to present, if any.
    pub token: Option<String>,
    /// This worker's index on its host or in its job (`--worker-index`,
    /// `JOB_COMPLETION_INDEX`); `None`: the process id tells it apart.
    pub index: Option<u64>,
    /// TLS, when the coordinator speaks it.
    pub tls: Option<ClientTls>,
    /// Base directory of the run directories on this host.
    pub shm_dir: PathBuf,
    /// Keep the run directory after the run.
    pub keep_shm: bool,
    /// How long to keep trying to reach the coordinator.
    pub connect_timeout: Duration,
    /// Added to this host's clock readings in the clock rounds, ns: a test of the offset
    /// budget on one machine (`ALPHAPULSE_CLOCK_SKEW_NS`). 0 otherwise.
    pub clock_skew_ns: i64,
}

/// Why a worker did not run its segment to the end.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached or spoke no sense.
    #[error("{0}")]
    Connect(String),
    /// The coordinator refused this worker.
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    /// The coordinator said something this worker does not accept.
    #[error("{0}")]
    Protocol(String),
    /// The segment could not be prepared here (its bus, its readers).
    #[error("{0}")]
    Prepare(String),
    /// The coordinator called the run off before it started.
    #[error("the coordinator stopped the run: {0}")]
    Stopped(String),
    /// The coordinator went away before the run started.
    #[error("lost the coordinator before the start: {0}")]
    CoordinatorLost(String),
    /// A signal stopped the worker before the load started.
    #[error("stopped by a signal before the load started")]
    Interrupted,
    /// The run was ended at once (a second signal, or the coordinator's order).
    #[error("the run was ended at once{}", .0.as_ref().map_or(String::new(), |r| format!(": {r}")))]
    Aborted(Option<String>),
}

/// What the worker tells the user as it goes (printed by the caller).
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerNotice {
    /// Admitted: worker `index` of `workers`, with this segment.
    Joined {
        /// Its index.
        index: u32,
        /// How many workers the run has.
        workers: u32,
        /// Its segment.
        segment: Box<Plan>,
    },
    /// Ready, with this clock offset and round trip (ns).
    Ready {
        /// Coordinator minus worker, ns.
        offset_ns: i64,
        /// Round trip of that round, ns.
        round_trip_ns: u64,
    },
    /// The start time had passed when the Start arrived, by this many ns: this worker starts
    /// now, behind the others.
    Late(u64),
    /// The load starts now.
    Started,
    /// The coordinator asked the run to stop.
    Stopping(String),
}

/// How the worker's run ended.
#[derive(Debug)]
pub struct Worked {
    /// The engine's end of the run.
    pub end: RunEnd,
    /// The run's exit status, as the coordinator decided it, when it said.
    pub exit_code: Option<i32>,
    /// The run's outcome as the coordinator named it (`passed`, `failed`, `invalid`).
    pub outcome: Option<String>,
    /// Set when the coordinator went away during the run: why.
    pub coordinator_lost: Option<String>,
    /// Set when the coordinator stopped the run early: its reason.
    pub stopped_by: Option<String>,
}

/// What the network task passes to the worker's thread.
enum FromCoordinator {
    /// A message, and when it arrived (ns since the Unix epoch, this host's clock).
    Message(In, u64),
    /// The session ended, and why.
    Closed(String),
}

/// Waits for the coordinator's next message other than a heartbeat, until `deadline` (or
/// forever), failing when the coordinator is silent for [`SILENT_INTERVALS`] heartbeats.
fn next(
    rx: &Mutex<mpsc::Receiver<FromCoordinator>>,
    deadline: Option<Instant>,
    stop: &Stop,
    what: &str,
) -> Result<(In, u64), WorkerError> {
    let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
    let silence = HEARTBEAT * SILENT_INTERVALS;
    let mut last = Instant::now();
    loop {
        if stop.stopping() {
            return Err(WorkerError::Interrupted);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(WorkerError::Protocol(format!(
                "the coordinator did not send {what} in time"
            )));
        }
        if now.duration_since(last) > silence {
            return Err(WorkerError::CoordinatorLost(format!(
                "nothing heard for {} s",
                silence.as_secs()
            )));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(FromCoordinator::Message(In::Heartbeat(_), _)) => last = Instant::now(),
            Ok(FromCoordinator::Message(m, at)) => return Ok((m, at)),
            Ok(FromCoordinator::Closed(why)) => return Err(WorkerError::CoordinatorLost(why)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(WorkerError::CoordinatorLost("the session ended".into()))
            }
        }
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// This host's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Sends every completed interval to the coordinator.
struct Forward<'a> {
    out: &'a tmpsc::UnboundedSender<pb::WorkerMessage>,
}

impl Observer for Forward<'_> {
    fn interval(&mut self, report: &IntervalReport) {
        let _ = self.out.send(pb::WorkerMessage {
            body: Some(Out::Interval(report_to_pb(report))),
        });
    }
}

fn send(out: &tmpsc::UnboundedSender<pb::WorkerMessage>, body: Out) {
    let _ = out.send(pb::WorkerMessage { body: Some(body) });
}

/// Takes part in the run of the coordinator `config` names: joins, runs the segment it is
/// given (adapted to this host by `localize`, which may refuse it), and reports. Returns how
/// the run ended; `notices` hears what happens on the way.
pub fn work(
    config: &WorkerConfig,
    stop: &Stop,
    localize: &mut dyn FnMut(&mut Plan) -> Result<(), String>,
    notices: &mut dyn FnMut(WorkerNotice),
    observer: &mut dyn Observer,
) -> Result<Worked, WorkerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("worker-net")
        // The network threads must answer promptly (heartbeats) yet not hold a generator's
        // core for long.
        .on_thread_start(crate::run::placement::short_slices_for_this_thread)
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Connect(format!("cannot start the network runtime: {e}")))?;
    let result = session(&runtime, config, stop, localize, notices, observer);
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

fn session(
    runtime: &tokio::runtime::Runtime,
    config: &WorkerConfig,
    stop: &Stop,
    localize: &mut dyn FnMut(&mut Plan) -> Result<(), String>,
    notices: &mut dyn FnMut(WorkerNotice),
    observer: &mut dyn Observer,
) -> Result<Worked, WorkerError> {
    let address = &config.coordinator;
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h)
        .trim_matches(['[', ']']);
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| {
            WorkerError::Connect(format!(
                "--coordinator {address}: {}; give HOST:PORT",
                chain(&e)
            ))
        })?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(HEARTBEAT)
        // Longer than the silence that loses the coordinator (see the coordinator).
        .keep_alive_timeout(HEARTBEAT * SILENT_INTERVALS * 3)
        .keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        endpoint = endpoint
            .tls_config(tls.config(host))
            .map_err(|e| WorkerError::Connect(format!("--tls-ca: {}", chain(&e))))?;
    }
    let deadline = Instant::now() + config.connect_timeout;
    let mut backoff = Duration::from_millis(100);
    let channel = loop {
        match runtime.block_on(endpoint.connect()) {
            Ok(c) => break c,
            Err(e) => {
                if stop.stopping() {
                    return Err(WorkerError::Interrupted);
                }
                if Instant::now() + backoff >= deadline {
                    return Err(WorkerError::Connect(format!(
                        "cannot reach the coordinator at {address} within {} s: {}",
                        config.connect_timeout.as_secs(),
                        chain(&e)
                    )));
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    let mut client = pb::coordinator_client::CoordinatorClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (out, out_rx) = tmpsc::unbounded_channel::<pb::WorkerMessage>();
    let host_name = host_name();
    let identity = match config.index {
        Some(i) => format!("{host_name}/{i}"),
        None => format!("{host_name}/pid{}", std::process::id()),
    };
    send(
        &out,
        Out::Hello(pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            token: config.token.clone().unwrap_or_default(),
            identity,
            host: host_name,
            pid: std::process::id(),
            histograms: Some(histograms_pb(HistogramConfig::STANDARD)),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            worker_index: config.index.and_then(|i| u32::try_from(i).ok()),
        }),
    );
    let response = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                client.session(UnboundedReceiverStream::new(out_rx)),
            )
            .await
        })
        .map_err(|_| {
            WorkerError::Connect(format!(
                "the coordinator at {address} did not answer in 10 s"
            ))
        })?
        .map_err(|s| {
            // A status the coordinator sent has no source; one made here from a broken
            // connection has: under TLS 1.3 a coordinator that wants a client certificate
            // says so only after the handshake, by closing the connection.
            let broken = std::error::Error::source(&s);
            let why = broken.map_or_else(|| s.message().to_string(), chain);
            let hint =
                if broken.is_some() && config.tls.as_ref().is_some_and(|t| t.identity.is_none()) {
                    "; if the coordinator was started with --tls-ca it admits only workers with a \
                 certificate that CA signed: add --tls-cert and --tls-key"
                } else {
                    ""
                };
            WorkerError::Connect(format!(
                "the coordinator at {address} refused the session: {why}{hint}"
            ))
        })?;
    let mut inbound = response.into_inner();
    let (ctrl_tx, ctrl) = mpsc::channel();
    runtime.spawn(async move {
        let why = loop {
            match inbound.message().await {
                Ok(Some(pb::CoordinatorMessage { body: Some(m) })) => {
                    if ctrl_tx
                        .send(FromCoordinator::Message(m, unix_ns()))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Some(_)) => break "the coordinator sent a message without a body".to_string(),
                Ok(None) => break "the coordinator ended the session".to_string(),
                Err(s) => {
                    break format!("the connection to the coordinator failed: {}", s.message())
                }
            }
        };
        let _ = ctrl_tx.send(FromCoordinator::Closed(why));
    });
    let heartbeat_out = out.clone();
    let heartbeat = runtime.spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tick.tick().await;
            let beat = pb::WorkerMessage {
                body: Some(Out::Heartbeat(pb::Heartbeat {})),
            };
            if heartbeat_out.send(beat).is_err() {
                return;
            }
        }
    });
    let ctrl = Mutex::new(ctrl);
    let result = take_part(config, stop, &out, &ctrl, localize, notices, observer);
    heartbeat.abort();
    // Ending the request stream tells the coordinator this worker is done; its answer, the end
    // of the response stream, shows that everything sent before was delivered.
    drop(out);
    let ctrl = ctrl.into_inner().unwrap_or_else(|e| e.into_inner());
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match ctrl.recv_timeout(left) {
            Ok(FromCoordinator::Closed(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    result
}

fn take_part(
    config: &WorkerConfig,
    stop: &Stop,
    out: &tmpsc::UnboundedSender<pb::WorkerMessage>,
    ctrl: &Mutex<mpsc::Receiver<FromCoordinator>>,
    localize: &mut dyn FnMut(&mut Plan) -> Result<(), String>,
    notices: &mut dyn FnMut(WorkerNotice),
    observer: &mut dyn Observer,
) -> Result<Worked, WorkerError> {
    let soon = || Some(Instant::now() + Duration::from_secs(30));
    let welcome = match next(ctrl, soon(), stop, "its welcome")?.0 {
        In::Welcome(w) => w,
        In::Refused(r) => return Err(WorkerError::Refused(r.reason)),
        In::Stop(s) => return Err(WorkerError::Stopped(s.reason)),
        _ => {
            return Err(WorkerError::Protocol(
                "the coordinator sent something other than a welcome".into(),
            ))
        }
    };
    let refuse = |why: String| {
        send(
            out,
            Out::Failed(pb::Failed {
                reason: why.clone(),
            }),
        );
        WorkerError::Protocol(why)
    };
    if welcome.histograms.as_ref().and_then(histograms_of) != Some(HistogramConfig::STANDARD) {
        return Err(refuse(
            "the coordinator's histogram configuration is not this worker's".into(),
        ));
    }
    let mut plan: Plan = serde_json::from_slice(&welcome.plan_json)
        .map_err(|e| refuse(format!("the coordinator's segment does not parse: {e}")))?;
    plan.check().map_err(|e| {
        refuse(format!(
            "the coordinator's segment is not a valid plan: {e}"
        ))
    })?;
    localize(&mut plan).map_err(|e| {
        send(out, Out::Failed(pb::Failed { reason: e.clone() }));
        WorkerError::Prepare(e)
    })?;
    notices(WorkerNotice::Joined {
        index: welcome.worker_index,
        workers: welcome.workers,
        segment: Box::new(plan.clone()),
    });
    // Counted before the engine moves this thread off the generators' cores.
    let cores = crate::run::placement::available_cores().len() as u32;
    let prepared = match engine::prepare(&plan, &config.shm_dir, config.keep_shm, stop, None) {
        Ok(p) => p,
        Err(e) => {
            let reason = e.to_string();
            send(
                out,
                Out::Failed(pb::Failed {
                    reason: reason.clone(),
                }),
            );
            return Err(match e {
                EngineError::Aborted => WorkerError::Interrupted,
                _ => WorkerError::Prepare(reason),
            });
        }
    };

    // Clock rounds: the one with the shortest trip bounds the offset's error best.
    let skew = config.clock_skew_ns;
    let local_unix = || (unix_ns() as i64).saturating_add(skew) as u64;
    // At least 8 rounds, and up to 32 until the best one's trip bounds the error to a quarter
    // of the budget: on a busy machine single trips can take milliseconds.
    let mut best: Option<(i64, u64)> = None;
    let budget = welcome.clock_offset_budget_ns;
    for round in 0..32 {
        if round >= 8 && best.is_some_and(|b| b.1 / 2 <= budget / 4) {
            break;
        }
        let t1 = local_unix();
        send(
            out,
            Out::Ping(pb::ClockPing {
                worker_send_unix_ns: t1,
            }),
        );
        loop {
            match next(ctrl, soon(), stop, "a clock pong")? {
                (In::Pong(p), at) if p.worker_send_unix_ns == t1 => {
                    let t4 = (at as i64).saturating_add(skew) as u64;
                    let round = clock_round(
                        t1,
                        p.coordinator_receive_unix_ns,
                        p.coordinator_send_unix_ns,
                        t4,
                    );
                    if best.is_none_or(|b| round.1 < b.1) {
                        best = Some(round);
                    }
                    break;
                }
                (In::Pong(_), _) => {}
                (In::Stop(s), _) => return Err(WorkerError::Stopped(s.reason)),
                _ => return Err(WorkerError::Protocol("a message out of turn".into())),
            }
        }
    }
    let (offset_ns, round_trip_ns) = best.unwrap_or((0, 0));
    send(
        out,
        Out::Ready(pb::Ready {
            clock_offset_ns: offset_ns,
            round_trip_ns,
            location: prepared.location(),
            cores,
        }),
    );
    notices(WorkerNotice::Ready {
        offset_ns,
        round_trip_ns,
    });
    let start_unix_ns = match next(ctrl, None, stop, "the start")?.0 {
        In::Start(s) => s.start_unix_ns,
        In::Stop(s) => return Err(WorkerError::Stopped(s.reason)),
        _ => return Err(WorkerError::Protocol("a message out of turn".into())),
    };
    // The start on this host's clock: the coordinator's time less the offset, then from the
    // Unix clock to the monotonic one the engine runs on.
    let local_start = i128::from(start_unix_ns) - i128::from(offset_ns);
    let ahead = local_start - i128::from(local_unix());
    let mono_start = (ahead > 0).then(|| alphapulse_bus::now_ns() + ahead as u64);
    if ahead <= 0 {
        notices(WorkerNotice::Late(ahead.unsigned_abs() as u64));
    }
    notices(WorkerNotice::Started);

    let over = AtomicBool::new(false);
    let lost: Mutex<Option<String>> = Mutex::new(None);
    let stopped_by: Mutex<Option<String>> = Mutex::new(None);
    let done: Mutex<Option<pb::Done>> = Mutex::new(None);
    let (over_ref, lost_ref, stopped_ref, done_ref) = (&over, &lost, &stopped_by, &done);
    let run = std::thread::scope(|scope| {
        let (over, lost, stopped_by, done) = (over_ref, lost_ref, stopped_ref, done_ref);
        scope.spawn(move || {
            let ctrl = ctrl.lock().unwrap_or_else(|e| e.into_inner());
            let silence = HEARTBEAT * SILENT_INTERVALS;
            let mut last = Instant::now();
            while !over.load(Ordering::Acquire) {
                match ctrl.recv_timeout(Duration::from_millis(50)) {
                    Ok(FromCoordinator::Message(In::Stop(s), _)) => {
                        *stopped_by.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(s.reason.clone());
                        if s.at_once {
                            stop.abort_now();
                        } else {
                            stop.stop_gracefully();
                        }
                        last = Instant::now();
                    }
                    Ok(FromCoordinator::Message(In::Done(d), _)) => {
                        *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
                        last = Instant::now();
                    }
                    Ok(FromCoordinator::Message(..)) => last = Instant::now(),
                    Ok(FromCoordinator::Closed(why)) => {
                        *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                        stop.stop_gracefully();
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if last.elapsed() > silence {
                            *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                                "nothing heard from the coordinator for {} s",
                                silence.as_secs()
                            ));
                            stop.stop_gracefully();
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        let mut forward = Forward { out };
        let run = prepared.run(mono_start, stop, &mut Tee(vec![&mut forward, observer]));
        over.store(true, Ordering::Release);
        run
    });
    let stopped_by = stopped_by.into_inner().unwrap_or_else(|e| e.into_inner());
    let lost = lost.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(reason) = &stopped_by {
        notices(WorkerNotice::Stopping(reason.clone()));
    }
    let end = match run {
        Ok(end) => end,
        Err(EngineError::Aborted) => {
            send(
                out,
                Out::Failed(pb::Failed {
                    reason: "the run was ended at once".into(),
                }),
            );
            return Err(WorkerError::Aborted(stopped_by));
        }
        Err(e) => {
            send(
                out,
                Out::Failed(pb::Failed {
                    reason: e.to_string(),
                }),
            );
            return Err(WorkerError::Prepare(e.to_string()));
        }
    };
    if lost.is_none() {
        send(
            out,
            Out::Finished(pb::Finished {
                run_end_json: serde_json::to_vec(&end).expect("a run end serializes"),
            }),
        );
    }
    let mut lost = lost;
    if lost.is_none() && done.is_none() {
        // The verdict comes once every worker has finished and the outputs are written.
        let deadline = Some(Instant::now() + Duration::from_secs(60));
        let quiet = Stop::default();
        loop {
            match next(ctrl, deadline, &quiet, "the verdict") {
                Ok((In::Done(d), _)) => {
                    done = Some(d);
                    break;
                }
                Ok(_) => {}
                Err(WorkerError::CoordinatorLost(why)) => {
                    lost = Some(why);
                    break;
                }
                Err(e) => {
                    lost = Some(e.to_string());
                    break;
                }
            }
        }
    }
    Ok(Worked {
        end,
        exit_code: done.as_ref().map(|d| d.exit_code),
        outcome: done.map(|d| d.outcome),
        coordinator_lost: lost,
        stopped_by,
    })
}
