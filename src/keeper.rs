//! The session keeper: one SSH session per host for a whole switch.
//!
//! MHA runs `stop` and `start` as two processes, and `start` runs inside the
//! write outage, where opening fresh SSH sessions (~30 ms per host) would
//! lengthen it. So `stop` starts a small detached process, `mha-helper
//! keeper`, that opens the sessions to both masters once and serves remote
//! commands over a Unix socket (mode 0600, peer uid checked) next to the
//! journal; both phases send their commands through it, and `start` ends it.
//! It exits by itself after `idle` without requests. Whenever it is missing
//! or fails before a command starts, the phases fall back to their own direct
//! sessions, so the keeper only ever makes a switch faster, never possible or
//! impossible. Each session is used by one thread at a time (a mutex per
//! host), never concurrently.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::HostSpec;
use crate::ssh::known_hosts::{base64_decode, base64_encode};
use crate::ssh::{self, Connection, Exec, Output, Stats, Target};

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
    hosts: Vec<String>,
}

/// Where the keeper of application `app` listens.
pub fn socket_path(journal: &Path) -> PathBuf {
    journal.with_extension("keeper.sock")
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

/// Start a keeper for `hosts` (detached, its own session id, no stdio of
/// ours) and wait until it answers; its log goes to `<socket>.log`.
pub fn spawn(
    paths: &crate::setup::ConfigPaths,
    socket: &Path,
    hosts: &[&str],
    idle: Duration,
) -> Result<()> {
    if socket.as_os_str().len() > 100 {
        bail!(
            "socket path {} is too long for a Unix socket",
            socket.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(socket.with_extension("log"))
        .context("cannot open the keeper log")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("keeper");
    if let Some(c) = &paths.conf {
        cmd.arg("--conf").arg(c);
    }
    if let Some(h) = &paths.helper {
        cmd.arg("--helper-conf").arg(h);
    }
    if let Some(g) = &paths.global {
        cmd.arg("--global-conf").arg(g);
    }
    cmd.arg("--socket")
        .arg(socket)
        .arg("--idle-secs")
        .arg(idle.as_secs().to_string())
        .arg("--hosts")
        .arg(hosts.join(","))
        .env_remove(crate::fault::VAR)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the keeper from
    // MHA's process group so nothing MHA does to its group reaches it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the session keeper")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the session keeper exited at once ({status}); see {}",
                socket.with_extension("log").display()
            );
        }
        if let Ok(mut s) = UnixStream::connect(socket) {
            if let Ok(r) = call(&mut s, &Request::Ping, Duration::from_secs(2)) {
                if r.ok && hosts.iter().all(|h| r.hosts.iter().any(|k| k == h)) {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    bail!("the session keeper did not answer within 10 s")
}

/// Whether a keeper answers at `socket` and holds sessions to all `hosts`.
pub fn available(socket: &Path, hosts: &[&str]) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    matches!(call(&mut s, &Request::Ping, Duration::from_secs(2)),
        Ok(r) if r.ok && hosts.iter().all(|h| r.hosts.iter().any(|k| k == h)))
}

/// Ask the keeper to end (its sessions close). Quiet when there is none.
pub fn stop(socket: &Path) {
    if let Ok(mut s) = UnixStream::connect(socket) {
        let _ = call(&mut s, &Request::Bye, Duration::from_secs(2));
    }
}

/// Ends the keeper when dropped, unless `keep` was called (the stop phase
/// keeps it for start only when it succeeded).
pub struct Guard {
    socket: Option<PathBuf>,
}

impl Guard {
    pub fn new(socket: &Path) -> Guard {
        Guard {
            socket: Some(socket.to_path_buf()),
        }
    }
    pub fn keep(mut self) {
        self.socket = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(s) = &self.socket {
            stop(s);
        }
    }
}

/// Runs commands through the keeper; falls back to a direct SSH session
/// of its own when the keeper cannot start the command.
pub struct KeeperExec {
    host: String,
    socket: PathBuf,
    stream: Option<UnixStream>,
    target: Target,
    direct: Option<Connection>,
    stats: Stats,
}

impl KeeperExec {
    pub fn new(socket: &Path, spec: &HostSpec) -> KeeperExec {
        KeeperExec {
            host: spec.name.clone(),
            socket: socket.to_path_buf(),
            stream: None,
            target: spec.target.clone(),
            direct: None,
            stats: Stats::default(),
        }
    }

    fn via_keeper(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Response> {
        if self.stream.is_none() {
            self.stream = Some(UnixStream::connect(&self.socket)?);
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
                    });
                }
                Ok(r) if !r.not_started => bail!("{}: {}", self.host, r.error),
                Ok(r) => log::debug!(
                    "{}: keeper could not run the command ({}); going direct",
                    self.host,
                    r.error
                ),
                Err(e) if self.stream.is_some() => {
                    // The request may have reached the host: do not repeat it.
                    self.stream = None;
                    return Err(e.context(format!(
                        "{}: lost the session keeper mid-command",
                        self.host
                    )));
                }
                Err(e) => log::debug!("{}: no session keeper ({e:#}); going direct", self.host),
            }
            self.stream = None;
            self.direct = Some(Connection::open(&self.target)?);
        }
        let d = self.direct.as_mut().expect("opened above");
        let out = d.exec(command, stdin, timeout);
        self.stats.connections = d.stats.connections;
        self.stats.connect_ms = d.stats.connect_ms;
        self.stats.execs += 1;
        out
    }

    fn stats(&self) -> Option<Stats> {
        Some(self.stats)
    }
}

/// The keeper process: open the sessions, serve until bye or idle.
pub fn serve(specs: Vec<HostSpec>, socket: &Path, idle: Duration) -> Result<()> {
    let targets: Vec<Target> = specs.iter().map(|s| s.target.clone()).collect();
    let mut sessions = BTreeMap::new();
    for (t, c) in targets.iter().zip(ssh::open_all(&targets)) {
        let c = c.with_context(|| format!("keeper: cannot connect to {}", t.name))?;
        sessions.insert(t.name.clone(), Mutex::new(c));
    }
    let sessions = Arc::new(sessions);
    let _ = std::fs::remove_file(socket);
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(socket);
    unsafe { libc::umask(old) };
    let listener =
        listener.with_context(|| format!("keeper: cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let last = Arc::new(AtomicU64::new(now_ms()));
    let bye = Arc::new(std::sync::atomic::AtomicBool::new(false));
    log::info!(
        "keeper: serving {:?} on {}",
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
                if !same_user(&stream) {
                    log::warn!("keeper: refused a client of another user");
                    continue;
                }
                let (s, l, b) = (sessions.clone(), last.clone(), bye.clone());
                std::thread::spawn(move || client(stream, &s, &l, &b));
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn same_user(stream: &UnixStream) -> bool {
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
    rc == 0 && cred.uid == unsafe { libc::geteuid() }
}

fn client(
    stream: UnixStream,
    sessions: &BTreeMap<String, Mutex<Connection>>,
    last: &AtomicU64,
    bye: &std::sync::atomic::AtomicBool,
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

/// Entry point of the hidden `mha-helper keeper` command.
pub fn main(
    paths: &crate::setup::ConfigPaths,
    hosts: &str,
    socket: &Path,
    idle: Duration,
) -> Result<crate::exit::Code> {
    let setup = paths.load()?;
    let names: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if names.is_empty() {
        return Err(anyhow!("keeper: no hosts"));
    }
    let specs = crate::cluster::specs(&setup.mha, &setup.helper, &names)?;
    serve(specs, socket, idle)?;
    Ok(crate::exit::Code::Ok)
}
