//! Running `masterha_master_switch` for one switch: its output streamed
//! (a spinner on a terminal, log lines otherwise) and kept, and the
//! operator's interrupt turned into a request that MHA stop.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::setup::Setup;
use crate::state::journal::SWITCH_ID_VAR;
use crate::state::StateDir;

/// What one masterha_master_switch run printed and returned.
pub struct SwitchRun {
    pub success: bool,
    /// How it ended, for people: `exit 1`, `killed by signal 9`.
    pub status: String,
    /// The signal that interrupted us while it ran, if one did.
    pub interrupted: Option<i32>,
    pub output: Vec<String>,
    pub log_file: PathBuf,
    pub elapsed: Duration,
}

/// The last interrupting signal this process received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// From here on, SIGINT, SIGTERM and SIGHUP do not end this process: they
/// are noted, and the running switch is stopped and settled instead.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a handler that only stores into an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal noted since `catch_signals`, if any.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Ask MHA to stop (it ends at its next step: while it waits for a hook it
/// ignores SIGINT, so the request is repeated every second).
fn stop_mha(child: &std::process::Child, last: &mut Option<Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        return;
    }
    if last.is_none() {
        log::warn!(
            "interrupted (signal {}): stopping MHA at its next step, then settling the cluster \
             (undone, or finished if the new master was already opened); interrupting again \
             changes nothing",
            interrupted().unwrap_or(0)
        );
    }
    // SAFETY: a signal to the MHA process we started and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    *last = Some(Instant::now());
}

/// Run masterha_master_switch with `args` for switch `id`, streaming its
/// output (and, on an interrupt, asking it to stop); keep the whole output
/// in the state directory.
pub fn run_switch(
    setup: &Setup,
    state: &StateDir,
    args: &[String],
    id: &str,
    what: &str,
) -> Result<SwitchRun> {
    let started = Instant::now();
    let manager_log = setup
        .mha
        .servers
        .first()
        .and_then(|s| s.manager_log.clone())
        .map(|p| {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, len)
        });
    let program = std::env::var("MHA_HELPER_MASTERHA_SWITCH")
        .unwrap_or_else(|_| "masterha_master_switch".into());
    log::info!("running {program} {}", args.join(" "));
    catch_signals();
    let mut child = Command::new(&program)
        .args(args)
        .env(SWITCH_ID_VAR, id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is mha4mysql-manager installed?)"))?;
    let mut output = follow(&mut child, what);
    let status = child.wait().context("waiting for masterha_master_switch")?;
    // With manager_log set, MHA writes its log there instead of stdout.
    if let Some((path, from)) = &manager_log {
        if let Ok(text) = std::fs::read(path) {
            let new = text.get(*from as usize..).unwrap_or_default();
            output.extend(String::from_utf8_lossy(new).lines().map(String::from));
        }
    }
    let log_file = state.switch_log(id);
    if let Err(e) = state.write(&log_file, (output.join("\n") + "\n").as_bytes()) {
        log::warn!("cannot keep MHA's output: {e:#}");
    }
    Ok(SwitchRun {
        success: status.success() && interrupted().is_none(),
        status: describe_status(status),
        interrupted: interrupted(),
        output,
        log_file,
        elapsed: started.elapsed(),
    })
}

/// Read what MHA prints (stdout and stderr, line by line) until it closes
/// both, showing it on the spinner and asking MHA to stop once an
/// interrupt has come.
fn follow(child: &mut std::process::Child, what: &str) -> Vec<String> {
    let (tx, rx) = mpsc::channel::<String>();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    let readers: Vec<_> = streams
        .into_iter()
        .flatten()
        .map(|stream| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let bar = crate::logger::spinner(std::io::stderr().is_terminal(), what);
    let mut output = Vec::new();
    let mut asked: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                log::debug!("mha: {line}");
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "{what}: {}",
                        line.chars().take(100).collect::<String>()
                    ));
                }
                output.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if interrupted().is_some() && matches!(child.try_wait(), Ok(None)) {
            stop_mha(child, &mut asked);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
        crate::logger::set_progress(None);
    }
    output
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}
