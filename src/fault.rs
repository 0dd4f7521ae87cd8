//! Test-only fault points, switched on by the environment variable
//! `MHA_HELPER_FAULT` (a comma-separated list). Unset in production; the
//! lab tests use them to prove `recover`, rollback and the exit codes.
//!
//! * `kill@POINT` — the process kills itself with SIGKILL at POINT;
//! * `fail@POINT` — the step fails there. Points are `before:<step>`
//!   (journal written, nothing applied yet) and `after:<step>` (applied,
//!   not yet marked done), plus a few named ones (`after:start-begun`);
//! * `enospc@journal:N` — the Nth journal write of this process fails with
//!   "No space left on device", as on a full disk;
//! * `hang@<step>` — the step's first SQL script sleeps on the server far
//!   past step_timeout, with the server's own statement limit lifted, so
//!   that only mha-helper's timeout (and its KILL) can end it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};

pub const VAR: &str = "MHA_HELPER_FAULT";

fn items() -> Vec<String> {
    match std::env::var(VAR) {
        Ok(spec) => spec
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn point(name: &str) -> Result<()> {
    for item in items() {
        if let Some(p) = item.strip_prefix("kill@") {
            if p == name {
                log::warn!("fault point {name}: killing this process (test fault injection)");
                // SAFETY: sends a signal to ourselves; does not return.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        } else if let Some(p) = item.strip_prefix("fail@") {
            if p == name {
                bail!("injected failure at {name} ({VAR})");
            }
        }
    }
    Ok(())
}

/// `enospc@<what>:<n>`: the nth write of `what` fails like a full disk.
pub fn io_point(what: &str, n: usize) -> std::io::Result<()> {
    let want = format!("enospc@{what}:{n}");
    if items().contains(&want) {
        log::warn!("fault point {want}: failing the write with ENOSPC (test fault injection)");
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

static CURRENT_STEP: Mutex<String> = Mutex::new(String::new());
static HANG_FIRED: AtomicBool = AtomicBool::new(false);

/// The engine says which step runs (for `hang@<step>`).
pub fn set_step(id: &str) {
    if let Ok(mut s) = CURRENT_STEP.lock() {
        *s = id.to_string();
    }
}

/// Whether the next SQL script should hang (`hang@<current step>`), once
/// per process.
pub fn hang_now() -> bool {
    let step = CURRENT_STEP.lock().map(|s| s.clone()).unwrap_or_default();
    if step.is_empty() || !items().contains(&format!("hang@{step}")) {
        return false;
    }
    !HANG_FIRED.swap(true, Ordering::SeqCst)
}
