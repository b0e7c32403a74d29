use super::*;

fn load(text: &str) -> Result<Targets, TargetsError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    Targets::load(&path)
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = load("write_p99_ns = 10\nbogus = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn wrong_type_and_negative_are_refused() {
    assert!(load("write_p99_ns = \"fast\"").is_err());
    assert!(load("max_cpu_pct = -1.0")
        .unwrap_err()
        .to_string()
        .contains("max_cpu_pct"));
}

#[test]
fn partial_file_keeps_defaults() {
    let t = load("max_cpu_pct = 80.0").unwrap();
    assert_eq!(t.max_cpu_pct, 80.0);
    assert_eq!(t.write_p50_ns, Targets::default().write_p50_ns);
}
