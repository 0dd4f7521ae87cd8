//! Writability watchdog: while a test holds the lab, fail it if two hosts
//! are ever writable at once.
//!
//! "At most one writable host" is the one property a master switch must
//! never break, and a test's own before/after checks cannot see a moment
//! in the middle. So one client per db host (`scripts/lab client`: the host's
//! own client, root over the host's socket, autocommit `SELECT @@GLOBAL.read_only` only: no transaction, no
//! lock, no application account) reads `read_only` every [`PERIOD`], the
//! hosts staggered so their readings interleave round-robin.
//!
//! Readings are sequential, so two writable readings of different hosts
//! prove nothing on their own. The proof used: host X reads writable at two
//! consecutive readings, and another host Y reads writable in a reading
//! wholly between them (sent after X's first answer, answered before X's
//! second query). The only assumption is that X does not flip twice within
//! one period.
//!
//! A failed, timed-out or garbled reading is unknown: never writable, and it
//! breaks the chain of consecutive readings. The client does not reconnect
//! in batch mode (after `kill-mysql` it answers "Server has gone away" to
//! every query, even once the server is back, `--reconnect` or not), so
//! after any unknown reading the client is ended and a new one started for
//! the next slot. A restarted server therefore always leaves an unknown
//! reading behind and can never join two readings into a proof.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two readings of the same host.
pub const PERIOD: Duration = Duration::from_millis(20);
/// A reading not answered within this is unknown.
const TIMEOUT: Duration = Duration::from_millis(500);

/// One reading of one host; times in ms since the watchdog started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Just before the query was written.
    pub sent: f64,
    /// When its answer (or the failure) came back.
    pub got: f64,
    /// `Some(true)`: read_only = 0; `Some(false)`: 1; `None`: unknown.
    pub writable: Option<bool>,
}

/// Every proof that two hosts were writable at once, grouped into one line
/// per pair of hosts and stretch of time. `hosts` holds each host's
/// readings in the order they were taken.
pub fn violations(hosts: &[(String, Vec<Reading>)]) -> Vec<String> {
    struct Proof {
        x: usize,
        y: usize,
        x1: Reading,
        x2: Reading,
        yr: Reading,
    }
    let mut proofs = Vec::new();
    for (x, (_, xs)) in hosts.iter().enumerate() {
        for w in xs.windows(2) {
            let (x1, x2) = (w[0], w[1]);
            if x1.writable != Some(true) || x2.writable != Some(true) {
                continue;
            }
            for (y, (_, ys)) in hosts.iter().enumerate() {
                if y == x {
                    continue;
                }
                // one host's readings are sequential: sent and got both rise
                let from = ys.partition_point(|r| r.sent <= x1.got);
                for yr in ys[from..].iter().take_while(|r| r.got < x2.sent) {
                    if yr.writable == Some(true) {
                        proofs.push(Proof {
                            x,
                            y,
                            x1,
                            x2,
                            yr: *yr,
                        });
                    }
                }
            }
        }
    }
    proofs.sort_by(|a, b| a.yr.sent.total_cmp(&b.yr.sent));

    // proofs of one pair less than a few periods apart are one stretch
    struct Stretch {
        pair: (usize, usize),
        from: f64,
        to: f64,
        proofs: usize,
        first: Proof,
    }
    let gap = 3.0 * PERIOD.as_secs_f64() * 1000.0;
    let mut stretches: Vec<Stretch> = Vec::new();
    for p in proofs {
        let pair = (p.x.min(p.y), p.x.max(p.y));
        match stretches
            .iter_mut()
            .rev()
            .find(|s| s.pair == pair && p.yr.sent <= s.to + gap)
        {
            Some(s) => {
                s.to = s.to.max(p.yr.got);
                s.proofs += 1;
            }
            None => stretches.push(Stretch {
                pair,
                from: p.yr.sent,
                to: p.yr.got,
                proofs: 1,
                first: p,
            }),
        }
    }
    let name = |i: usize| hosts[i].0.as_str();
    stretches
        .into_iter()
        .map(|s| {
            let p = &s.first;
            format!(
                "{} and {} writable at once between {:.1} and {:.1} ms ({} proofs; \
                 first: {} writable at {:.1} and {:.1} ms, {} writable at {:.1}-{:.1} ms)",
                name(s.pair.0),
                name(s.pair.1),
                s.from,
                s.to,
                s.proofs,
                name(p.x),
                p.x1.got,
                p.x2.sent,
                name(p.y),
                p.yr.sent,
                p.yr.got
            )
        })
        .collect()
}

struct Shared {
    /// Per host, in the order of `Watchdog::hosts`.
    readings: Mutex<Vec<Vec<Reading>>>,
    allowed: Mutex<Option<String>>,
}

/// The running watchdog; [`Watchdog::stop`] ends it (also on drop).
pub struct Watchdog {
    hosts: Vec<String>,
    start: Instant,
    stopped_at: Option<Instant>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Watchdog {
    /// Start sampling `hosts`, each through `lab client HOST` (`lab` is
    /// the lab script).
    pub fn start(lab: &std::path::Path, hosts: &[String]) -> Watchdog {
        let start = Instant::now();
        let shared = Arc::new(Shared {
            readings: Mutex::new(vec![Vec::new(); hosts.len()]),
            allowed: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let n = hosts.len() as u32;
        let threads = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let (host, lab) = (host.clone(), lab.to_path_buf());
                let (shared, stop) = (shared.clone(), stop.clone());
                let first = start + PERIOD * i as u32 / n;
                std::thread::spawn(move || sample(i, &host, &lab, first, start, &shared, &stop))
            })
            .collect();
        Watchdog {
            hosts: hosts.to_vec(),
            start,
            stopped_at: None,
            shared,
            stop,
            threads,
        }
    }

    /// Stop sampling and wait for the samplers (at most about TIMEOUT plus
    /// the client's exit). Safe to call twice.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stopped_at.get_or_insert_with(Instant::now);
    }

    fn all(&self) -> Vec<(String, Vec<Reading>)> {
        let r = self
            .shared
            .readings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.hosts.iter().cloned().zip(r.iter().cloned()).collect()
    }

    /// Readings of `host` so far.
    pub fn readings(&self, host: &str) -> Vec<Reading> {
        self.all()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("watchdog: no host {host}"))
    }

    /// Answered readings of `host` so far.
    pub fn samples_of(&self, host: &str) -> u64 {
        self.readings(host)
            .iter()
            .filter(|r| r.writable.is_some())
            .count() as u64
    }

    /// Answered readings of all hosts so far.
    pub fn samples(&self) -> u64 {
        self.all()
            .iter()
            .flat_map(|(_, r)| r)
            .filter(|r| r.writable.is_some())
            .count() as u64
    }

    /// Violations found so far (see [`violations`]).
    pub fn violations(&self) -> Vec<String> {
        violations(&self.all())
    }

    /// From now on violations are still recorded but do not fail the test.
    pub fn allow_two_writable(&self, reason: &str) {
        *self
            .shared
            .allowed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    }

    pub fn allowed(&self) -> Option<String> {
        self.shared
            .allowed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Time sampled so far (until `stop`).
    pub fn elapsed(&self) -> Duration {
        self.stopped_at
            .unwrap_or_else(Instant::now)
            .duration_since(self.start)
    }

    /// One line: answered and unknown readings per host, and the rate.
    pub fn summary(&self) -> String {
        let secs = self.elapsed().as_secs_f64();
        let hosts: Vec<String> = self
            .all()
            .iter()
            .map(|(h, r)| {
                let ok = r.iter().filter(|r| r.writable.is_some()).count();
                format!(
                    "{h} {ok} ({:.1}/s, {} unknown)",
                    ok as f64 / secs.max(0.001),
                    r.len() - ok
                )
            })
            .collect();
        format!(
            "watchdog: {} samples in {secs:.2} s: {}",
            self.samples(),
            hosts.join(", ")
        )
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One host's sampler: a reading in each of its slots (`first` + k *
/// PERIOD), a missed slot skipped, a new client after any unknown reading.
fn sample(
    i: usize,
    host: &str,
    lab: &std::path::Path,
    first: Instant,
    start: Instant,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let ms = |t: Instant| t.duration_since(start).as_secs_f64() * 1000.0;
    let mut client: Option<Client> = None;
    let mut next = first;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(PERIOD));
            continue;
        }
        while next <= now {
            next += PERIOD;
        }
        if client.is_none() {
            client = Client::start(lab, host).ok();
        }
        seq += 1;
        let sent = Instant::now();
        let writable = client.as_mut().and_then(|c| c.ask(host, seq));
        let got = Instant::now();
        shared.readings.lock().unwrap_or_else(|e| e.into_inner())[i].push(Reading {
            sent: ms(sent),
            got: ms(got),
            writable,
        });
        if writable.is_none() {
            if let Some(c) = client.take() {
                c.end(false);
            }
        }
    }
    if let Some(c) = client {
        c.end(true);
    }
}

enum Line {
    Out(String),
    Err,
}

/// The host's client reading queries on stdin; its stdout and stderr lines
/// arrive on one channel.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Line>,
}

impl Client {
    fn start(lab: &std::path::Path, host: &str) -> std::io::Result<Client> {
        // `lab client` execs into the client: the child is the client.
        let mut child = Command::new(lab)
            .args(["client", host])
            .args(["--batch", "--skip-column-names", "--unbuffered", "--force"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let tx2 = tx.clone();
        // Both end at EOF, that is when the client exits.
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(Line::Out(l)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Line::Err);
        });
        std::thread::spawn(move || {
            for _ in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(Line::Err).is_err() {
                    return;
                }
            }
        });
        Ok(Client {
            child,
            stdin,
            lines,
        })
    }

    /// One tagged reading: Some(writable), or None for any failure,
    /// an error message or no answer within TIMEOUT.
    fn ask(&mut self, host: &str, seq: u64) -> Option<bool> {
        let q = format!("SELECT '{host}', {seq}, @@GLOBAL.read_only;\n");
        self.stdin.write_all(q.as_bytes()).ok()?;
        let want = format!("{host}\t{seq}\t");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left).ok()? {
                Line::Out(l) => match l.strip_prefix(&want) {
                    Some("0") => return Some(true),
                    Some("1") => return Some(false),
                    Some(_) => return None,
                    None => continue, // an answer to an older query
                },
                Line::Err => return None,
            }
        }
    }

    /// End the client: `gently` closes its stdin and gives it a moment to
    /// quit; otherwise (or after that) it is killed. Only our own child.
    fn end(self, gently: bool) {
        let Client {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if gently {
            let end = Instant::now() + Duration::from_millis(300);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
