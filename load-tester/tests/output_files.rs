//! Outputs never destroy what they do not own: devices and FIFOs are written in place, a
//! symlinked file is followed, `-` is standard output, new files honour the umask, two flags
//! naming one file are refused, a run that fails before its load starts leaves an old log
//! alone, and one output that cannot be written does not keep the others from being written.

mod common;

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;

use common::{assert_no_panic, describe, Shm};

/// A run short enough for these tests: one exchange, no warm-up, two seconds.
const SHORT: &[&str] = &[
    "-e",
    "1",
    "-t",
    "1000",
    "-o",
    "500",
    "-d",
    "2",
    "--warmup-secs",
    "0",
    "--lag-budget-us",
    "60000000",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = SHORT.to_vec();
    v.extend_from_slice(extra);
    v
}

fn is_verdict(code: Option<i32>) -> bool {
    matches!(code, Some(0 | 1 | 3))
}

#[test]
fn dev_null_stays_a_device() {
    let shm = Shm::new("lt-out-null-");
    let out = shm.run(&args(&[
        "--json-output",
        "/dev/null",
        "--junit",
        "/dev/null",
    ]));
    assert!(is_verdict(out.status.code()), "{}", describe(&out));
    assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    let t = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(t.is_char_device(), "/dev/null was replaced: {t:?}");
    shm.assert_empty();
}

#[test]
fn a_symlinked_results_file_is_followed_and_new_files_honour_the_umask() {
    let shm = Shm::new("lt-out-link-");
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    std::fs::write(&real, "old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("results.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let junit = dir.path().join("junit.xml");
    // The child's umask is 027: a new file is 0640 (0666 less 027).
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 027 && exec \"$0\" \"$@\"")
        .arg(common::BIN)
        .arg("--shm-dir")
        .arg(&shm.base)
        .args(args(&[
            "--json-output",
            link.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ]))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(is_verdict(out.status.code()), "{}", describe(&out));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert!(v["schema_version"].is_u64());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&real), 0o640, "a replaced file keeps its mode");
    assert_eq!(mode(&junit), 0o640, "a new file: 0666 less the umask 027");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
    shm.assert_empty();
}

#[test]
fn dash_is_standard_output() {
    let shm = Shm::new("lt-out-dash-");
    let cwd = tempfile::tempdir().unwrap();
    let out = shm
        .cmd()
        .current_dir(cwd.path())
        .arg("--shm-dir")
        .arg(&shm.base)
        .args(args(&["--json-output", "-"]))
        .output()
        .unwrap();
    assert!(is_verdict(out.status.code()), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is the JSON alone: {e}\n{}", describe(&out)));
    assert!(v["throughput"]["total"]["sent"].as_u64().unwrap() > 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LOAD TEST RESULTS"),
        "the report goes to stderr\n{stderr}"
    );
    assert!(!cwd.path().join("-").exists(), "no file named -");
    shm.assert_empty();
}

#[test]
fn two_names_of_one_file_are_refused_before_the_run() {
    let shm = Shm::new("lt-out-same-");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let same = format!("{}/./r.json", dir.path().display());
    let link = dir.path().join("link.xml");
    std::os::unix::fs::symlink(&json, &link).unwrap();
    for other in [same.as_str(), link.to_str().unwrap()] {
        let out = shm.run(&args(&[
            "--json-output",
            json.to_str().unwrap(),
            "--junit",
            other,
        ]));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--junit") && stderr.contains("same file"),
            "{stderr}"
        );
    }
    assert!(!json.exists());
    let out = shm.run(&args(&["--json-output", "-", "--hlog", "-"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output"));
    assert!(!shm.base.exists(), "a refused run creates nothing");
}

#[test]
fn a_run_that_fails_before_its_load_leaves_the_old_log() {
    let shm = Shm::new("lt-out-early-");
    let dir = tempfile::tempdir().unwrap();
    let hlog = dir.path().join("run.hlog");
    std::fs::write(&hlog, "the log of an earlier run\n").unwrap();
    // Readers that cannot start: the run fails before its load does.
    let out = shm
        .cmd()
        .env("ALPHAPULSE_READER_EXE", "/bin/false")
        .arg("--shm-dir")
        .arg(&shm.base)
        .args(args(&["--hlog", hlog.to_str().unwrap()]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(&hlog).unwrap(),
        "the log of an earlier run\n"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    shm.assert_empty();
}

#[test]
fn an_output_that_fails_does_not_skip_the_others() {
    let shm = Shm::new("lt-out-fifo-");
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody reads: the JSON cannot be written, the JUnit XML and HTML can.
    let fifo = dir.path().join("results.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let junit = dir.path().join("junit.xml");
    let html = dir.path().join("report.html");
    let out = shm.run(&args(&[
        "--json-output",
        fifo.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--html-report",
        html.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr.contains("--json-output") && stderr.contains("no process reads"),
        "{stderr}"
    );
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("<testsuites"));
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    shm.assert_empty();
}

#[test]
fn dev_stdout_redirected_to_a_file_is_standard_output_not_a_file_to_replace() {
    // `--json-output /dev/stdout > out.txt`: replacing the file behind the alias would lose
    // the console report written to it; as `-`, the JSON goes to stdout and the report to
    // stderr.
    let shm = Shm::new("lt-out-devstdout-");
    let dir = tempfile::tempdir().unwrap();
    let captured = dir.path().join("out.txt");
    let file = std::fs::File::create(&captured).unwrap();
    let out = std::process::Command::new(common::BIN)
        .env("ALPHAPULSE_SHM_DIR", &shm.base)
        .env("NO_COLOR", "1")
        .args(args(&[
            "--shm-dir",
            shm.base.to_str().unwrap(),
            "--json-output",
            "/dev/stdout",
        ]))
        .stdout(file)
        .output()
        .expect("running load-tester");
    assert!(is_verdict(out.status.code()), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Status: "),
        "the report went to stderr: {stderr}"
    );
    let json = std::fs::read_to_string(&captured).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).expect("stdout holds the JSON alone");
    assert!(v["verdict"]["outcome"].is_string(), "{v}");
    shm.assert_empty();
}
