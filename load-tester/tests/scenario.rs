//! Scenario files through the binary: a bad one is refused before anything starts with one line
//! naming the file, the line and the key; a good one runs, and flags override it.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;

mod common;

use common::BIN;

fn tester(shm: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("ALPHAPULSE_SHM_DIR", shm)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(60));
    cmd
}

#[test]
fn bad_scenarios_are_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let shm = tempfile::Builder::new()
        .prefix("lt-scenario-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let cases = [
        ("unknown.toml", "exchanges = 2\nspeed = 11\n", "line 2", "speed"),
        ("type.toml", "exchanges = 2\nduration_secs = \"long\"\n", "line 2", "duration_secs"),
        ("negative.toml", "trades_per_second = -100\n", "line 1", "trades_per_second"),
        ("zero.toml", "duration_secs = 0\n", "line 1", "duration_secs"),
        (
            "stages.toml",
            "duration_secs = 30\nwarmup_secs = 0\n[trades]\nkind = \"stages\"\nstages = [{ secs = 10, target = 100.0 }]\n",
            "line 3",
            "add up",
        ),
        (
            "infinite.toml",
            "[book]\nkind = \"ramp\"\nfrom = 0.0\nto = 1e300\nsecs = 10\n",
            "line 1",
            "to = ",
        ),
        ("kind.toml", "[trades]\nkind = \"tsunami\"\n", "line 2", "tsunami"),
        // The parser echoes 1e300 as 301 digits: the line shows them cut.
        ("huge.toml", "duration_secs = 1e300\n", "line 1", "(301 digits)"),
    ];
    for (name, text, line, key) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let started = Instant::now();
        let out = tester(shm.path())
            .args(["--scenario", path.to_str().unwrap(), "-d", "60"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: refused only after the run"
        );
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        let e = errors[0];
        assert!(
            e.contains(name) && e.contains(line) && e.contains(key),
            "{name}: {e}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        if name == "huge.toml" {
            assert!(e.len() < 200, "{name}: a line a person can read: {e}");
        }
        assert!(
            std::fs::read_dir(shm.path()).map_or(true, |mut d| d.next().is_none()),
            "{name}: shm used"
        );
    }
    let out = tester(shm.path())
        .args(["--scenario", "no-such-scenario"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("baseline, stress, endurance, burst"));
}

#[test]
fn a_scenario_runs_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let shm = tempfile::Builder::new()
        .prefix("lt-scenario-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let path = dir.path().join("ramp.toml");
    std::fs::write(
        &path,
        "description = \"a ramp\"\nexchanges = 2\ntrades_per_second = 1000\norderbook_updates_per_second = 500\n\
         duration_secs = 30\nwarmup_secs = 0\nconsumers = 0\nlag_budget_us = 60000000\n\
         [trades]\nkind = \"ramp\"\nfrom = 0.0\nto = 2000.0\nsecs = 2\n",
    )
    .unwrap();
    let json = dir.path().join("r.json");
    // -d 2 overrides the file's 30 s; the ramp from 0 to 2000/s over 2 s targets 2000 trades per
    // exchange.
    let out = tester(shm.path())
        .args([
            "--scenario",
            path.to_str().unwrap(),
            "-d",
            "2",
            "--json-output",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Scenario: a ramp"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["plan"]["duration_secs"], 2);
    assert_eq!(r["plan"]["exchanges"][0]["trades_pattern"]["kind"], "ramp");
    let target = r["throughput"]["trades"]["target_rate"].as_f64().unwrap();
    assert!(
        (target - 2000.0).abs() < 1.0,
        "trades target {target}/s over 2 exchanges"
    );
    let series = r["series"].as_array().unwrap();
    let first = series[0]["trades"]["target_rate"].as_f64().unwrap();
    let second = series[1]["trades"]["target_rate"].as_f64().unwrap();
    // Second 0 of the ramp averages 500/s per exchange, second 1 averages 1500/s.
    assert!(
        (first - 1000.0).abs() < 1.0 && (second - 3000.0).abs() < 1.0,
        "{first} {second}"
    );
}
