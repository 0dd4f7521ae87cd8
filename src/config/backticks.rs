//! Runs a command the way Perl's backticks do, for MHA's `init_conf_load_script`.
//!
//! MHA reads that script's output with `` `$command` ``. Perl does not always use a shell for it: a
//! command free of shell metacharacters is split on blanks and executed directly, so `#` is not a
//! comment there (`echo a #` prints `a #`). The rules below are those of Perl's `do_exec3`:
//!
//! - leading blanks are skipped; an empty command runs nothing;
//! - `. x`, `exec x` and `NAME=...` go to `/bin/sh -c`;
//! - any of `` $&*(){}[]'";\|?<>~` `` or a newline sends the command to `/bin/sh -c`, except a
//!   trailing ` 2>&1` met before any other metacharacter: it is cut off, stderr joins stdout, and the
//!   rest is executed directly;
//! - otherwise the words (split on blanks) are executed directly, through `PATH`.
//!
//! A command that cannot be started gives no output, as in Perl.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How Perl would run a backtick command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing to run (empty command): no output.
    Nothing,
    /// `/bin/sh -c <command>`.
    Shell(String),
    /// Direct execution of these words; `merge_stderr` for a trailing ` 2>&1`.
    Direct {
        argv: Vec<String>,
        merge_stderr: bool,
    },
}

const META: &[u8] = b"$&*(){}[]'\";\\|?<>~`\n";

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Decides like Perl's `do_exec3`.
pub(crate) fn plan(command: &str) -> Plan {
    let cmd = command.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let b = cmd.as_bytes();
    let shell = || Plan::Shell(cmd.to_string());
    if b.first() == Some(&b'.') && b.get(1).is_some_and(|&c| is_space(c)) {
        return shell();
    }
    if b.starts_with(b"exec") && b.get(4).is_some_and(|&c| is_space(c)) {
        return shell();
    }
    let word_end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .unwrap_or(b.len());
    if b.get(word_end) == Some(&b'=') {
        return shell();
    }
    let mut direct = cmd;
    let mut merge_stderr = false;
    if let Some(i) = b.iter().position(|c| META.contains(c)) {
        let trailing_redirect = b[i] == b'>'
            && b.get(i + 1) == Some(&b'&')
            && b.get(i + 2) == Some(&b'1')
            && i > 1
            && b[i - 1] == b'2'
            && is_space(b[i - 2])
            && b[i + 3..].iter().all(|&c| is_space(c));
        let trailing_newline = b[i] == b'\n' && i + 1 == b.len();
        if trailing_redirect {
            direct = &cmd[..i - 2];
            merge_stderr = true;
        } else if trailing_newline {
            direct = &cmd[..i];
        } else {
            return shell();
        }
    }
    let argv: Vec<String> = direct
        .split(|c: char| c.is_ascii() && is_space(c as u8))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if argv.is_empty() {
        Plan::Nothing
    } else {
        Plan::Direct { argv, merge_stderr }
    }
}

/// Runs `command` as Perl's backticks would and returns its standard output (stderr goes to ours,
/// unless merged by a trailing ` 2>&1`). The exit status is ignored, as MHA ignores it.
pub(crate) fn output(command: &str) -> io::Result<Vec<u8>> {
    let mut cmd = match plan(command) {
        Plan::Nothing => return Ok(Vec::new()),
        Plan::Shell(text) => {
            let mut c = Command::new("/bin/sh");
            c.arg0("sh").arg("-c").arg(text);
            c
        }
        Plan::Direct { argv, merge_stderr } => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            if merge_stderr {
                return merged_output(c);
            }
            c
        }
    };
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    match cmd.output() {
        Ok(out) => Ok(out.stdout),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.kind() == io::ErrorKind::PermissionDenied =>
        {
            log::warn!("cannot run '{command}': {e}");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Runs with stdout and stderr on one pipe.
fn merged_output(mut cmd: Command) -> io::Result<Vec<u8>> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe() writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe() and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in &fds {
        // SAFETY: fd is a valid open descriptor; FD_CLOEXEC keeps it out of other children.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let write_copy = write_end.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_copy));
    let child = cmd.spawn();
    drop(cmd); // closes our copies of the write end, so the read below sees end of file
    let mut child = match child {
        Ok(child) => child,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.kind() == io::ErrorKind::PermissionDenied =>
        {
            log::warn!("cannot run command: {e}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    File::from(read_end).read_to_end(&mut out)?;
    child.wait()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(words: &[&str], merge_stderr: bool) -> Plan {
        Plan::Direct {
            argv: words.iter().map(|w| w.to_string()).collect(),
            merge_stderr,
        }
    }

    #[test]
    fn command_without_metacharacters_runs_directly_so_hash_is_an_argument() {
        assert_eq!(plan("  echo a\t#"), direct(&["echo", "a", "#"], false));
        assert_eq!(output("echo a #").unwrap(), b"a #\n");
    }

    #[test]
    fn metacharacters_send_the_command_to_the_shell() {
        for c in [
            "echo $HOME",
            "a && b",
            "echo 'x'",
            "echo a; echo b",
            "ls *",
            "cat <f",
            "echo ~",
        ] {
            assert_eq!(plan(c), Plan::Shell(c.to_string()), "{c}");
        }
        assert_eq!(output("echo a; echo b").unwrap(), b"a\nb\n");
    }

    #[test]
    fn exec_dot_and_assignment_prefixes_use_the_shell() {
        assert_eq!(plan("exec echo e"), Plan::Shell("exec echo e".into()));
        assert_eq!(plan(". /etc/x"), Plan::Shell(". /etc/x".into()));
        assert_eq!(plan("X=1 echo c #"), Plan::Shell("X=1 echo c #".into()));
        assert_eq!(plan("executable"), direct(&["executable"], false));
    }

    #[test]
    fn trailing_2_to_1_is_cut_and_merges_stderr() {
        assert_eq!(plan("echo d # 2>&1  "), direct(&["echo", "d", "#"], true));
        assert_eq!(plan("echo d 2>&1 x"), Plan::Shell("echo d 2>&1 x".into()));
        assert_eq!(output("echo d # 2>&1").unwrap(), b"d #\n");
        let merged = output("ls /nonexistent-mha-helper-dir 2>&1").unwrap();
        assert!(String::from_utf8_lossy(&merged).contains("nonexistent-mha-helper-dir"));
    }

    #[test]
    fn empty_or_missing_command_gives_no_output() {
        assert_eq!(plan("   "), Plan::Nothing);
        assert!(output("").unwrap().is_empty());
        assert!(output("/nonexistent/mha-helper-script arg")
            .unwrap()
            .is_empty());
    }
}
