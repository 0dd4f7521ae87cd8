//! The session keeper: one SSH session per host for a whole switch.
//!
//! MHA runs `stop` and `start` as two processes, and `start` runs inside the
//! write outage, where opening fresh SSH sessions (~30 ms per host) would
//! lengthen it. So `stop` starts a small detached process, `mha-helper
//! keeper`, that opens the sessions to every host of the cluster once and
//! serves remote commands over a Unix socket in the state directory; both
//! phases send their commands through it, and `start` ends it. It also holds
//! the application's lock between the two phases (`stop` hands it its lock
//! descriptor), and exits by itself after `idle` without requests.
//!
//! Commands carry the MySQL password on their stdin, so a client sends
//! nothing until the process behind the socket is proven to be the keeper it
//! expects: same uid, and the pid that `stop` recorded (SO_PEERCRED). A
//! socket answered by anyone else is refused outright. When no keeper
//! answers at all, the phases fall back to their own direct sessions, so the
//! keeper only ever makes a switch faster, never possible or impossible.
//! Each session is used by one thread at a time (a mutex per host).
//!
//! A keeper never outlives a switch that did not hand it over: `stop` keeps
//! the write end of a pipe (the tether) whose read end the keeper watches,
//! and writes one byte to it only once it has succeeded. If the tether
//! closes first (stop failed, or was killed before or after writing its
//! journal), the keeper ends at once and its lock goes with it. A keeper
//! that was handed over and is left holding the lock after its switch's
//! journal is closed (start killed at the very end) is an orphan: every
//! command that needs the lock recognises it (`acquire`) and ends it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::connection::{Connection, Exec, KeeperRef, Output, Stats, Target};
use super::known_hosts::{base64_decode, base64_encode};
use crate::state::journal::Journal;
use crate::state::lock::{AppLock, Busy, Owner};
use crate::state::StateDir;

/// The descriptor number the lock is passed on as.
pub const LOCK_FD: i32 = 3;
/// The descriptor number of the tether's read end in the keeper.
pub const TETHER_FD: i32 = 4;

/// The spawning phase's end of the tether: dropping it without
/// [`Tether::hand_over`] ends the keeper.
pub struct Tether(std::fs::File);

impl Tether {
    /// The switch goes on without us: the keeper stays (until start says
    /// bye, or `idle`).
    pub fn hand_over(mut self) {
        if let Err(e) = self.0.write_all(b"k") {
            log::warn!("cannot hand the session keeper over ({e}); it ends with this process");
        }
    }
}

/// A pipe whose two ends are close-on-exec descriptors numbered 10 or
/// above, out of the way of the numbers the keeper receives them at.
fn tether_pipe() -> Result<(std::fs::File, std::fs::File)> {
    use std::os::unix::io::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot make the keeper's tether");
    }
    let mut high = [0i32; 2];
    for (h, fd) in high.iter_mut().zip(fds) {
        // SAFETY: fd is ours; F_DUPFD_CLOEXEC returns a new descriptor.
        *h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        unsafe { libc::close(fd) };
    }
    if high.iter().any(|fd| *fd < 0) {
        for fd in high.into_iter().filter(|fd| *fd >= 0) {
            unsafe { libc::close(fd) };
        }
        return Err(std::io::Error::last_os_error()).context("cannot make the keeper's tether");
    }
    // SAFETY: both descriptors were just made and belong to nobody else.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(high[0]),
            std::fs::File::from_raw_fd(high[1]),
        )
    })
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Request {
    Ping,
    Exec {
        host: String,
        command: String,
        stdin: String,
        timeout_ms: u64,
    },
    /// One question to the host's kept process (see `Exec::ask`); the
    /// answer comes back in `stdout`.
    Ask {
        host: String,
        command: String,
        prefix: String,
        line: String,
        tag: String,
        timeout_ms: u64,
    },
    Bye,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    error: String,
    /// The command never started on the host: safe to run it elsewhere.
    #[serde(default)]
    not_started: bool,
    #[serde(default)]
    status: i32,
    #[serde(default)]
    signal: Option<String>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    timed_out_ms: Option<u64>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    switch: Option<String>,
}

fn send(stream: &mut UnixStream, msg: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_string(msg)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    Ok(())
}

fn receive<T: for<'de> Deserialize<'de>>(reader: &mut impl BufRead) -> Result<T> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("keeper closed the connection");
    }
    Ok(serde_json::from_str(&line)?)
}

fn call(stream: &mut UnixStream, req: &Request, wait: Duration) -> Result<Response> {
    stream.set_read_timeout(Some(wait.max(Duration::from_millis(100))))?;
    send(stream, req)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    receive(&mut reader)
}

/// The uid and pid of the process at the other end of a Unix socket.
fn peer(stream: &UnixStream) -> Option<(u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the size we pass.
    let rc = unsafe {
        libc::getsockopt(
            std::os::unix::io::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some((cred.uid, cred.pid as u32))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Why no keeper could be used.
#[derive(Debug)]
pub enum Unavailable {
    /// Nobody listens there: go direct.
    Absent(String),
    /// Somebody else does: refuse, send nothing.
    Impostor(String),
}

/// Connect to the keeper `k` and prove it is the one we expect before
/// anything is sent: the socket is a socket of ours, and the process behind
/// it has our uid and the recorded pid.
pub fn connect(k: &KeeperRef) -> std::result::Result<UnixStream, Unavailable> {
    let path = &k.socket;
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Err(Unavailable::Absent(format!("{}: {e}", path.display()))),
    };
    if !md.file_type().is_socket() || md.uid() != euid() {
        return Err(Unavailable::Impostor(format!(
            "{} is not a socket of this user (uid {}, {}); refusing to use it",
            path.display(),
            md.uid(),
            if md.file_type().is_socket() {
                "a socket"
            } else {
                "not a socket"
            }
        )));
    }
    let stream = UnixStream::connect(path)
        .map_err(|e| Unavailable::Absent(format!("{}: {e}", path.display())))?;
    match peer(&stream) {
        Some((uid, pid)) if uid == euid() && pid == k.pid => Ok(stream),
        Some((uid, pid)) => Err(Unavailable::Impostor(format!(
            "the process behind {} (pid {pid}, uid {uid}) is not the session keeper this switch \
             started (pid {}, uid {}); refusing to send it anything — find out who put it there",
            path.display(),
            k.pid,
            euid()
        ))),
        None => Err(Unavailable::Impostor(format!(
            "cannot tell who listens on {}; refusing it",
            path.display()
        ))),
    }
}

/// What a keeper says about itself.
pub struct Status {
    pub hosts: Vec<String>,
    pub switch: Option<String>,
}

/// Ask the (verified) keeper who it is.
pub fn ping(k: &KeeperRef) -> Result<Status> {
    let mut s = connect(k).map_err(|u| match u {
        Unavailable::Absent(m) => anyhow!("no session keeper: {m}"),
        Unavailable::Impostor(m) => anyhow!("{m}"),
    })?;
    let r = call(&mut s, &Request::Ping, Duration::from_secs(2))?;
    if !r.ok {
        bail!("the session keeper refused: {}", r.error);
    }
    Ok(Status {
        hosts: r.hosts,
        switch: r.switch,
    })
}

/// Ask the keeper to end (its sessions close and its lock goes). Quiet when
/// there is none; never talks to an impostor.
pub fn stop(k: &KeeperRef) {
    if let Ok(mut s) = connect(k) {
        let _ = call(&mut s, &Request::Bye, Duration::from_secs(2));
    }
}

/// Why the session keeper named by `owner` (the lock's holder) is an
/// orphan, or None when it is not one: it must be a keeper, its switch's
/// journal must not be open (a switch still recorded there is recover's),
/// and the phase that started it must be gone.
pub fn orphan(state: &StateDir, owner: &Owner) -> Option<String> {
    if owner.command != "keeper" || !crate::state::lock::alive(owner.pid) {
        return None;
    }
    let switch = owner.switch.as_deref()?;
    if Journal::open_id(state).as_deref() == Some(switch) {
        return None;
    }
    let spawner_runs = owner.spawner.is_some_and(|p| {
        crate::state::lock::alive(p)
            && crate::state::lock::cmdline(p).is_some_and(|c| c.contains("mha-helper"))
    });
    if spawner_runs {
        return None;
    }
    Some(format!(
        "the session keeper pid {} of switch {switch} holds the lock, but no journal of that \
         switch is open and the phase that started it{} is gone",
        owner.pid,
        owner
            .spawner
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default()
    ))
}

/// End an orphaned keeper: ask it through its socket (proven to be that
/// pid, ours), else signal it once its command line shows it is an
/// mha-helper keeper of this state directory; then wait for the lock to go.
fn end_orphan(state: &StateDir, owner: &Owner) -> Result<()> {
    let k = KeeperRef {
        socket: state.keeper_socket(),
        pid: owner.pid,
    };
    stop(&k);
    let gone = |wait: Duration| {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if !crate::state::lock::alive(owner.pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    if gone(Duration::from_secs(3)) {
        return Ok(());
    }
    let socket = state.keeper_socket().display().to_string();
    let ours = crate::state::lock::cmdline(owner.pid)
        .is_some_and(|c| c.contains("mha-helper keeper") && c.contains(&socket));
    if !ours {
        bail!(
            "pid {} does not look like the session keeper of {} any more; not signalling it",
            owner.pid,
            state.keeper_socket().display()
        );
    }
    // SAFETY: a plain signal to a process proven to be our orphaned keeper.
    unsafe { libc::kill(owner.pid as libc::pid_t, libc::SIGTERM) };
    if gone(Duration::from_secs(5)) {
        return Ok(());
    }
    bail!("the orphaned session keeper pid {} did not end", owner.pid)
}

/// If the application's lock is held by an orphaned session keeper, end
/// it; returns what was done (for check and recover to report).
pub fn end_if_orphaned(state: &StateDir) -> Result<Option<String>> {
    let Some(owner) = crate::state::lock::holder(state) else {
        return Ok(None);
    };
    let Some(why) = orphan(state, &owner) else {
        return Ok(None);
    };
    end_orphan(state, &owner).with_context(|| format!("{why}; ending it failed"))?;
    Ok(Some(format!("{why}: ended it, the lock is free")))
}

/// Take the application's lock (see [`AppLock::acquire`]); a session
/// keeper holding it that is proven an orphan ([`orphan`]) is ended first,
/// with a warning that says so.
pub fn acquire(state: &StateDir, command: &str) -> Result<AppLock> {
    acquire_within(state, command, Duration::ZERO)
}

/// Like [`acquire`], waiting up to `wait` for another holder to go.
pub fn acquire_within(state: &StateDir, command: &str, wait: Duration) -> Result<AppLock> {
    let e = match AppLock::acquire_within(state, command, wait) {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    let Some(owner) = e.downcast_ref::<Busy>().and_then(|b| b.owner.clone()) else {
        return Err(e);
    };
    if owner.command == "keeper" && closing(state, &owner) {
        // Its stop ended without handing it over: it lets go of the lock
        // within moments (the tether).
        log::debug!(
            "the session keeper pid {} is ending; waiting for the lock",
            owner.pid
        );
        if let Ok(l) = AppLock::acquire_within(state, command, CLOSING_WAIT) {
            return Ok(l);
        }
    }
    let Some(why) = orphan(state, &owner) else {
        return Err(e);
    };
    log::warn!("{why}: ending it");
    end_orphan(state, &owner).with_context(|| format!("{why}; ending it failed"))?;
    log::warn!("ended the orphaned session keeper pid {}", owner.pid);
    AppLock::acquire_within(state, command, Duration::from_secs(1))
}

/// How long a command waits for a session keeper that is ending to let go
/// of the lock.
const CLOSING_WAIT: Duration = Duration::from_secs(2);

/// Whether the keeper named by `owner` is ending: the phase that started
/// it is gone and it no longer answers on its socket (a keeper that serves
/// a switch answers; one whose tether closed is on its way out).
fn closing(state: &StateDir, owner: &Owner) -> bool {
    let spawner_gone = owner.spawner.is_none_or(|p| !crate::state::lock::alive(p));
    let k = KeeperRef {
        socket: state.keeper_socket(),
        pid: owner.pid,
    };
    spawner_gone && ping(&k).is_err()
}

/// What `spawn` needs to start a keeper.
pub struct Spawn<'a> {
    /// `--conf`, `--helper-conf`, `--global-conf` to pass on.
    pub conf_args: Vec<std::ffi::OsString>,
    pub socket: &'a Path,
    pub log: &'a Path,
    pub hosts: &'a [&'a str],
    pub idle: Duration,
    pub switch: &'a str,
    /// Our lock descriptor, handed over so the lock outlives us.
    pub lock_fd: Option<i32>,
}

/// Start a keeper (detached, its own session, no stdio of ours) and wait
/// until it answers as itself. It lives only as long as the returned tether
/// unless that is handed over.
pub fn spawn(p: &Spawn) -> Result<(KeeperRef, Tether)> {
    if p.socket.as_os_str().len() > 100 {
        bail!(
            "socket path {} is too long for a Unix socket",
            p.socket.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let log = crate::state::open_private(p.log, true)?
        .map(Ok)
        .unwrap_or_else(|| crate::state::create_private(p.log))
        .context("cannot open the keeper log")?;
    let (tether_read, tether_write) = tether_pipe()?;
    let tether_fd = std::os::unix::io::AsRawFd::as_raw_fd(&tether_read);
    let mut cmd = std::process::Command::new(exe);
    crate::fault::forget(&mut cmd);
    cmd.arg("keeper")
        .args(&p.conf_args)
        .arg("--socket")
        .arg(p.socket)
        .arg("--idle-secs")
        .arg(p.idle.as_secs().to_string())
        .arg("--hosts")
        .arg(p.hosts.join(","))
        .arg("--switch")
        .arg(p.switch)
        .arg("--tether-fd")
        .arg(TETHER_FD.to_string())
        .env_remove(crate::state::journal::SWITCH_ID_VAR)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    if p.lock_fd.is_some() {
        cmd.arg("--lock-fd").arg(LOCK_FD.to_string());
    }
    let lock_fd = p.lock_fd;
    // SAFETY: only async-signal-safe calls between fork and exec: setsid
    // detaches the keeper from MHA's process group; dup2/fcntl put the lock
    // descriptor at LOCK_FD and the tether's read end (numbered 10 or
    // above, so the lock's move cannot clobber it) at TETHER_FD, both open
    // across exec. The tether's write end is close-on-exec: only we hold it.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if let Some(fd) = lock_fd {
                if fd == LOCK_FD {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, LOCK_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::dup2(tether_fd, TETHER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the session keeper")?;
    drop(tether_read);
    let tether = Tether(tether_write);
    let k = KeeperRef {
        socket: p.socket.to_path_buf(),
        pid: child.id(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the session keeper exited at once ({status}); see {}",
                p.log.display()
            );
        }
        // It listens once its sessions are open; a host it could not
        // reach is reached directly by the phases (or refused by them).
        if let Ok(st) = ping(&k) {
            let missing: Vec<&&str> = p
                .hosts
                .iter()
                .filter(|h| !st.hosts.iter().any(|k| k == *h))
                .collect();
            if !missing.is_empty() {
                log::debug!("the session keeper has no session to {missing:?}");
            }
            return Ok((k, tether));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    bail!("the session keeper did not answer within 10 s")
}

/// Runs commands through a verified keeper; falls back to a direct SSH
/// session of its own when no keeper answers (never when someone else
/// does).
pub struct KeeperExec {
    host: String,
    keeper: KeeperRef,
    stream: Option<UnixStream>,
    target: Target,
    direct: Option<Connection>,
    stats: Stats,
}

impl KeeperExec {
    pub fn new(keeper: &KeeperRef, target: &Target) -> KeeperExec {
        KeeperExec {
            host: target.name.clone(),
            keeper: keeper.clone(),
            stream: None,
            target: target.clone(),
            direct: None,
            stats: Stats::default(),
        }
    }

    fn via_keeper(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Response> {
        if self.stream.is_none() {
            match connect(&self.keeper) {
                Ok(s) => self.stream = Some(s),
                Err(Unavailable::Absent(m)) => {
                    return Ok(Response {
                        error: format!("no session keeper ({m})"),
                        not_started: true,
                        ..Response::default()
                    })
                }
                Err(Unavailable::Impostor(m)) => bail!("{}: {m}", self.host),
            }
        }
        let stream = self.stream.as_mut().expect("connected above");
        let req = Request::Exec {
            host: self.host.clone(),
            command: command.to_string(),
            stdin: base64_encode(stdin),
            timeout_ms: timeout.as_millis() as u64,
        };
        call(stream, &req, timeout + Duration::from_secs(5))
    }
}

impl Exec for KeeperExec {
    fn host(&self) -> &str {
        &self.host
    }

    fn exec(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Output> {
        let started = Instant::now();
        if self.direct.is_none() {
            match self.via_keeper(command, stdin, timeout) {
                Ok(r) if r.ok => {
                    self.stats.execs += 1;
                    self.stats.via_keeper = true;
                    return Ok(Output {
                        status: r.status,
                        signal: r.signal,
                        stdout: base64_decode(&r.stdout).unwrap_or_default(),
                        stderr: base64_decode(&r.stderr).unwrap_or_default(),
                        timed_out: r.timed_out_ms.map(Duration::from_millis),
                    });
                }
                Ok(r) if !r.not_started => bail!("{}: {}", self.host, r.error),
                Ok(r) => log::debug!("{}: {}; going direct", self.host, r.error),
                Err(e) if self.stream.is_some() => {
                    // The request may have reached the host: do not repeat it.
                    self.stream = None;
                    return Err(e.context(format!(
                        "{}: lost the session keeper mid-command",
                        self.host
                    )));
                }
                Err(e) => return Err(e),
            }
            self.stream = None;
            // The command never ran; a direct session may run it, within
            // what is left of its time.
            let left = timeout.saturating_sub(started.elapsed());
            if left < Duration::from_millis(100) {
                bail!(
                    "{}: the command could not be started within {:.1} s (it never ran)",
                    self.host,
                    timeout.as_secs_f64()
                );
            }
            let mut target = self.target.clone();
            target.cap_connect_timeout(left);
            self.direct = Some(Connection::open(&target)?);
        }
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let d = self.direct.as_mut().expect("opened above");
        let out = d.exec(command, stdin, left);
        self.stats.connections = d.stats.connections;
        self.stats.connect_ms = d.stats.connect_ms;
        self.stats.execs += 1;
        out
    }

    fn stats(&self) -> Option<Stats> {
        Some(self.stats)
    }

    fn ask(
        &mut self,
        command: &str,
        prefix: &[u8],
        line: &str,
        tag: &str,
        timeout: Duration,
    ) -> Result<String> {
        if let Some(d) = self.direct.as_mut() {
            return d.ask(command, prefix, line, tag, timeout);
        }
        if self.stream.is_none() {
            match connect(&self.keeper) {
                Ok(s) => self.stream = Some(s),
                Err(Unavailable::Absent(m)) => bail!("{}: no session keeper ({m})", self.host),
                Err(Unavailable::Impostor(m)) => bail!("{}: {m}", self.host),
            }
        }
        let stream = self.stream.as_mut().expect("connected above");
        let req = Request::Ask {
            host: self.host.clone(),
            command: command.to_string(),
            prefix: base64_encode(prefix),
            line: line.to_string(),
            tag: tag.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        match call(stream, &req, timeout + Duration::from_secs(5)) {
            Ok(r) if r.ok => {
                self.stats.execs += 1;
                self.stats.via_keeper = true;
                Ok(r.stdout)
            }
            Ok(r) => bail!("{}: {}", self.host, r.error),
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// Bind the keeper's socket. Whatever is at the path must be a stale socket
/// of ours that nobody answers on; anything else is refused.
fn bind(socket: &Path) -> Result<UnixListener> {
    if let Ok(md) = std::fs::symlink_metadata(socket) {
        if !md.file_type().is_socket() || md.uid() != euid() {
            bail!(
                "keeper: {} exists and is not a socket of ours; refusing to replace it",
                socket.display()
            );
        }
        if UnixStream::connect(socket).is_ok() {
            bail!(
                "keeper: another process answers on {}; refusing to take its place",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("keeper: cannot remove stale {}", socket.display()))?;
    }
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(socket);
    unsafe { libc::umask(old) };
    let listener =
        listener.with_context(|| format!("keeper: cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The keeper process: open the sessions, serve until bye, idle, or the
/// tether closes before it was handed over. `lock` is kept until the end.
pub fn serve(
    targets: &[Target],
    socket: &Path,
    idle: Duration,
    switch: &str,
    lock: Option<crate::state::lock::AppLock>,
    tether: Option<std::fs::File>,
) -> Result<()> {
    let _lock = lock;
    let bye = Arc::new(AtomicBool::new(false));
    if let Some(t) = tether {
        let b = bye.clone();
        std::thread::spawn(move || watch_tether(t, &b));
    }
    let mut sessions = BTreeMap::new();
    for (t, c) in targets.iter().zip(super::open_all(targets)) {
        match c {
            Ok(c) => {
                sessions.insert(t.name.clone(), Mutex::new(c));
            }
            // A host down now is reached directly by the phases, if at all.
            Err(e) => log::warn!("keeper: no session to {}: {e:#}", t.name),
        }
    }
    if sessions.is_empty() {
        bail!("keeper: could not connect to any host");
    }
    let sessions = Arc::new(sessions);
    let listener = bind(socket)?;
    listener.set_nonblocking(true)?;
    let last = Arc::new(AtomicU64::new(now_ms()));
    let switch = Arc::new(switch.to_string());
    log::info!(
        "keeper: serving {:?} on {} for switch {switch}",
        sessions.keys().collect::<Vec<_>>(),
        socket.display()
    );
    while !bye.load(Ordering::Relaxed) {
        if now_ms().saturating_sub(last.load(Ordering::Relaxed)) > idle.as_millis() as u64 {
            log::info!("keeper: idle for {:?}, exiting", idle);
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if peer(&stream).map(|p| p.0) != Some(euid()) {
                    log::warn!("keeper: refused a client of another user");
                    continue;
                }
                let (s, l, b, w) = (sessions.clone(), last.clone(), bye.clone(), switch.clone());
                std::thread::spawn(move || client(stream, &s, &l, &b, &w));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _ = std::fs::remove_file(socket);
    for (h, c) in sessions.iter() {
        let s = c.lock().unwrap_or_else(|e| e.into_inner()).stats;
        log::info!(
            "keeper: {h}: {} connection(s), {} command(s)",
            s.connections,
            s.execs
        );
    }
    Ok(())
}

/// Wait on the tether: a byte means the switch handed us over (we stay);
/// its closing first means the phase that started us ended without doing
/// so, and so do we.
fn watch_tether(mut tether: std::fs::File, bye: &AtomicBool) {
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut tether, &mut b) {
        Ok(1) => log::info!("keeper: handed over by stop; serving until start ends it"),
        _ => {
            log::warn!(
                "keeper: the phase that started it ended without handing it over; exiting (and \
                 letting go of the lock)"
            );
            bye.store(true, Ordering::Relaxed);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn client(
    stream: UnixStream,
    sessions: &BTreeMap<String, Mutex<Connection>>,
    last: &AtomicU64,
    bye: &AtomicBool,
    switch: &str,
) {
    let _ = stream.set_nonblocking(false);
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut out = stream;
    loop {
        let req: Request = match receive(&mut reader) {
            Ok(r) => r,
            Err(_) => return,
        };
        last.store(now_ms(), Ordering::Relaxed);
        let resp = match req {
            Request::Ping => Response {
                ok: true,
                hosts: sessions.keys().cloned().collect(),
                switch: Some(switch.to_string()),
                ..Response::default()
            },
            Request::Bye => {
                bye.store(true, Ordering::Relaxed);
                Response {
                    ok: true,
                    ..Response::default()
                }
            }
            Request::Exec {
                host,
                command,
                stdin,
                timeout_ms,
            } => run(sessions, &host, &command, &stdin, timeout_ms),
            Request::Ask {
                host,
                command,
                prefix,
                line,
                tag,
                timeout_ms,
            } => ask(sessions, &host, &command, &prefix, &line, &tag, timeout_ms),
        };
        last.store(now_ms(), Ordering::Relaxed);
        if send(&mut out, &resp).is_err() {
            return;
        }
    }
}

fn run(
    sessions: &BTreeMap<String, Mutex<Connection>>,
    host: &str,
    command: &str,
    stdin: &str,
    timeout_ms: u64,
) -> Response {
    let fail = |error: String, not_started: bool| Response {
        ok: false,
        error,
        not_started,
        ..Response::default()
    };
    let Some(m) = sessions.get(host) else {
        return fail(format!("keeper has no session to {host}"), true);
    };
    let Some(stdin) = base64_decode(stdin) else {
        return fail("bad stdin encoding".into(), true);
    };
    let mut conn = m.lock().unwrap_or_else(|e| e.into_inner());
    match conn.exec(command, &stdin, Duration::from_millis(timeout_ms)) {
        Ok(o) => Response {
            ok: true,
            status: o.status,
            signal: o.signal,
            stdout: base64_encode(&o.stdout),
            stderr: base64_encode(&o.stderr),
            timed_out_ms: o.timed_out.map(|d| d.as_millis() as u64),
            ..Response::default()
        },
        // Opening the channel failed: the command never ran.
        Err(e) => {
            let text = format!("{e:#}");
            let not_started = text.contains("open a channel") || text.contains("start the command");
            fail(text, not_started)
        }
    }
}

fn ask(
    sessions: &BTreeMap<String, Mutex<Connection>>,
    host: &str,
    command: &str,
    prefix: &str,
    line: &str,
    tag: &str,
    timeout_ms: u64,
) -> Response {
    let fail = |error: String| Response {
        ok: false,
        error,
        ..Response::default()
    };
    let Some(m) = sessions.get(host) else {
        return fail(format!("keeper has no session to {host}"));
    };
    let Some(prefix) = base64_decode(prefix) else {
        return fail("bad prefix encoding".into());
    };
    let mut conn = m.lock().unwrap_or_else(|e| e.into_inner());
    match conn.ask(
        command,
        &prefix,
        line,
        tag,
        Duration::from_millis(timeout_ms),
    ) {
        Ok(answer) => Response {
            ok: true,
            stdout: answer,
            ..Response::default()
        },
        Err(e) => fail(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir(name: &str) -> PathBuf {
        crate::state::tests::temp_dir(&format!("keeper-{name}"))
    }

    #[test]
    fn an_impostor_listening_on_the_socket_is_refused_before_anything_is_sent() {
        let d = dir("impostor");
        let sock = d.join("k.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let t = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut s, &mut buf);
                g.lock().unwrap().extend(buf);
            }
        });
        // We are the listener's process, but the switch recorded another pid.
        let k = KeeperRef {
            socket: sock.clone(),
            pid: std::process::id() + 1,
        };
        match connect(&k) {
            Err(Unavailable::Impostor(m)) => assert!(m.contains("not the session keeper"), "{m}"),
            Err(Unavailable::Absent(m)) => panic!("absent? {m}"),
            Ok(_) => panic!("connected to an impostor"),
        }
        let target = Target {
            name: "db1".into(),
            ssh_host: "db1".into(),
            ssh_ip: "127.0.0.1".into(),
            port: 1,
            user: "x".into(),
            options: Default::default(),
            connect_timeout: Duration::from_millis(100),
            own_known_hosts: None,
            keeper: None,
        };
        let mut e = KeeperExec::new(&k, &target);
        let err = e
            .exec("secret", b"password=x", Duration::from_secs(1))
            .unwrap_err();
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
        // wake the listener and check it received nothing
        drop(UnixStream::connect(&sock));
        t.join().unwrap();
        assert!(got.lock().unwrap().is_empty(), "the impostor got data");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_stale_socket_is_absent_and_a_plain_file_is_an_impostor() {
        let d = dir("stale");
        let sock = d.join("k.sock");
        drop(UnixListener::bind(&sock).unwrap());
        let k = KeeperRef {
            socket: sock.clone(),
            pid: 1,
        };
        assert!(matches!(connect(&k), Err(Unavailable::Absent(_))));
        // bind replaces a stale socket
        drop(bind(&sock).unwrap());
        std::fs::remove_file(&sock).unwrap();
        std::fs::write(&sock, "x").unwrap();
        assert!(matches!(connect(&k), Err(Unavailable::Impostor(_))));
        assert!(bind(&sock).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_keeper_is_an_orphan_only_with_its_journal_closed_and_its_spawner_gone() {
        use crate::state::journal::Entry;
        use std::os::unix::process::CommandExt;
        let d = dir("orphan");
        let state = StateDir::open(&d, "app1").unwrap();
        // the keeper's pid must be alive: ours stands in for it
        let owner = |spawner: Option<u32>| Owner {
            pid: std::process::id(),
            command: "keeper".into(),
            at: "now".into(),
            switch: Some("s1".into()),
            spawner,
        };
        let mut spawner = std::process::Command::new("sleep")
            .arg0("mha-helper")
            .arg("30")
            .spawn()
            .unwrap();
        let dead = u32::MAX - 1;
        assert!(orphan(&state, &owner(Some(dead))).is_some());
        assert!(orphan(&state, &owner(None)).is_some());
        // its spawner still runs: a stop still starting up
        // (just after exec, its command line reads empty for a moment)
        let until = Instant::now() + Duration::from_secs(5);
        while crate::state::lock::cmdline(spawner.id()).is_some_and(|c| c.is_empty())
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(orphan(&state, &owner(Some(spawner.id()))).is_none());
        // not a keeper
        let other = Owner {
            command: "switchover".into(),
            ..owner(Some(dead))
        };
        assert!(orphan(&state, &other).is_none());
        // its switch is still recorded: recover's, not an orphan
        let j = Journal::create(
            &state,
            Entry::Begin {
                id: "s1".into(),
                kind: crate::state::journal::Kind::Online,
                orig: "db1".into(),
                new: "db2".into(),
                at: "now".into(),
                pid: 1,
            },
        )
        .unwrap();
        assert!(orphan(&state, &owner(Some(dead))).is_none());
        j.close(&state, "completed").unwrap();
        assert!(orphan(&state, &owner(Some(dead))).is_some());
        let _ = spawner.kill();
        let _ = spawner.wait();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_live_listener_is_not_replaced() {
        let d = dir("live");
        let sock = d.join("k.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let e = bind(&sock).unwrap_err().to_string();
        assert!(e.contains("another process answers"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
