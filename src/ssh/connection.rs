//! One libssh2 session to a database host and the commands run on it.
//!
//! Sessions are opened in parallel (one thread per host), each with its own
//! connect timeout, and then each session is used by one thread at a time
//! (libssh2 sessions must not be shared between threads). A command runs on
//! its own channel with a non-blocking loop that feeds stdin and drains
//! stdout and stderr together, so neither side can fill a pipe and stall.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ssh2::{BlockDirections, Session};

use super::login::{login, tcp_connect};
pub use super::target::{KeeperRef, Target};

/// What one remote command did.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: i32,
    /// Set when the command was killed by a signal (libssh2 then reports
    /// exit status 0).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Set when the deadline passed first: the channel was closed after
    /// this long, stdout and stderr hold what had arrived, and the command
    /// may still be running on the host.
    pub timed_out: Option<Duration>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none() && self.timed_out.is_none()
    }

    /// An error when the command timed out.
    pub fn check_timeout(self, host: &str) -> Result<Output> {
        match self.timed_out {
            Some(d) => bail!(
                "{host}: the command timed out after {:.1} s (raise step_timeout if the host is just slow)",
                d.as_secs_f64()
            ),
            None => Ok(self),
        }
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Something that runs a shell command on one host: a real SSH connection,
/// or a scripted fake in unit tests.
pub trait Exec: Send {
    fn host(&self) -> &str;
    fn exec(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Output>;
    /// Connection counters, when the transport keeps them.
    fn stats(&self) -> Option<Stats> {
        None
    }

    /// Ask a long-lived process one question: `command` is started once
    /// (with `prefix` as the first bytes of its stdin) and kept running
    /// between calls; `line` is written to it and the first output line
    /// starting with `tag` is the answer. For the read-only proof, where
    /// starting a client per question would be most of the cost. A
    /// transport may not keep processes: the caller then asks another way.
    fn ask(
        &mut self,
        _command: &str,
        _prefix: &[u8],
        _line: &str,
        _tag: &str,
        _timeout: Duration,
    ) -> Result<String> {
        bail!("{}: this transport keeps no processes", self.host())
    }
}

/// Counters a benchmark or a report can show.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub connections: u32,
    pub execs: u32,
    pub connect_ms: u64,
    /// Commands went through the session keeper's connection.
    pub via_keeper: bool,
}

/// An open, authenticated session to one host.
pub struct Connection {
    name: String,
    session: Session,
    stream_fd: i32,
    /// The socket the session runs over (to the host, or to the thread
    /// that carries it through a jump host), kept open with it.
    _stream: Box<dyn AsRawFd + Send>,
    keepalive: bool,
    /// The process kept running for `ask`, with the key of how it was
    /// started.
    kept: Option<(u64, ssh2::Channel)>,
    pub stats: Stats,
}

impl Connection {
    /// Connect, verify the host key, authenticate. Errors name the host and
    /// say what to check.
    pub fn open(t: &Target) -> Result<Connection> {
        let started = Instant::now();
        let attempts = t.options.connection_attempts.unwrap_or(1).max(1);
        let mut last_err = None;
        for attempt in 1..=attempts {
            match Self::open_once(t) {
                Ok(mut c) => {
                    c.stats.connect_ms = started.elapsed().as_millis() as u64;
                    return Ok(c);
                }
                Err(e) => {
                    log::debug!("{}: ssh attempt {attempt}/{attempts} failed: {e:#}", t.name);
                    last_err = Some(e);
                    if attempt < attempts {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no attempt made")))
    }

    fn open_once(t: &Target) -> Result<Connection> {
        let timeout = t.options.connect_timeout.unwrap_or(t.connect_timeout);
        let (stream, session): (Box<dyn AsRawFd + Send>, Session) = match &t.options.jump {
            Some(jump) => {
                let local = super::jump::open(t, jump, timeout)?;
                let session = login(t, local.try_clone()?, timeout)?;
                (Box::new(local), session)
            }
            None => {
                let stream = tcp_connect(&t.ssh_ip, t.port, timeout).with_context(|| {
                    format!(
                        "{}: cannot reach sshd at {}:{} (is the host up and sshd running?)",
                        t.name, t.ssh_ip, t.port
                    )
                })?;
                stream.set_nodelay(true).ok();
                let session = login(t, stream.try_clone()?, timeout)?;
                (Box::new(stream), session)
            }
        };
        if let Some(interval) = t.options.server_alive_interval.filter(|i| *i > 0) {
            session.set_keepalive(true, interval);
        }
        let keepalive = t.options.server_alive_interval.unwrap_or(0) > 0;
        Ok(Connection {
            name: t.name.clone(),
            stream_fd: stream.as_raw_fd(),
            _stream: stream,
            session,
            keepalive,
            kept: None,
            stats: Stats {
                connections: 1,
                ..Stats::default()
            },
        })
    }

    /// Wait until the socket can make progress in the direction libssh2
    /// is blocked on, or until `limit`.
    fn wait_socket(&self, limit: Duration) {
        let events = match self.session.block_directions() {
            BlockDirections::Inbound => libc::POLLIN,
            BlockDirections::Outbound => libc::POLLOUT,
            BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
            BlockDirections::None => libc::POLLIN,
        };
        let mut pfd = libc::pollfd {
            fd: self.stream_fd,
            events,
            revents: 0,
        };
        let ms = limit.as_millis().clamp(1, 100) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(&mut pfd, 1, ms);
        }
    }
}

impl Drop for Connection {
    /// libssh2 says goodbye to the server when the session is freed, in
    /// blocking mode: over a cut link that would wait for TCP to give up
    /// (minutes). Bound it.
    fn drop(&mut self) {
        self.session.set_timeout(500);
    }
}

impl Exec for Connection {
    fn host(&self) -> &str {
        &self.name
    }

    fn exec(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Output> {
        self.stats.execs += 1;
        let started = Instant::now();
        self.session.set_blocking(false);
        let result = self.exec_nonblocking(command, stdin, started, timeout);
        self.session.set_blocking(true);
        result.with_context(|| format!("{}: remote command failed", self.name))
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
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (command, prefix).hash(&mut h);
        let key = h.finish();
        let deadline = Instant::now() + timeout;
        self.session.set_blocking(false);
        let result = self.ask_nonblocking(key, command, prefix, line, tag, deadline);
        if result.is_err() {
            if let Some((_, mut c)) = self.kept.take() {
                let _ = c.close();
            }
        }
        self.session.set_blocking(true);
        result.with_context(|| format!("{}: kept client", self.name))
    }
}

impl Connection {
    fn ask_nonblocking(
        &mut self,
        key: u64,
        command: &str,
        prefix: &[u8],
        line: &str,
        tag: &str,
        deadline: Instant,
    ) -> Result<String> {
        if self.kept.as_ref().map(|k| k.0) != Some(key) {
            if let Some((_, mut c)) = self.kept.take() {
                let _ = c.close();
            }
            let mut channel = self.retry(deadline, "open a channel", || {
                self.session.channel_session()
            })?;
            self.retry(deadline, "start the command", || channel.exec(command))?;
            self.stats.execs += 1;
            self.write_all(&mut channel, prefix, deadline)?;
            self.kept = Some((key, channel));
        }
        let (_, mut channel) = self.kept.take().expect("kept above");
        let answer = (|| {
            self.write_all(&mut channel, line.as_bytes(), deadline)?;
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let mut progress = false;
                match channel.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        out.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("reading the kept client's output"),
                }
                match channel.stderr().read(&mut buf) {
                    Ok(n) if n > 0 => {
                        err.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    _ => {}
                }
                let text = String::from_utf8_lossy(&out);
                if let Some(l) = text.lines().find(|l| l.starts_with(tag)) {
                    return Ok(l.to_string());
                }
                if channel.eof() && !progress {
                    bail!(
                        "the kept client ended: {}",
                        String::from_utf8_lossy(&err).trim()
                    );
                }
                if Instant::now() >= deadline {
                    bail!("no answer in time");
                }
                if !progress {
                    self.wait_socket(deadline.saturating_duration_since(Instant::now()));
                }
            }
        })();
        if answer.is_ok() {
            self.kept = Some((key, channel));
        } else {
            let _ = channel.close();
        }
        answer
    }

    fn write_all(&self, channel: &mut ssh2::Channel, data: &[u8], deadline: Instant) -> Result<()> {
        let mut written = 0;
        while written < data.len() {
            match channel.write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        bail!("timed out writing to the command");
                    }
                    self.wait_socket(deadline.saturating_duration_since(Instant::now()));
                }
                Err(e) => return Err(e).context("writing to the command"),
            }
        }
        let _ = channel.flush();
        Ok(())
    }
    fn exec_nonblocking(
        &self,
        command: &str,
        stdin: &[u8],
        started: Instant,
        timeout: Duration,
    ) -> Result<Output> {
        let deadline = started + timeout;
        let mut channel = self.retry(deadline, "open a channel", || {
            self.session.channel_session()
        })?;
        self.retry(deadline, "start the command", || channel.exec(command))?;
        let mut out = Output::default();
        let mut written = 0;
        let mut eof_sent = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_keepalive = Instant::now();
        loop {
            let mut progress = false;
            if written < stdin.len() {
                match channel.write(&stdin[written..]) {
                    Ok(n) => {
                        written += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The command stopped reading (it exited early, e.g.
                    // on an SQL error): keep collecting its output.
                    Err(_) if channel.eof() => {
                        written = stdin.len();
                        eof_sent = true;
                    }
                    Err(e) => return Err(e).context("writing the command's input"),
                }
            } else if !eof_sent {
                match channel.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                    Err(e) if is_would_block(&e) => {}
                    Err(e) => return Err(e).context("closing the command's input"),
                }
            }
            match channel.read(&mut buf) {
                Ok(n) if n > 0 => {
                    out.stdout.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("reading the command's output"),
            }
            match channel.stderr().read(&mut buf) {
                Ok(n) if n > 0 => {
                    out.stderr.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("reading the command's errors"),
            }
            if channel.eof() && !progress {
                break;
            }
            if Instant::now() >= deadline {
                // Closing the channel does not stop the command: the caller
                // stops it on the host (see `mysql::run`) before going on.
                let _ = channel.close();
                out.timed_out = Some(started.elapsed());
                return Ok(out);
            }
            if !progress {
                if self.keepalive && last_keepalive.elapsed() > Duration::from_secs(1) {
                    let _ = self.session.keepalive_send();
                    last_keepalive = Instant::now();
                }
                self.wait_socket(deadline.saturating_duration_since(Instant::now()));
            }
        }
        self.retry(deadline, "close the channel", || channel.close())?;
        self.retry(deadline, "wait for the channel to close", || {
            channel.wait_close()
        })?;
        out.status = channel.exit_status().unwrap_or(-1);
        out.signal = channel
            .exit_signal()
            .ok()
            .and_then(|s| s.exit_signal)
            .filter(|s| !s.is_empty());
        Ok(out)
    }

    /// Repeat a libssh2 call that may say "would block" until it completes
    /// or the deadline passes.
    fn retry<T>(
        &self,
        deadline: Instant,
        what: &str,
        mut f: impl FnMut() -> std::result::Result<T, ssh2::Error>,
    ) -> Result<T> {
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if is_would_block(&e) => {
                    if Instant::now() >= deadline {
                        bail!("timed out trying to {what}");
                    }
                    self.wait_socket(deadline.saturating_duration_since(Instant::now()));
                }
                Err(e) => return Err(anyhow!("cannot {what}: {e}")),
            }
        }
    }
}

fn is_would_block(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-37))
}

/// Open sessions to all targets at once; one result per target, in order.
pub fn open_all(targets: &[Target]) -> Vec<Result<Connection>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| s.spawn(move || Connection::open(t)))
            .collect();
        handles
            .into_iter()
            .zip(targets)
            .map(|(h, t)| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("{}: SSH connect thread panicked", t.name)))
            })
            .collect()
    })
}
