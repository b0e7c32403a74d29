//! SIGINT and SIGTERM for a run: the first stops the load and keeps what was measured, the
//! second ends the run at once, a third (should the run still not end) exits on the spot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::run::{Stop, StopRequest};

/// The run's stop request, wired to the signals.
///
/// Invariant: `which` is 0 until the first signal, then that signal's number for good.
pub(super) struct Signals {
    /// What the run watches.
    pub stop: Arc<Stop>,
    /// The first signal that came, 0 before.
    which: Arc<AtomicUsize>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Self {
        let stop = Arc::new(Stop::default());
        let which = Arc::new(AtomicUsize::new(0));
        for (signal, code) in [
            (signal_hook::consts::SIGINT, crate::exit::SIGINT),
            (signal_hook::consts::SIGTERM, crate::exit::SIGTERM),
        ] {
            let (stop, which) = (Arc::clone(&stop), Arc::clone(&which));
            let handler = move || {
                // Only the first signal names the interruption.
                let _ =
                    which.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst);
                if stop.request() == StopRequest::Again {
                    signal_hook::low_level::exit(code);
                }
            };
            // SAFETY: the handler does only atomic operations and, at the third signal,
            // `_exit`, all async-signal-safe; it allocates and locks nothing.
            let _ = unsafe { signal_hook::low_level::register(signal, handler) };
        }
        Self { stop, which }
    }

    /// The first signal that came, by name, and the exit status it calls for.
    pub fn first(&self) -> Option<(&'static str, i32)> {
        match self.which.load(Ordering::Relaxed) {
            0 => None,
            s if s == signal_hook::consts::SIGTERM as usize => {
                Some(("SIGTERM", crate::exit::SIGTERM))
            }
            _ => Some(("SIGINT", crate::exit::SIGINT)),
        }
    }
}
