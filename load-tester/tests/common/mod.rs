//! What the binary-level tests share: a private base directory for run directories under
//! /dev/shm, so that a test can check what the tester leaves behind.

use std::path::{Path, PathBuf};

/// A new temporary directory under /dev/shm named `<prefix>...`, removed on drop, and the base
/// directory for run directories inside it (`<tmp>/alphapulse`), which does not exist until
/// the tester creates it.
pub fn shm_base(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/dev/shm")
        .expect("creating a temporary directory under /dev/shm");
    let base = root.path().join("alphapulse");
    (root, base)
}

/// What is in `base`, sorted (empty if it does not exist).
pub fn entries(base: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(base) {
        Ok(dir) => {
            let mut v: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
            v.sort();
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", base.display()),
    }
}

/// Fails the test if anything is left in `base`.
pub fn assert_empty(base: &Path) {
    let left = entries(base);
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        base.display()
    );
}
