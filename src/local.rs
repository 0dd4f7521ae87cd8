//! Commands of the operator's, run on the manager (`notify_command`,
//! `power_off_command`): `/bin/sh -c`, in a process group of their own, with
//! the given stdin; past the timeout the whole group is killed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Run `command`; Ok when it exits 0. An error names the exit status and
/// the last line it wrote to stderr, or the timeout.
pub fn run(command: &str, stdin: &[u8], timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("cannot run /bin/sh")?;
    let group = -(child.id() as i32);
    if let Some(mut input) = child.stdin.take() {
        // A command that does not read its stdin is not an error.
        let _ = input.write_all(stdin);
    }
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            // What it left running would keep stderr open.
            // SAFETY: the group we made for the child.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let err = err.lines().last().unwrap_or("").trim().to_string();
            bail!(
                "{status}{}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            );
        }
        if started.elapsed() >= timeout {
            // SAFETY: the group we made for the child.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = child.wait();
            bail!("still running after {} ms; killed", timeout.as_millis());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_arrives_and_a_failure_names_its_status_and_last_line() {
        let out = std::env::temp_dir().join(format!("mha-helper-local-{}", std::process::id()));
        run(
            &format!("cat > {}", out.display()),
            b"hello",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello");
        std::fs::remove_file(out).unwrap();
        let err = run("echo no pager >&2; exit 3", b"", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains('3') && err.contains("no pager"), "{err}");
    }

    #[test]
    fn a_command_past_its_time_is_killed_with_its_children() {
        let t = Instant::now();
        let err = run("sleep 30 & sleep 30", b"", Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(err.contains("killed"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
