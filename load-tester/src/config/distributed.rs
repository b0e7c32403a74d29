//! The configuration of a distributed run: which flags each mode takes, the coordinator's
//! listening address, token and TLS, the worker's coordinator, identity and TLS, and how a
//! worker fits the segment it receives to its own host (cores, clock).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::config::cli::{PlacementArg, RunArgs, RunMode};
use crate::config::ConfigError;
use crate::distributed::coordinator::CoordinatorConfig;
use crate::distributed::tls::{ClientTls, ServerTls};
use crate::distributed::worker::WorkerConfig;
use crate::plan::{ClockSource, Plan};
use crate::run::clock::tsc_usable;

/// Largest certificate or key file read, bytes.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Flags that describe the load or its judgement: the coordinator's alone.
const LOAD_FLAGS: &[&str] = &[
    "exchanges",
    "trades_per_second",
    "orderbook_updates_per_second",
    "duration_secs",
    "symbol_count",
    "json_output",
    "warmup_secs",
    "seed",
    "pacing",
    "spin_us",
    "clock",
    "threads",
    "writer_mode",
    "ring_capacity",
    "consumers",
    "reader_delay_ns",
    "allow_loss",
    "hlog",
    "hgrm_dir",
    "html_report",
    "junit",
    "baseline",
    "thresholds",
    "threshold",
    "noise_floor",
    "allow_config_change",
    "targets",
    "lag_budget_us",
    "scenario",
    "port",
    "bind",
    "workers",
    "clock_offset_budget_ms",
];

/// Flags about this host's cores and shared memory: each worker's own. (`--shm-dir` is left
/// alone: a coordinator makes no shared memory, and a shared wrapper script may pass it to
/// every process.)
const HOST_FLAGS: &[&str] = &["pin_cores", "reader_pin_cores", "placement", "keep_shm"];

/// Flags of a worker's connection.
const WORKER_FLAGS: &[&str] = &["coordinator", "worker_index", "tls_domain"];

fn flag(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Refuses flags typed on the command line that the chosen mode does not take, naming where
/// they belong.
pub fn check_mode_flags(mode: RunMode, matches: &ArgMatches) -> Result<(), ConfigError> {
    let refuse = |id: &str, why: &str| Err(ConfigError(format!("{} {why}", flag(id))));
    match mode {
        RunMode::Worker => {
            if let Some(id) = LOAD_FLAGS.iter().find(|id| given(matches, id)) {
                return refuse(
                    id,
                    "describes the load: a worker runs the segment its coordinator hands out; \
                     give it to the --mode coordinator",
                );
            }
        }
        RunMode::Coordinator => {
            if let Some(id) = HOST_FLAGS.iter().find(|id| given(matches, id)) {
                return refuse(
                    id,
                    "is about one host's cores or shared memory: give it to each --mode worker",
                );
            }
            if let Some(id) = WORKER_FLAGS.iter().find(|id| given(matches, id)) {
                return refuse(id, "is a worker's: give it to each --mode worker");
            }
        }
        RunMode::Standalone => {
            let distributed = ["port", "bind", "workers", "clock_offset_budget_ms"]
                .iter()
                .chain(WORKER_FLAGS)
                .chain(&[
                    "token",
                    "tls_cert",
                    "tls_key",
                    "tls_ca",
                    "join_timeout_secs",
                ]);
            if let Some(id) = distributed.into_iter().find(|id| given(matches, id)) {
                return refuse(
                    id,
                    "belongs to a distributed run: add --mode coordinator or --mode worker",
                );
            }
        }
    }
    Ok(())
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    crate::results::file::read_bytes(path, MAX_PEM_BYTES)
        .map_err(|e| ConfigError(format!("{flag} {}: {e}", path.display())))
}

fn token(args: &RunArgs) -> Result<Option<String>, ConfigError> {
    match &args.distributed.token {
        Some(t) if t.is_empty() => Err(ConfigError(
            "--token (or ALPHAPULSE_TOKEN) is empty; give a shared secret, or none".into(),
        )),
        Some(t) if t.len() > 4096 => Err(ConfigError(
            "--token (or ALPHAPULSE_TOKEN) is longer than 4096 bytes".into(),
        )),
        t => Ok(t.clone()),
    }
}

/// The coordinator's configuration, and what the user should know before the run.
pub fn coordinator(args: &RunArgs) -> Result<(CoordinatorConfig, Vec<String>), ConfigError> {
    let d = &args.distributed;
    let ip: IpAddr = d.bind.parse().map_err(|_| {
        ConfigError(format!(
            "--bind {}: not an IP address; give one such as 127.0.0.1, 0.0.0.0 or ::",
            d.bind
        ))
    })?;
    let token = token(args)?;
    let mut notes = Vec::new();
    if !ip.is_loopback() {
        if token.is_none() {
            return Err(ConfigError(format!(
                "--bind {ip} listens beyond this machine: give a --token (or ALPHAPULSE_TOKEN) \
                 that every worker must present"
            )));
        }
        if d.tls_cert.is_none() {
            notes.push(
                "the token and the reports travel in clear text: add --tls-cert and --tls-key \
                 to encrypt the control channel"
                    .into(),
            );
        }
    }
    let tls = match (&d.tls_cert, &d.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls {
            cert: read_pem("--tls-cert", cert)?,
            key: read_pem("--tls-key", key)?,
            client_ca: d
                .tls_ca
                .as_deref()
                .map(|p| read_pem("--tls-ca", p))
                .transpose()?,
        }),
        _ if d.tls_ca.is_some() => {
            return Err(ConfigError(
                "--tls-ca on the coordinator requires workers' certificates, and needs the \
                 coordinator's own: add --tls-cert and --tls-key"
                    .into(),
            ))
        }
        _ => None,
    };
    Ok((
        CoordinatorConfig {
            listen: SocketAddr::new(ip, d.port as u16),
            workers: d.workers as usize,
            token,
            join_timeout: Duration::from_secs(d.join_timeout_secs),
            clock_offset_budget_ns: d.clock_offset_budget_ms * 1_000_000,
            tls,
        },
        notes,
    ))
}

/// Where a worker's own cores and shared memory come from.
#[derive(Debug, Clone)]
pub struct LocalPlacement {
    /// `--pin-cores`.
    pub pin_cores: Vec<u64>,
    /// `--reader-pin-cores`.
    pub reader_pin_cores: Vec<u64>,
    /// `--placement`.
    pub placement: PlacementArg,
}

/// Test hook of the clock-offset budget on one machine (docs/distributed.md).
const CLOCK_SKEW_ENV: &str = "ALPHAPULSE_CLOCK_SKEW_NS";

/// A worker's configuration and its placement flags.
pub fn worker(args: &RunArgs) -> Result<(WorkerConfig, LocalPlacement), ConfigError> {
    let d = &args.distributed;
    let Some(coordinator) = d.coordinator.clone() else {
        return Err(ConfigError(
            "--mode worker needs --coordinator HOST:PORT, the coordinator to join".into(),
        ));
    };
    match coordinator.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => {
            return Err(ConfigError(format!(
                "--coordinator {coordinator}: give HOST:PORT, e.g. host1:8080"
            )))
        }
    }
    let tls = match &d.tls_ca {
        Some(ca) => Some(ClientTls {
            ca: read_pem("--tls-ca", ca)?,
            domain: d.tls_domain.clone(),
            identity: match (&d.tls_cert, &d.tls_key) {
                (Some(c), Some(k)) => Some((read_pem("--tls-cert", c)?, read_pem("--tls-key", k)?)),
                _ => None,
            },
        }),
        None if d.tls_cert.is_some() || d.tls_domain.is_some() => {
            return Err(ConfigError(
                "a worker's TLS starts with --tls-ca, the CA that signed the coordinator's \
                 certificate"
                    .into(),
            ))
        }
        None => None,
    };
    let clock_skew_ns = match std::env::var(CLOCK_SKEW_ENV) {
        Ok(v) => v.trim().parse().map_err(|_| {
            ConfigError(format!(
                "{CLOCK_SKEW_ENV}={v}: give a whole number of nanoseconds"
            ))
        })?,
        Err(_) => 0,
    };
    Ok((
        WorkerConfig {
            coordinator,
            token: token(args)?,
            index: d.worker_index,
            tls,
            shm_dir: args
                .shm_dir
                .clone()
                .unwrap_or_else(alphapulse_bus::default_base_dir),
            keep_shm: args.keep_shm,
            connect_timeout: Duration::from_secs(d.join_timeout_secs),
            clock_skew_ns,
        },
        LocalPlacement {
            pin_cores: args.pin_cores.clone(),
            reader_pin_cores: args.reader_pin_cores.clone(),
            placement: args.placement,
        },
    ))
}

/// Fits a segment received from the coordinator to this host: its cores (the worker's own
/// `--pin-cores`, `--reader-pin-cores`, `--placement`) and its clock (TSC only where it is
/// usable here). Returns the notes to print.
pub fn localize(plan: &mut Plan, local: &LocalPlacement) -> Result<Vec<String>, String> {
    let placed = crate::config::place(
        plan.threads as u64,
        plan.consumers as u64,
        &local.pin_cores,
        &local.reader_pin_cores,
        local.placement,
    )
    .map_err(|e| e.0)?;
    plan.pin_cores = placed.pin_cores;
    plan.reader_pin_cores = placed.reader_pin_cores;
    if plan.clock == ClockSource::Tsc && !tsc_usable() {
        plan.clock = ClockSource::Monotonic;
    }
    Ok(placed.notes)
}
