//! One switch at a time: an exclusive `flock` on `mha-helper.<app>.lock`
//! in the state directory, held by every command that changes hosts, for
//! its whole run.
//!
//! The lock file also says who holds it (pid, command, since when), so a
//! refusal can name the holder. A command run by the holder (the hooks that
//! `mha-helper switchover`'s MHA runs are its descendants) works under the
//! holder's lock. Between MHA's `stop` and `start` the session keeper holds
//! it: `stop` passes its lock descriptor to the keeper, so the lock lives on
//! after `stop` exits, and `start` works under it once the keeper has proven
//! who it is (see `ssh::keeper`). Closing a descriptor never unlocks
//! explicitly: the lock ends when the last process holding it ends.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::{check_file, StateDir};

/// Who holds the lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub command: String,
    pub at: String,
    /// The switch id, when the holder works on one.
    #[serde(default)]
    pub switch: Option<String>,
    /// A session keeper: the pid of the phase that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawner: Option<u32>,
}

impl Owner {
    pub fn describe(&self) -> String {
        format!(
            "pid {} (`mha-helper {}`{}, since {})",
            self.pid,
            self.command,
            self.switch
                .as_deref()
                .map(|s| format!(", switch {s}"))
                .unwrap_or_default(),
            self.at
        )
    }
}

/// How this process holds the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Our own flock.
    Own,
    /// A process we descend from holds it (e.g. `mha-helper switchover`).
    Ancestor(Owner),
    /// The session keeper of our switch holds it (checked by the caller).
    Keeper(Owner),
}

/// The lock of one application, held for as long as this value lives.
#[derive(Debug)]
pub struct AppLock {
    file: Option<File>,
    path: PathBuf,
    held: Held,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub struct Busy {
    pub path: PathBuf,
    pub owner: Option<Owner>,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Some(o) => write!(
                f,
                "another mha-helper is working on this application: {} holds {}; wait for it to \
                 finish (or end it) and retry",
                o.describe(),
                self.path.display()
            ),
            None => write!(
                f,
                "another process holds {}; wait for it to finish and retry",
                self.path.display()
            ),
        }
    }
}

impl std::error::Error for Busy {}

fn open_lock_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow!("{} is a symbolic link; refusing it", path.display())
            } else {
                anyhow!("cannot open the lock file {}: {e}", path.display())
            }
        })?;
    check_file(&f, path)?;
    Ok(f)
}

fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn read_owner(path: &Path) -> Option<Owner> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    check_file(&f, path).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    // The first JSON value: a longer record being cut to a shorter one may
    // still have the old tail behind it for a moment.
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Owner>()
        .next()?
        .ok()
}

/// The owner a holder has written, waiting a moment for it: a holder takes
/// the flock first and writes its record just after, so a look in between
/// finds an empty file or the record of a holder that has gone.
fn read_live_owner(path: &Path) -> Option<Owner> {
    let until = Instant::now() + OWNER_WRITE_WAIT;
    loop {
        let owner = read_owner(path);
        if owner.as_ref().is_some_and(|o| alive(o.pid)) || Instant::now() >= until {
            return owner;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long a refusal waits for the holder's record to appear.
const OWNER_WRITE_WAIT: Duration = Duration::from_millis(500);

/// Write the record over the old one, then cut the file to it: the file is
/// never empty while a holder has it.
fn write_owner(f: &mut File, owner: &Owner) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let text = serde_json::to_string(owner)? + "\n";
    f.write_all_at(text.as_bytes(), 0)?;
    f.set_len(text.len() as u64)?;
    Ok(())
}

fn owner_now(command: &str, switch: Option<&str>) -> Owner {
    Owner {
        pid: std::process::id(),
        command: command.to_string(),
        at: crate::logger::utc_now(),
        switch: switch.map(String::from),
        spawner: None,
    }
}

impl AppLock {
    /// Take the lock, or find it held by us or a process we descend from.
    /// `Err(Busy)` (downcastable) when someone else holds it.
    pub fn acquire(state: &StateDir, command: &str) -> Result<AppLock> {
        let path = state.lock();
        let mut f = open_lock_file(&path)?;
        if try_flock(&f).with_context(|| format!("cannot lock {}", path.display()))? {
            write_owner(&mut f, &owner_now(command, None))
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(AppLock {
                file: Some(f),
                path,
                held: Held::Own,
            });
        }
        let owner = read_live_owner(&path);
        if let Some(o) = owner.as_ref().filter(|o| is_self_or_ancestor(o.pid)) {
            return Ok(AppLock {
                file: None,
                path,
                held: Held::Ancestor(o.clone()),
            });
        }
        Err(anyhow::Error::new(Busy { path, owner }))
    }

    /// Like [`AppLock::acquire`], waiting up to `wait` for a holder to go.
    pub fn acquire_within(state: &StateDir, command: &str, wait: Duration) -> Result<AppLock> {
        let until = Instant::now() + wait;
        loop {
            match AppLock::acquire(state, command) {
                Err(e) if e.downcast_ref::<Busy>().is_some() && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other,
            }
        }
    }

    /// Work under the lock our switch's keeper holds (the caller has checked
    /// the keeper is who `owner` says).
    pub fn under_keeper(state: &StateDir, owner: Owner) -> AppLock {
        AppLock {
            file: None,
            path: state.lock(),
            held: Held::Keeper(owner),
        }
    }

    /// The keeper's side: keep the descriptor `stop` passed us, and say in
    /// the lock file that we hold it now.
    ///
    /// # Safety
    /// `fd` must be an open descriptor of the lock file this process owns.
    pub unsafe fn adopt(fd: RawFd, state: &StateDir, switch: &str) -> Result<AppLock> {
        let mut f = File::from_raw_fd(fd);
        let path = state.lock();
        check_file(&f, &path)?;
        // Our descriptor shares the lock `stop` took: this succeeds at once.
        if !try_flock(&f)? {
            return Err(anyhow!(
                "the lock descriptor passed to the keeper does not hold {}",
                path.display()
            ));
        }
        let owner = Owner {
            // SAFETY: getppid has no preconditions. The keeper records it
            // at once, while the phase that started it is still its parent.
            spawner: Some(unsafe { libc::getppid() } as u32),
            ..owner_now("keeper", Some(switch))
        };
        write_owner(&mut f, &owner)?;
        Ok(AppLock {
            file: Some(f),
            path,
            held: Held::Own,
        })
    }

    /// The descriptor to pass on to the keeper (only when we hold it).
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Record the switch we work on in the lock file (when it is ours).
    pub fn set_switch(&mut self, switch: &str) {
        if let Some(f) = self.file.as_mut() {
            let mut o = read_owner(&self.path).unwrap_or_else(|| owner_now("?", None));
            o.switch = Some(switch.to_string());
            let _ = write_owner(f, &o);
        }
    }

    pub fn describe(&self) -> String {
        match &self.held {
            Held::Own => format!("holding {}", self.path.display()),
            Held::Ancestor(o) => format!("under the lock of {}", o.describe()),
            Held::Keeper(o) => format!("under the lock of the session keeper, {}", o.describe()),
        }
    }
}

/// Who holds the lock of `state` now, if anyone does. Read from
/// /proc/locks, so looking never takes the lock from anyone.
pub fn holder(state: &StateDir) -> Option<Owner> {
    use std::os::unix::fs::MetadataExt;
    let path = state.lock();
    let md = std::fs::symlink_metadata(&path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let held = locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"FLOCK")
            && f.get(5)
                .and_then(|id| id.rsplit(':').next())
                .and_then(|ino| ino.parse::<u64>().ok())
                == Some(md.ino())
    });
    if !held {
        return None;
    }
    Some(read_live_owner(&path).unwrap_or(Owner {
        pid: 0,
        command: "unknown".into(),
        at: "?".into(),
        switch: None,
        spawner: None,
    }))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is this process or one of its ancestors.
pub fn is_self_or_ancestor(pid: u32) -> bool {
    let mut cur = std::process::id();
    for _ in 0..64 {
        if cur == pid {
            return true;
        }
        match parent_of(cur) {
            Some(p) if p > 0 && p != cur => cur = p,
            _ => return false,
        }
    }
    false
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The command line of a process, words joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// MHA processes (`masterha_master_switch`, `masterha_manager`) working on
/// the application configured in `conf`, as (pid, program).
pub fn mha_processes(conf: &Path) -> Vec<(u32, String)> {
    let conf = std::fs::canonicalize(conf).unwrap_or_else(|_| conf.to_path_buf());
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let words: Vec<String> = bytes
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let Some(program) = words.iter().take(3).find_map(|w| {
            let base = w.rsplit('/').next().unwrap_or(w);
            ["masterha_master_switch", "masterha_manager"]
                .contains(&base)
                .then(|| base.to_string())
        }) else {
            continue;
        };
        if conf_argument(&words).is_some_and(|c| {
            std::fs::canonicalize(&c).unwrap_or_else(|_| PathBuf::from(&c)) == conf
        }) {
            out.push((pid, program));
        }
    }
    out.sort();
    out
}

/// The value of `--conf=X` or `--conf X` in an MHA command line.
fn conf_argument(words: &[String]) -> Option<String> {
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix("--conf=") {
            return Some(v.to_string());
        }
        if w == "--conf" {
            return words.get(i + 1).cloned();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::temp_dir;

    #[test]
    fn second_acquire_in_another_process_is_busy_and_names_the_holder() {
        let d = temp_dir("lock");
        let s = StateDir::open(&d, "app1").unwrap();
        let lock = AppLock::acquire(&s, "switchover").unwrap();
        assert_eq!(lock.held(), &Held::Own);
        // Same process again: we are our own "ancestor".
        let again = AppLock::acquire(&s, "recover").unwrap();
        assert!(matches!(again.held(), Held::Ancestor(o) if o.command == "switchover"));
        assert_eq!(holder(&s).map(|o| o.command), Some("switchover".into()));
        drop(again);
        drop(lock);
        assert_eq!(holder(&s), None);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_refusal_names_a_holder_that_writes_its_record_just_after_taking_the_flock() {
        let d = temp_dir("lock-late");
        let s = StateDir::open(&d, "app1").unwrap();
        let path = s.lock();
        drop(open_lock_file(&path).unwrap());
        // Another process takes the flock, and writes who it is 200 ms later.
        let script = r#"exec 9<>"$1"; flock -x 9; echo locked; sleep 0.2;
            printf '{"pid":%d,"command":"switchover","at":"now"}\n' $$ >&9; sleep 3"#;
        let mut child = std::process::Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 7];
        child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        let e = AppLock::acquire(&s, "recover").unwrap_err();
        let busy = e.downcast_ref::<Busy>().unwrap_or_else(|| panic!("{e:#}"));
        assert_eq!(
            busy.owner.as_ref().map(|o| o.pid),
            Some(child.id()),
            "{busy}"
        );
        let _ = child.kill();
        let _ = child.wait();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_record_cut_shorter_is_read_without_the_old_tail() {
        let d = temp_dir("lock-cut");
        let s = StateDir::open(&d, "app1").unwrap();
        let mut f = open_lock_file(&s.lock()).unwrap();
        write_owner(&mut f, &owner_now("a-long-command-name", Some("switch-1"))).unwrap();
        write_owner(&mut f, &owner_now("keeper", None)).unwrap();
        let text = std::fs::read_to_string(s.lock()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(
            read_owner(&s.lock()).map(|o| o.command),
            Some("keeper".into())
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn busy_names_pid_command_and_file() {
        let b = Busy {
            path: PathBuf::from("/x/mha-helper.app1.lock"),
            owner: Some(Owner {
                pid: 42,
                command: "switchover".into(),
                at: "2026-12-01T00:00:00Z".into(),
                switch: Some("s1".into()),
                spawner: None,
            }),
        };
        let m = b.to_string();
        assert!(m.contains("pid 42"), "{m}");
        assert!(m.contains("`mha-helper switchover`, switch s1"), "{m}");
        assert!(m.contains("/x/mha-helper.app1.lock"), "{m}");
    }

    #[test]
    fn conf_is_found_in_both_spellings() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            conf_argument(&w(&[
                "perl",
                "/usr/bin/masterha_manager",
                "--conf=/etc/a.cnf"
            ])),
            Some("/etc/a.cnf".into())
        );
        assert_eq!(
            conf_argument(&w(&["masterha_master_switch", "--conf", "/etc/b.cnf"])),
            Some("/etc/b.cnf".into())
        );
        assert_eq!(conf_argument(&w(&["masterha_manager"])), None);
    }

    #[test]
    fn our_own_pid_counts_as_ancestor_and_init_does_not_stop_the_walk_early() {
        assert!(is_self_or_ancestor(std::process::id()));
        assert!(is_self_or_ancestor(1));
        assert!(!is_self_or_ancestor(u32::MAX));
        assert!(alive(std::process::id()));
    }
}
