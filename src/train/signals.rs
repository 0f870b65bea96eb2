//! The stop flag: SIGTERM, SIGINT and SIGUSR1 raise it, and the training loop checks it at every
//! step boundary, writes its resume state and stops (`Error::Interrupted`). A second SIGINT or
//! SIGTERM while the flag is up ends the process at once (exit status 1), as an impatient user
//! expects of a second Ctrl-C.

use crate::error::{Result, internal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let f = flag();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal raised it.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(f))
                .map_err(|e| e.to_string())?;
        }
        for sig in [SIGINT, SIGTERM, SIGUSR1] {
            signal_hook::flag::register(sig, Arc::clone(f)).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| internal(format!("cannot install the signal handlers: {e}")))
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}
