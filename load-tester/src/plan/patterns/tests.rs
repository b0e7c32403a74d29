use super::*;

fn count(spec: &PatternSpec, secs: f64) -> (u64, Vec<f64>) {
    let mut p = spec.build(7);
    let mut t = 0.0;
    let mut times = Vec::new();
    while let Some(d) = p.next_delay() {
        t += d.as_secs_f64();
        if t >= secs {
            break;
        }
        times.push(t);
    }
    (times.len() as u64, times)
}

#[test]
fn deterministic_patterns_hit_their_integral_exactly() {
    let specs = [
        PatternSpec::Constant { rate: Some(1000.0) },
        PatternSpec::Burst {
            rate: Some(100.0),
            burst_rate: 1000.0,
            burst_secs: 2,
            period_secs: 5,
            offset_secs: 1,
        },
        PatternSpec::Ramp {
            from: 0.0,
            to: 1000.0,
            secs: 10,
        },
        PatternSpec::Stages {
            start: 100.0,
            stages: vec![
                Stage {
                    secs: 5,
                    target: 500.0,
                },
                Stage {
                    secs: 5,
                    target: 0.0,
                },
            ],
        },
        PatternSpec::Sine {
            rate: Some(1000.0),
            amplitude: 500.0,
            period_secs: 4.0,
        },
    ];
    for spec in specs {
        let p = spec.build(1);
        let expected = p.expected_between(0.0, 20.0);
        let (n, times) = count(&spec, 20.0);
        assert!(
            (n as f64 - expected).abs() <= 1.0,
            "{spec:?}: {n} sent, {expected} expected"
        );
        assert!(
            times.windows(2).all(|w| w[1] >= w[0]),
            "{spec:?}: times go backwards"
        );
    }
}

#[test]
fn bursts_send_their_rate_inside_and_the_base_outside() {
    let spec = PatternSpec::Burst {
        rate: Some(100.0),
        burst_rate: 1000.0,
        burst_secs: 2,
        period_secs: 5,
        offset_secs: 1,
    };
    let (_, times) = count(&spec, 10.0);
    // Within one message: a message due exactly on a second boundary may land on either
    // side of it in floating point.
    let in_sec = |s: f64| times.iter().filter(|&&t| t >= s && t < s + 1.0).count() as i64;
    for (second, want) in [
        (0, 100),
        (1, 1000),
        (2, 1000),
        (3, 100),
        (4, 100),
        (6, 1000),
    ] {
        assert!(
            (in_sec(second as f64) - want).abs() <= 1,
            "second {second}: {}",
            in_sec(second as f64)
        );
    }
    assert_eq!(spec.in_burst(1), Some(true));
    assert_eq!(spec.in_burst(3), Some(false));
    assert_eq!(spec.in_burst(7), Some(true));
}

#[test]
fn ramp_rises_linearly() {
    let spec = PatternSpec::Ramp {
        from: 0.0,
        to: 1000.0,
        secs: 10,
    };
    let (_, times) = count(&spec, 10.0);
    let in_sec = |s: f64| times.iter().filter(|&&t| t >= s && t < s + 1.0).count() as f64;
    // Second s averages (s + 0.5) * 100 msgs.
    for s in 0..10 {
        assert!(
            (in_sec(s as f64) - (s as f64 + 0.5) * 100.0).abs() <= 1.0,
            "second {s}"
        );
    }
}

#[test]
fn poisson_is_exact_in_the_long_run_and_irregular() {
    let spec = PatternSpec::Poisson {
        rate: Some(10_000.0),
    };
    let (n, times) = count(&spec, 10.0);
    assert!((n as f64 - 100_000.0).abs() < 1_500.0, "{n}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    // Exponential gaps: standard deviation equals the mean.
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.05,
        "cv {}",
        var.sqrt() / mean
    );
}

#[test]
fn bad_specs_name_the_key() {
    let e = |s: PatternSpec| s.validate(60).unwrap_err().0;
    assert!(e(PatternSpec::Constant { rate: Some(-1.0) }).contains("rate"));
    assert!(e(PatternSpec::Constant {
        rate: Some(f64::INFINITY)
    })
    .contains("rate"));
    assert!(e(PatternSpec::Burst {
        rate: Some(1.0),
        burst_rate: 2.0,
        burst_secs: 0,
        period_secs: 5,
        offset_secs: 0
    })
    .contains("burst_secs"));
    assert!(e(PatternSpec::Burst {
        rate: Some(1.0),
        burst_rate: 2.0,
        burst_secs: 5,
        period_secs: 5,
        offset_secs: 0
    })
    .contains("period_secs"));
    assert!(e(PatternSpec::Stages {
        start: 0.0,
        stages: vec![Stage {
            secs: 10,
            target: 5.0
        }]
    })
    .contains("add up"));
    assert!(e(PatternSpec::Sine {
        rate: Some(10.0),
        amplitude: 20.0,
        period_secs: 5.0
    })
    .contains("amplitude"));
    assert!(e(PatternSpec::Ramp {
        from: 0.0,
        to: 1e12,
        secs: 5
    })
    .contains("to"));
}

#[test]
fn huge_numbers_in_errors_are_short() {
    let e = PatternSpec::Constant { rate: Some(1e300) }
        .validate(10)
        .unwrap_err()
        .0;
    assert!(e.contains("1e300") && e.len() < 120, "{e}");
    let e = PatternSpec::Sine {
        rate: Some(10.0),
        amplitude: 1e200,
        period_secs: 5.0,
    }
    .validate(10)
    .unwrap_err()
    .0;
    assert!(e.contains("1e200") && e.len() < 120, "{e}");
}

#[test]
fn descriptions_name_rates_with_separators() {
    assert_eq!(
        PatternSpec::Constant {
            rate: Some(10_000.0)
        }
        .describe(),
        "10,000/s"
    );
    let burst = PatternSpec::Burst {
        rate: Some(5_000.0),
        burst_rate: 100_000.0,
        burst_secs: 2,
        period_secs: 10,
        offset_secs: 5,
    };
    assert_eq!(
        burst.describe(),
        "5,000/s with 2 s bursts of 100,000/s every 10 s (from 5 s)"
    );
}
