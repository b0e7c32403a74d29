//! The one rule for names the bus creates on disk: run ids, ring files and side files.
//!
//! Its own module because both the run directory and the ring files check names, and neither
//! may import the other.

use crate::error::Error;

/// Checks that `name` can be used as a file name: 1 to 100 of `[A-Za-z0-9._-]`, not `.`/`..`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: name.into() })
    }
}
