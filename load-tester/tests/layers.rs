//! The architecture, checked: each folder of `src/` imports only from the folders below it, so
//! data flows one way (configuration -> plan -> run -> interval reports -> results -> outputs)
//! and nothing downstream reaches back up. A new import that breaks the layering fails here,
//! naming the file and the import.

use std::collections::BTreeMap;
use std::path::Path;

/// Every top-level module and the modules it may import from (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("plan", &[]),
    ("report", &["plan"]),
    ("source", &["plan"]),
    ("transport", &["plan", "report"]),
    ("run", &["plan", "report", "source", "transport"]),
    ("results", &["plan", "report"]),
    ("distributed", &["plan", "report", "run"]),
    ("output", &["plan", "report", "results"]),
    (
        "config",
        &[
            "plan",
            "report",
            "source",
            "results",
            "output",
            "run",
            "distributed",
        ],
    ),
    ("exit", &["results"]),
    (
        "app",
        &[
            "plan",
            "report",
            "source",
            "transport",
            "run",
            "results",
            "distributed",
            "output",
            "config",
            "exit",
        ],
    ),
];

/// Source text without comments (line comments and doc comments are where prose names
/// modules; block comments are not used in this crate).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            visit(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn no_folder_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.trim_end_matches(".rs");
        if matches!(module, "lib" | "main") {
            continue;
        }
        let Some(may) = allowed.get(module) else {
            panic!(
                "{}: module {module} has no place in the layering of tests/layers.rs",
                rel.display()
            );
        };
        let text = code(&std::fs::read_to_string(&path).unwrap());
        for (i, _) in text.match_indices("crate::") {
            let target: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            checked += 1;
            if target != module && !may.contains(&target.as_str()) {
                wrong.push(format!("{} imports crate::{target}", rel.display()));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} imports found: is the parser broken?"
    );
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}
