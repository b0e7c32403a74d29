//! What the tester does when the kernel kills it with SIGBUS: a ring file it has mapped was
//! truncated (or its memory otherwise taken away) by another process of the same user, and the
//! next write into the mapping faults. The process cannot recover the mapping, but it can still
//! remove its run directory and say what happened before it dies, so that the failure leaves no
//! shared memory behind.
//!
//! The handler is async-signal-safe: it reads a list of paths published through an atomic
//! pointer, and calls only `write(2)`, `unlink(2)` and `rmdir(2)`. It runs once
//! (`SA_RESETHAND`); returning from it re-executes the faulting access, which then kills the
//! process with the default action, so the exit status still says SIGBUS.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// What the handler removes: the run directory's files, then the directory. Null while no run
/// is armed. Each armed list is leaked on purpose (a handler may be reading it at any time, and
/// a run arms once), so the pointer is always either null or valid for the program's life.
static ARMED: AtomicPtr<Paths> = AtomicPtr::new(std::ptr::null_mut());

/// The files and the directory of one run, as C strings.
struct Paths {
    files: Vec<CString>,
    dir: CString,
}

const MESSAGE: &[u8] = b"load-tester: SIGBUS: a ring file this process had mapped was truncated \
or taken away by another process; the run directory was removed, no results were written\n";
/// The message when the run directory stays: `--keep-shm`, or the run was already ending.
const MESSAGE_KEPT: &[u8] = b"load-tester: SIGBUS: a ring file this process had mapped was \
truncated or taken away by another process; no results were written\n";

/// Installs the handler (once per process) and arms it for the run directory `dir` holding
/// `files` (names relative to `dir`). Best effort: if a path cannot be expressed as a C string,
/// or the handler cannot be installed, a SIGBUS simply kills the process as before.
pub fn arm(dir: &Path, files: &[String]) {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
    let Some(dir_c) = c(dir) else { return };
    let files = files.iter().filter_map(|f| c(&dir.join(f))).collect();
    let paths = Box::into_raw(Box::new(Paths { files, dir: dir_c }));
    ARMED.store(paths, Ordering::Release);
    install();
}

/// Disarms the handler: the run directory is being removed the ordinary way.
pub fn disarm() {
    ARMED.store(std::ptr::null_mut(), Ordering::Release);
}

fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: a zeroed `sigaction` is a valid value to fill in (empty mask, no flags);
        // `on_sigbus` has the signature the kernel calls a handler with; installing a handler
        // has no memory-safety preconditions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_sigbus(_signal: libc::c_int) {
    let paths = ARMED.swap(std::ptr::null_mut(), Ordering::AcqRel);
    let message = if paths.is_null() {
        MESSAGE_KEPT
    } else {
        MESSAGE
    };
    // SAFETY: write(2) is async-signal-safe and `message` is a valid buffer of its length.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
    }
    if paths.is_null() {
        return;
    }
    // SAFETY: a non-null `ARMED` points to a leaked `Paths` that is never freed (see `ARMED`),
    // so the reference is valid; unlink(2) and rmdir(2) are async-signal-safe and take the
    // NUL-terminated strings the `CString`s own.
    unsafe {
        let paths = &*paths;
        for f in &paths.files {
            libc::unlink(f.as_ptr());
        }
        libc::rmdir(paths.dir.as_ptr());
    }
}
