//! Fault injection through the binary: every fault kind is injected into a real run, and the
//! results must show it detected (by whom), recovered within its budget and what it cost,
//! exactly; a fault nothing noticed fails the run; bad specs are refused before any load.

mod common;

use common::{describe, read_json, verdict_code, Shm};

/// Chaos runs are judged on timing: one test at a time, so that none starves another's run of
/// the machine's cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the tester with `args` plus a JSON output; returns the results and the exit code.
fn run(shm: &Shm, args: &[&str]) -> (serde_json::Value, i32, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut all: Vec<&str> = args.to_vec();
    let path = json.to_str().unwrap().to_string();
    // A debug build's generator on a shared 2-core machine may run late: that would make the
    // run INVALID, which is not what these tests are about (as in tests/distributed.rs).
    all.extend(["--json-output", &path, "--lag-budget-us", "60000000"]);
    let out = shm.run(&all);
    let text = describe(&out);
    assert!(json.exists(), "no results: {text}");
    (read_json(&json), out.status.code().unwrap_or(-1), text)
}

fn fault<'a>(r: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    r["chaos"]["faults"]
        .as_array()
        .expect("a chaos section")
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} fault in {}", r["chaos"]))
}

fn reader_totals(r: &serde_json::Value) -> (u64, u64) {
    let s = &r["delivery"]["streams"];
    let sum = |k: &str| s["trades"][k].as_u64().unwrap() + s["book"][k].as_u64().unwrap();
    (
        sum("lost"),
        sum("corrupted") + sum("out_of_order") + sum("gaps") + sum("book_errors"),
    )
}

#[test]
fn every_bus_fault_is_detected_recovered_and_costed_exactly() {
    let shm = Shm::new("chaos-bus");
    let (r, code, text) = run(
        &shm,
        &[
            "-d",
            "14",
            "-e",
            "3",
            "--restart-readers",
            "--chaos",
            "kill-reader@2.5s",
            "--chaos",
            "stop-reader@4.5s:200ms",
            "--chaos",
            "corrupt-record@6.5s:exchange=2",
            "--chaos",
            "slow-reader@8s:200us:500ms",
            "--chaos",
            "stall-generator@9.7s:100ms",
            "--chaos",
            "restart-writer@11.5s:exchange=1",
        ],
    );
    let faults = r["chaos"]["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 6, "{text}");
    for f in faults {
        assert_eq!(f["passed"], true, "{f}\n{text}");
        let injected = f["injected_s"].as_f64().unwrap();
        let detected = f["detected_s"].as_f64().unwrap();
        let scheduled = f["scheduled_s"].as_f64().unwrap();
        // Injected when due: the injector sleeps at normal priority until then.
        assert!(injected >= scheduled && injected < scheduled + 0.05, "{f}");
        // Detected within a slice or two of taking effect; a stopped reader once it runs
        // again; a slow one at the end of its first slow poll of every ring (6 rings x 64
        // records x 200 us, ~80 ms).
        let ended = f["ended_s"].as_f64().unwrap();
        let by = match f["kind"].as_str().unwrap() {
            "stop-reader" => ended + 0.05,
            "slow-reader" => injected + 0.25,
            _ => injected + 0.05,
        };
        assert!(detected >= injected && detected <= by, "{f}");
        assert!(
            f["recovery_ms"].as_f64().unwrap() <= f["budget_ms"].as_f64().unwrap(),
            "{f}"
        );
    }
    assert_eq!(fault(&r, "kill-reader")["detected_by"], "tester");
    assert_eq!(fault(&r, "stop-reader")["detected_by"], "reader 0");
    assert_eq!(fault(&r, "slow-reader")["detected_by"], "reader 0");
    // The feed goes quiet: the reader notices before the late writes show the lag.
    let stall = fault(&r, "stall-generator");
    assert_eq!(stall["detected_by"], "reader 0", "{stall}");
    assert!(
        stall["max_lag_ns"].as_u64().unwrap() >= 100_000_000,
        "{stall}"
    );
    assert_eq!(fault(&r, "corrupt-record")["detected_by"], "reader 0");
    let restart = fault(&r, "restart-writer");
    assert_eq!(restart["detected_by"], "reader 0");
    assert!(restart["detection"].as_str().unwrap().contains("epoch"));
    // Exactly one record corrupted, seen by the one reader; nothing else broken.
    assert_eq!(fault(&r, "corrupt-record")["violations"], 1);
    // What the readers counted lost and broken is exactly what the faults cost.
    let (lost, violations) = reader_totals(&r);
    let chaos = &r["chaos"];
    assert_eq!(chaos["explained_lost"].as_u64(), Some(lost), "{text}");
    assert_eq!(chaos["explained_violations"].as_u64(), Some(violations));
    // The corrupted record is the only broken one: a resumed reader breaks no chain.
    assert_eq!(violations, 1, "{text}");
    // The killed reader was replaced and the replacement accounted for every sequence.
    assert_eq!(r["delivery"]["dead"], 0);
    assert_eq!(r["delivery"]["streams"]["trades"]["unaccounted"], 0);
    assert_eq!(verdict_code(&r), 0, "{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Chaos (seed 1"), "{text}");
    shm.assert_empty();
}

#[test]
fn the_udp_feed_takes_a_loss_burst_and_a_delay_spike() {
    let shm = Shm::new("chaos-udp");
    let (r, code, text) = run(
        &shm,
        &[
            "-d",
            "7",
            "-e",
            "1",
            "--transport",
            "udp",
            // Longer than the spike: a delayed datagram is late, not lost.
            "--gap-wait",
            "100ms",
            "--chaos",
            "net-loss-burst@2s:50ms",
            "--chaos",
            "net-delay-spike@4s:20ms:500ms",
            // Off the bus too, a corrupted record must reach the readers corrupt: the transport
            // keeps the checksum the generator sealed.
            "--chaos",
            "corrupt-record@5.5s",
        ],
    );
    let burst = fault(&r, "net-loss-burst");
    let spike = fault(&r, "net-delay-spike");
    let corrupt = fault(&r, "corrupt-record");
    assert_eq!(burst["passed"], true, "{burst}\n{text}");
    assert_eq!(spike["passed"], true, "{spike}\n{text}");
    assert_eq!(corrupt["passed"], true, "{corrupt}\n{text}");
    assert_eq!(corrupt["violations"].as_u64(), Some(1), "{corrupt}");
    assert_eq!(corrupt["lost"].as_u64(), Some(0), "{corrupt}");
    assert!(
        corrupt["detection"]
            .as_str()
            .is_some_and(|d| d.contains("integrity violation")),
        "{corrupt}"
    );
    assert_eq!(burst["detected_by"], "reader 0");
    // A 20 ms spike shows as at least 20 ms end to end.
    assert!(
        spike["max_e2e_ns"].as_u64().unwrap() >= 20_000_000,
        "{spike}"
    );
    // Every record the burst dropped, and only those, was counted lost.
    let dropped: u64 = r["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["counters"]["net_dropped"].as_u64().unwrap_or(0))
        .sum();
    let (lost, _) = reader_totals(&r);
    assert!(dropped > 0, "{text}");
    // What the burst cost is exactly what the sender dropped; anything else the readers lost
    // is the spike's (a flood of late datagrams can overflow a socket's queue), counted there.
    assert_eq!(burst["lost"].as_u64(), Some(dropped), "{text}");
    assert_eq!(lost, dropped + spike["lost"].as_u64().unwrap(), "{text}");
    let streams = &r["delivery"]["streams"];
    let corrupted = streams["trades"]["corrupted"].as_u64().unwrap()
        + streams["book"]["corrupted"].as_u64().unwrap();
    assert_eq!(
        corrupted, 1,
        "one corrupted record, caught by its checksum\n{text}"
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_fault_nothing_noticed_fails_the_run() {
    let shm = Shm::new("chaos-unnoticed");
    // One nanosecond more per record for 20 ms changes nothing a reader could see. A shared
    // machine can still stall a reader for 10 ms in the second after it, which the detector
    // rightly reports; a run in which that happened is run again, up to three times.
    let mut noticed = Vec::new();
    for _ in 0..3 {
        let (r, code, text) = run(&shm, &["-d", "4", "--chaos", "slow-reader@2s:1ns:20ms"]);
        let f = fault(&r, "slow-reader");
        if f["detected_by"].is_string() {
            noticed.push(f["detection"].to_string());
            continue;
        }
        assert_eq!(f["passed"], false, "{f}");
        assert!(
            f["verdict"].as_str().unwrap().contains("not detected"),
            "{f}"
        );
        assert_eq!(code, 1, "{text}");
        return;
    }
    panic!("a fault without effect was detected in 3 runs of 3: {noticed:?}");
}

#[test]
fn a_recovery_over_its_kinds_budget_fails_the_fault() {
    let shm = Shm::new("chaos-budget");
    // A stopped reader takes milliseconds to catch up; a budget of 1 ms is too short for it.
    let (r, code, text) = run(
        &shm,
        &[
            "-d",
            "4",
            "--chaos",
            "stop-reader@2s:300ms",
            "--chaos-budget",
            "stop-reader=1ms",
        ],
    );
    let f = fault(&r, "stop-reader");
    assert_eq!(f["budget_ms"].as_f64(), Some(1.0), "{f}");
    assert_eq!(f["passed"], false, "{f}\n{text}");
    assert!(
        f["detected_s"].is_number(),
        "detected, yet over budget: {f}"
    );
    assert_eq!(code, 1, "{text}");
}

#[test]
fn a_killed_reader_that_nobody_restarts_does_not_recover() {
    let shm = Shm::new("chaos-norestart");
    // On the bus and on the UDP feed alike: the tester sees its reader die.
    for transport in ["shm", "udp"] {
        let (r, code, text) = run(
            &shm,
            &[
                "-d",
                "4",
                "--transport",
                transport,
                "--chaos",
                "kill-reader@1.5s",
            ],
        );
        let f = fault(&r, "kill-reader");
        assert_eq!(f["detected_by"], "tester", "{transport}: {f}");
        assert_eq!(f["passed"], false, "{transport}: {f}");
        if transport == "shm" {
            assert!(
                f["verdict"].as_str().unwrap().contains("--restart-readers"),
                "{f}"
            );
        }
        let alive = r["verdict"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Readers Alive")
            .unwrap();
        assert_eq!(alive["passed"], false, "{transport}: {alive}");
        assert_eq!(code, 1, "{transport}: {text}");
    }
}

#[test]
fn bad_chaos_specs_are_refused_before_any_load() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shm = Shm::new("chaos-bad");
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("c.apcap").display().to_string();
    for (args, says) in [
        (vec!["--chaos", "explode@1s"], "unknown fault"),
        (
            vec!["-d", "5", "--chaos", "kill-reader@30s"],
            "after the run",
        ),
        (vec!["--chaos", "stop-reader@2s:1h"], "not a time"),
        (vec!["--chaos", "stop-reader@2s:20s"], "out of range"),
        (
            vec!["--consumers", "0", "--chaos", "kill-reader@2s"],
            "--consumers 0",
        ),
        (vec!["--chaos", "net-loss-burst@2s:10ms"], "--transport udp"),
        (vec!["--restart-readers"], "no fault"),
        (
            vec!["--record", &record, "--chaos", "kill-reader@2s"],
            "capture",
        ),
    ] {
        let out = shm.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        // One line that says what to fix (clap adds its usage lines after it).
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(&record).exists());
    shm.assert_empty();
}

/// A tmpfs of `mib` MiB mounted for one test, unmounted on drop (root only).
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount(mib: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_file_system_is_detected_and_a_restart_that_meets_it_waits_for_space() {
    let fs = match SmallTmpfs::mount(64) {
        Ok(fs) => fs,
        Err(why) => {
            common::have_tool("fill-shm test", false, &why);
            return;
        }
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = std::process::Command::new(common::BIN)
        .args(["-d", "6", "--lag-budget-us", "60000000", "--shm-dir"])
        .arg(fs.dir.path())
        .args([
            "--chaos",
            "fill-shm@2s:all:1s",
            "--chaos",
            "restart-writer@2.3s:exchange=0:budget=2s",
            "--json-output",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = describe(&out);
    let r = read_json(&json);
    let fill = fault(&r, "fill-shm");
    assert_eq!(fill["passed"], true, "{fill}\n{text}");
    assert_eq!(fill["detected_by"], "tester", "{fill}");
    assert!(
        fill["detection"]
            .as_str()
            .unwrap()
            .contains("would not fit"),
        "{fill}"
    );
    let restart = fault(&r, "restart-writer");
    assert_eq!(restart["passed"], true, "{restart}\n{text}");
    let log = restart["log"].as_array().unwrap();
    assert!(
        log.iter()
            .any(|a| a["what"] == "trouble"
                && a["detail"].as_str().unwrap().contains("restart failed")),
        "{restart}"
    );
    // The new epoch came only once the fill was gone, and nothing was lost meanwhile.
    let released = fill["ended_s"].as_f64().unwrap();
    assert!(
        restart["ended_s"].as_f64().unwrap() >= released,
        "{restart}\n{fill}"
    );
    assert_eq!(restart["lost"], 0);
    assert_eq!(reader_totals(&r), (0, 0), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The fill went with the run: the file system is empty again.
    assert_eq!(
        std::fs::read_dir(fs.dir.path()).unwrap().count(),
        0,
        "{text}"
    );
}

#[test]
fn chaos_tables_in_a_scenario_inject_and_a_bad_one_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "duration_secs = 4\nwarmup_secs = 0\n\n[[chaos]]\nfault = \"corrupt-record\"\nat = \"2s\"\nexchange = 1\n",
    )
    .unwrap();
    let shm = Shm::new("chaos-scenario");
    let (r, code, text) = run(&shm, &["--scenario", good.to_str().unwrap()]);
    let f = fault(&r, "corrupt-record");
    assert_eq!(f["spec"], "corrupt-record@2s:exchange=1");
    assert_eq!(f["passed"], true, "{f}\n{text}");
    assert_eq!(code, 0, "{text}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "duration_secs = 4\n\n[[chaos]]\nfault = \"stop-reader\"\nat = \"2s\"\n",
    )
    .unwrap();
    let out = shm.run(&["--scenario", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("line 3") && err.contains("takes 1 argument"),
        "{err}"
    );
}
