//! Test-only fault points, switched on by the environment variable
//! `MHA_HELPER_FAULT` (a comma-separated list). They exist only in a build
//! with the cargo feature `fault-injection` (the lab's): the release and
//! packaged binaries carry none of them, and there every function below
//! does nothing. The lab tests use them to prove `recover`, rollback and
//! the exit codes.
//!
//! * `kill@POINT` — the process kills itself with SIGKILL at POINT;
//! * `fail@POINT` — the step fails there. Points are `before:<step>`
//!   (journal written, nothing applied yet), `applied:<step>` (the host
//!   changed, nothing the change produced journaled yet) and
//!   `after:<step>` (applied and recorded, not yet marked done), plus a
//!   few named ones (`after:start-begun`);
//! * `enospc@journal:N` — the Nth journal write of this process fails with
//!   "No space left on device", as on a full disk;
//! * `hang@<step>` — the step's first SQL script sleeps on the server far
//!   past step_timeout, with the server's own statement limit lifted, so
//!   that only mha-helper's timeout (and its KILL) can end it;
//! * `wait@POINT` — at POINT the process creates the file
//!   `$MHA_HELPER_FAULT_DIR/mha-helper-wait.POINT` (default directory /tmp,
//!   `:` in POINT written `_`) and waits until it is removed, so a test can
//!   act (cut a link, say) at exactly that moment.
//!
//! Any item may start with `PHASE/` (`stop/`, `start/`, `stopssh/`, ...):
//! it then applies only in that phase of a hook.

#[cfg(feature = "fault-injection")]
pub use on::*;

#[cfg(not(feature = "fault-injection"))]
pub use off::*;

#[cfg(feature = "fault-injection")]
mod on {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use anyhow::{bail, Result};

    pub const VAR: &str = "MHA_HELPER_FAULT";

    /// A helper process started from here does not inherit the faults meant
    /// for this one.
    pub fn forget(cmd: &mut std::process::Command) {
        cmd.env_remove(VAR);
    }

    static PHASE: Mutex<String> = Mutex::new(String::new());

    /// The hook phase this process runs (for `PHASE/` items).
    pub fn set_phase(phase: &str) {
        if let Ok(mut p) = PHASE.lock() {
            *p = phase.to_string();
        }
    }

    fn items() -> Vec<String> {
        let Ok(spec) = std::env::var(VAR) else {
            return Vec::new();
        };
        let phase = PHASE.lock().map(|p| p.clone()).unwrap_or_default();
        parse(&spec, &phase)
    }

    /// The items of `spec` that apply in `phase`, without their phase prefix.
    fn parse(spec: &str, phase: &str) -> Vec<String> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .filter_map(|s| match s.split_once('/') {
                Some((p, rest)) if !p.contains('@') => (p == phase).then(|| rest.to_string()),
                _ => Some(s.to_string()),
            })
            .collect()
    }

    /// `wait@POINT`: announce the point in a file and wait until it is gone.
    fn wait_at(name: &str) {
        let dir = std::env::var("MHA_HELPER_FAULT_DIR").unwrap_or_else(|_| "/tmp".into());
        let file =
            std::path::Path::new(&dir).join(format!("mha-helper-wait.{}", name.replace(':', "_")));
        if std::fs::write(&file, std::process::id().to_string()).is_err() {
            return;
        }
        log::warn!(
            "fault point {name}: waiting until {} is removed (test fault injection)",
            file.display()
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while file.exists() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(20));
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
            } else if let Some(p) = item.strip_prefix("wait@") {
                if p == name {
                    wait_at(name);
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

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn phase_prefixed_items_apply_only_in_their_phase() {
            let spec = "start/fail@x, fail@y, stop/enospc@journal:2,kill@after:a/b";
            assert_eq!(
                parse(spec, "stop"),
                ["fail@y", "enospc@journal:2", "kill@after:a/b"]
            );
            assert_eq!(parse(spec, "start"), ["fail@x", "fail@y", "kill@after:a/b"]);
            assert_eq!(parse(spec, ""), ["fail@y", "kill@after:a/b"]);
        }
    }
}

/// The build without fault points: nothing is read, nothing fires.
#[cfg(not(feature = "fault-injection"))]
mod off {
    pub fn set_phase(_phase: &str) {}
    pub fn point(_name: &str) -> anyhow::Result<()> {
        Ok(())
    }
    pub fn io_point(_what: &str, _n: usize) -> std::io::Result<()> {
        Ok(())
    }
    pub fn set_step(_id: &str) {}
    pub fn hang_now() -> bool {
        false
    }
    pub fn forget(_cmd: &mut std::process::Command) {}
}
