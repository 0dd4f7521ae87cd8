//! Test-only fault points, switched on by the environment variable
//! `MHA_HELPER_FAULT` (a comma-separated list). `kill@POINT` makes the
//! process kill itself with SIGKILL when it reaches POINT, `fail@POINT`
//! makes the step fail there. Points are `before:<step>` (journal written,
//! nothing applied yet) and `after:<step>` (applied, not yet marked done).
//! Unset in production; the lab tests use it to prove `recover`.

use anyhow::{bail, Result};

pub const VAR: &str = "MHA_HELPER_FAULT";

pub fn point(name: &str) -> Result<()> {
    let Ok(spec) = std::env::var(VAR) else {
        return Ok(());
    };
    for item in spec.split(',').map(str::trim) {
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
