//! Results of a real run, for the tests of the outputs.

use crate::results::Results;

/// Results of a real short run (`scripts/testdata/results.json`, shared with the tests of
/// `scripts/check-performance.py`), judged against the default targets as a valid run, with
/// every latency multiplied by `scale`: for the tests of the outputs. Regenerate the file with
/// `load-tester -d 2 --warmup-secs 0 -e 1 -t 2000 -o 1000 --json-output scripts/testdata/results.json`
/// when the results schema changes.
pub(crate) fn sample_results(scale: u64) -> Results {
    use crate::results::{KindReport, LatencySummary};

    let mut r: Results = serde_json::from_str(include_str!(
        "../../../scripts/testdata/results.json"
    ))
    .expect("scripts/testdata/results.json is a results file of this schema; regenerate it");
    let scaled = |s: &mut LatencySummary| {
        let h = s.decode().expect("fixture histograms decode");
        let mut out = crate::report::histogram::new_histogram();
        for v in h.iter_recorded() {
            out.record_n(v.value_iterated_to() * scale, v.count_at_value())
                .expect("in range");
        }
        *s = LatencySummary::of(&out);
    };
    let mut kinds: Vec<&mut KindReport> = vec![
        &mut r.latency.service,
        &mut r.latency.response,
        &mut r.latency.lag,
    ];
    if let Some(d) = r.delivery.as_mut() {
        kinds.push(&mut d.e2e);
    }
    for k in kinds {
        scaled(&mut k.trades);
        scaled(&mut k.book);
        scaled(&mut k.all);
    }
    r.verdict = crate::results::judge::judge(&r, &crate::results::targets::Targets::default());
    // The fixture's machine was busy; the tests want a valid run.
    r.verdict.invalid_reason = None;
    r.verdict.outcome = if r.verdict.checks.iter().all(|c| c.passed) {
        crate::results::verdict::Outcome::Passed
    } else {
        crate::results::verdict::Outcome::Failed
    };
    r
}

/// The end of a run with no readers and nothing remarkable, for results built in tests.
pub(crate) fn sample_end() -> crate::report::end::RunEnd {
    crate::report::end::RunEnd {
        started_unix_ms: 1_700_000_000_000,
        location: "/dev/shm/alphapulse/run-1-1".into(),
        clock: crate::plan::ClockSource::Monotonic,
        clock_cost_ns: 20.0,
        pacing: Vec::new(),
        cores: 2,
        interrupted: false,
        warnings: Vec::new(),
        readers: Vec::new(),
        garbage_lines: 0,
        failure: None,
        distributed: None,
        chaos: None,
    }
}

/// Chaos results of two stop-reader faults, one passed and one not detected.
pub(crate) fn sample_chaos() -> crate::results::chaos::ChaosResults {
    use crate::plan::chaos::FaultKind;
    use crate::report::chaos::{Action, ActionKind};
    use crate::results::chaos::{ChaosResults, FaultOutcome};
    let fault = |id, passed, verdict: &str| FaultOutcome {
        id,
        kind: FaultKind::StopReader,
        spec: "stop-reader@2s:200ms".into(),
        description: "stop-reader for 200 ms (reader 0)".into(),
        scheduled_s: 2.0,
        injected_s: Some(2.0),
        detected_s: Some(2.21),
        detected_by: Some("reader 0".into()),
        detection: Some("end-to-end <200 ms>".into()),
        ended_s: Some(2.2),
        recovered_s: Some(2.23),
        recovery_ms: Some(30.0),
        budget_ms: 1000.0,
        lost: 1234,
        violations: 0,
        failed_writes: 0,
        max_e2e_ns: 200_000_000,
        baseline_e2e_ns: 20_000,
        max_lag_ns: 0,
        passed,
        verdict: verdict.into(),
        log: vec![Action {
            fault: id,
            at_ns: 2_000_000_000,
            what: ActionKind::Injected,
            by: "tester".into(),
            detail: "stopped reader 0 (SIGSTOP)".into(),
        }],
    };
    ChaosResults {
        seed: 7,
        restart_readers: true,
        faults: vec![
            fault(0, true, "recovered in 30 ms"),
            fault(1, false, "not detected"),
        ],
        explained_lost: 2468,
        explained_violations: 0,
    }
}
