//! Notifications: one [`Event`] sent to every configured sink (mail,
//! webhook, command; `notify_*` in helper.cnf). Each sink runs on a thread
//! of its own with a budget of `notify_timeout` for all its attempts, so a
//! sink that is down or hangs costs at most that, and never stops the
//! others. A failed sink is logged and reported; nothing here fails a
//! switch.

pub mod alert;
mod command;
pub mod event;
pub mod report_script;
mod smtp;
mod webhook;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use event::Event;

use crate::config::notify::NotifySettings;

/// What became of one sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub sink: String,
    pub ok: bool,
    pub attempts: u32,
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One place a notification goes.
trait Sink: Send {
    /// `mail to a@x, b@y`, `webhook https://...`, `command ...`: for logs.
    fn describe(&self) -> String;
    /// One attempt, given at most `timeout`.
    fn deliver(&self, event: &Event, timeout: Duration) -> Result<()>;
}

/// Every configured sink, or why it cannot be used (a secret file that may
/// not be read, say): one sink's problem never keeps the others from sending.
fn sinks(n: &NotifySettings) -> Vec<(String, Result<Box<dyn Sink>>)> {
    let mut out: Vec<(String, Result<Box<dyn Sink>>)> = Vec::new();
    if n.smtp_server.is_some() {
        let mail = smtp::Mail::new(n).map(|m| Box::new(m) as Box<dyn Sink>);
        out.push(("mail".into(), mail));
    }
    if n.webhook_url.is_some() {
        let hook = webhook::Webhook::new(n).map(|w| Box::new(w) as Box<dyn Sink>);
        out.push(("webhook".into(), hook));
    }
    if let Some(c) = &n.command {
        out.push(("command".into(), Ok(Box::new(command::Command::new(c)))));
    }
    out
}

/// Pause before retry `n` (1-based): 0.5 s, 1 s, 2 s, ...
fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64 << (n - 1).min(6))
}

/// Attempts of one sink within `budget`: a failed attempt is tried again
/// after a pause while retries and budget last.
fn run_sink(sink: &dyn Sink, event: &Event, budget: Duration, retries: u32) -> Delivery {
    let started = Instant::now();
    let deadline = started + budget;
    let mut attempts = 0;
    let mut last: Option<String>;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        match sink.deliver(event, left) {
            Ok(()) => {
                return Delivery {
                    sink: sink.describe(),
                    ok: true,
                    attempts,
                    ms: started.elapsed().as_millis() as u64,
                    error: None,
                }
            }
            Err(e) => last = Some(format!("{e:#}")),
        }
        let pause = backoff(attempts);
        let left = deadline.saturating_duration_since(Instant::now());
        if attempts > retries || left <= pause + Duration::from_millis(100) {
            break;
        }
        log::warn!(
            "{}: attempt {attempts} failed: {}; trying again in {} ms",
            sink.describe(),
            last.as_deref().unwrap_or(""),
            pause.as_millis()
        );
        std::thread::sleep(pause);
    }
    Delivery {
        sink: sink.describe(),
        ok: false,
        attempts,
        ms: started.elapsed().as_millis() as u64,
        error: last,
    }
}

/// Send `event` to every configured sink, in parallel; wait at most the
/// budget (plus a moment). An empty list when no sink is configured.
pub fn send(event: &Event, n: &NotifySettings) -> Vec<Delivery> {
    let (tx, rx) = mpsc::channel();
    let mut pending = Vec::new();
    for (i, (name, sink)) in sinks(n).into_iter().enumerate() {
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                // Reported at once, as a delivery that failed.
                pending.push(name.clone());
                let _ = tx.send((
                    i,
                    Delivery {
                        sink: name,
                        ok: false,
                        attempts: 0,
                        ms: 0,
                        error: Some(format!("{e:#}")),
                    },
                ));
                continue;
            }
        };
        pending.push(sink.describe());
        let (tx, event, budget, retries) = (tx.clone(), event.clone(), n.timeout, n.retries);
        std::thread::spawn(move || {
            let d = run_sink(sink.as_ref(), &event, budget, retries);
            let _ = tx.send((i, d));
        });
    }
    drop(tx);
    let deadline = Instant::now() + n.timeout + Duration::from_millis(500);
    let mut got: Vec<Option<Delivery>> = vec![None; pending.len()];
    while got.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, d)) => got[i] = Some(d),
            Err(_) => break,
        }
    }
    let out: Vec<Delivery> = got
        .into_iter()
        .zip(pending)
        .map(|(d, sink)| {
            d.unwrap_or(Delivery {
                sink,
                ok: false,
                attempts: 1,
                ms: n.timeout.as_millis() as u64,
                error: Some(format!(
                    "no answer within notify_timeout ({} s)",
                    n.timeout.as_secs_f64()
                )),
            })
        })
        .collect();
    for d in &out {
        if d.ok {
            log::info!("notified: {} ({} ms)", d.sink, d.ms);
        } else {
            log::error!(
                "notification failed: {}: {} (after {} attempt(s), {} ms)",
                d.sink,
                d.error.as_deref().unwrap_or("?"),
                d.attempts,
                d.ms
            );
        }
    }
    out
}

/// A secret from a file only this user may read (the SMTP password, the
/// webhook token): its first line.
pub fn read_secret(path: &Path, what: &str) -> Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let md = f.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !md.is_file() || md.uid() != me || md.mode() & 0o077 != 0 {
        bail!(
            "{} ({what}): must be a regular file of uid {me} that only it may read (mode {:o} now); \
             chown it and chmod 600 it",
            path.display(),
            md.mode() & 0o7777
        );
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let secret = text.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        bail!("{} ({what}) is empty", path.display());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    struct Flaky {
        fails: u32,
        calls: Arc<AtomicU32>,
        hang: Option<Duration>,
    }

    impl Sink for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn deliver(&self, _: &Event, timeout: Duration) -> Result<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(h) = self.hang {
                std::thread::sleep(h.min(timeout));
                bail!("timed out after {} ms", h.min(timeout).as_millis());
            }
            if n <= self.fails {
                bail!("connection refused");
            }
            Ok(())
        }
    }

    fn event() -> Event {
        Event::alert("app1", "subject", "body")
    }

    #[test]
    fn a_refused_attempt_is_retried_after_a_pause() {
        let calls = Arc::new(AtomicU32::new(0));
        let s = Flaky {
            fails: 1,
            calls: calls.clone(),
            hang: None,
        };
        let d = run_sink(&s, &event(), Duration::from_secs(5), 2);
        assert!(d.ok, "{d:?}");
        assert_eq!(d.attempts, 2);
        assert!(d.ms >= 500, "{d:?}");
    }

    #[test]
    fn retries_stop_at_the_count_and_the_last_error_is_kept() {
        let calls = Arc::new(AtomicU32::new(0));
        let s = Flaky {
            fails: 99,
            calls: calls.clone(),
            hang: None,
        };
        let d = run_sink(&s, &event(), Duration::from_secs(10), 1);
        assert!(!d.ok);
        assert_eq!(d.attempts, 2);
        assert_eq!(d.error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_hanging_sink_uses_its_budget_once_and_is_not_retried_past_it() {
        let calls = Arc::new(AtomicU32::new(0));
        let s = Flaky {
            fails: 0,
            calls: calls.clone(),
            hang: Some(Duration::from_secs(60)),
        };
        let t = Instant::now();
        let d = run_sink(&s, &event(), Duration::from_millis(700), 3);
        assert!(!d.ok);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(
            t.elapsed() < Duration::from_millis(1200),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn secrets_others_may_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("mha-helper-secret-{}", std::process::id()));
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(&p, "SMTP password").unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&p, "SMTP password").unwrap(), "s3cret");
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_sink_that_cannot_be_set_up_does_not_keep_the_others_from_sending() {
        let out = std::env::temp_dir().join(format!("mha-helper-send-{}", std::process::id()));
        let mut n = NotifySettings::default();
        n.set("notify_webhook_url", "http://192.0.2.1/x").unwrap();
        n.set("notify_webhook_token_file", "/nonexistent/token")
            .unwrap();
        n.set("notify_command", &format!("cat > {}", out.display()))
            .unwrap();
        let d = send(&event(), &n);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            !d[0].ok && d[0].error.as_deref().unwrap().contains("webhook token"),
            "{d:?}"
        );
        assert!(d[1].ok, "{d:?}");
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .contains("mha-helper.event/1"));
        std::fs::remove_file(out).unwrap();
    }

    #[test]
    fn nothing_configured_sends_nothing() {
        assert!(send(&event(), &NotifySettings::default()).is_empty());
    }
}
