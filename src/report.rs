//! What a run did, for people (text) and machines (JSON): the steps with
//! their host and time, every session killed, every account changed, the
//! write-block window, warnings, and how many SSH connections and commands
//! each host saw.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::listing::{Planned, Sent};
use crate::ssh::Stats;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Session {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub command: String,
    pub time: i64,
    pub state: Option<String>,
    /// Running no statement and holding no open transaction when listed.
    pub idle: bool,
}

/// The application sessions open on the old master when its block began.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SessionsAtBlock {
    /// Running no statement and holding no open transaction: ended at once.
    pub idle: usize,
    /// With work in flight: given up to the grace period.
    pub busy: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub host: String,
    pub status: String,
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the step sent, host by host in order (`--show-sent`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<Sent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub step: String,
    pub host: String,
    pub what: String,
    pub reversible: bool,
    /// The scripts apply will send, per host.
    pub scripts: Vec<Planned>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub command: String,
    pub phase: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_master: Option<String>,
    pub steps: Vec<StepRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    pub killed_sessions: Vec<Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_at_block: Option<SessionsAtBlock>,
    pub accounts_changed: Vec<String>,
    /// Milliseconds from the first blocking statement to read_only off on
    /// the new master (set by the start phase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_block_ms: Option<u64>,
    pub warnings: Vec<String>,
    /// What the cluster was when the run read it, one line per host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    pub ssh: BTreeMap<String, Stats>,
    pub elapsed_ms: u64,
    /// Peak resident memory of this process (getrusage), for the benchmark.
    pub peak_rss_kb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// Peak resident set size of this process so far, in KiB.
pub fn peak_rss_kb() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0 {
            u.ru_maxrss.max(0) as u64
        } else {
            0
        }
    }
}

/// Reports kept by the process that asked for them, in order.
pub type Captured = std::sync::Arc<std::sync::Mutex<Vec<Report>>>;

/// Keep the report in `kept` when the caller runs the phase in-process
/// (a dry run's plans), else [`emit`] it.
pub fn emit_or_keep(report: &Report, json: bool, kept: Option<&Captured>) {
    match kept {
        Some(kept) => {
            let mut r = report.clone();
            r.peak_rss_kb = peak_rss_kb();
            if let Ok(mut kept) = kept.lock() {
                kept.push(r);
            }
        }
        None => emit(report, json),
    }
}

/// Print the report as the user asked (text is also logged).
pub fn emit(report: &Report, json: bool) {
    let mut report = report.clone();
    report.peak_rss_kb = peak_rss_kb();
    let report = &report;
    if json {
        crate::output::set(report);
    } else {
        for line in report.to_text().lines() {
            log::info!("{line}");
        }
    }
}

impl Report {
    pub fn new(command: &str, phase: &str) -> Report {
        Report {
            command: command.to_string(),
            phase: phase.to_string(),
            ..Report::default()
        }
    }

    pub fn step(&mut self, step: &str, host: &str, status: &str, ms: u64, detail: Option<String>) {
        self.steps.push(StepRecord {
            step: step.to_string(),
            host: host.to_string(),
            status: status.to_string(),
            ms,
            detail,
            sent: Vec::new(),
        });
    }

    pub fn warn(&mut self, w: String) {
        log::warn!("{w}");
        self.warnings.push(w);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The command and its phase; a command of one phase (recover, fence)
    /// named once.
    fn title(&self) -> String {
        if self.phase == self.command {
            self.command.clone()
        } else {
            format!("{} {}", self.command, self.phase)
        }
    }

    /// A short human summary (also logged, so MHA's log keeps it).
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = write!(t, "{}: {}", self.title(), self.outcome);
        if let (Some(o), Some(n)) = (&self.orig_master, &self.new_master) {
            let _ = write!(t, " ({o} -> {n})");
        }
        let _ = writeln!(t, " in {} ms", self.elapsed_ms);
        self.plan_text(&mut t);
        for s in &self.steps {
            let _ = writeln!(
                t,
                "  {:<8} {:<22} on {:<6} {:>6} ms{}",
                s.status,
                s.step,
                s.host,
                s.ms,
                s.detail
                    .as_deref()
                    .map(|d| format!("  {d}"))
                    .unwrap_or_default()
            );
        }
        if let Some(ms) = self.write_block_ms {
            let _ = writeln!(t, "  write-block window: {ms} ms");
        }
        if !self.accounts_changed.is_empty() {
            let _ = writeln!(t, "  accounts changed: {}", self.accounts_changed.len());
            for a in self.accounts_changed.iter().take(20) {
                let _ = writeln!(t, "    {a}");
            }
            if self.accounts_changed.len() > 20 {
                let _ = writeln!(t, "    ... and {} more", self.accounts_changed.len() - 20);
            }
        }
        self.sessions_text(&mut t);
        for w in &self.warnings {
            let _ = writeln!(t, "  warning: {w}");
        }
        for c in &self.cluster {
            let _ = writeln!(t, "  cluster: {c}");
        }
        for (h, s) in &self.ssh {
            if s.via_keeper && s.connections == 0 {
                let _ = writeln!(
                    t,
                    "  ssh {h}: {} command(s) over the session keeper's connection",
                    s.execs
                );
            } else {
                let _ = writeln!(
                    t,
                    "  ssh {h}: {} connection(s), {} command(s), connect {} ms",
                    s.connections, s.execs, s.connect_ms
                );
            }
        }
        if let Some(j) = &self.journal {
            let _ = writeln!(t, "  journal: {j}");
        }
        t
    }

    /// The dry run's steps and every script each will send.
    fn plan_text(&self, t: &mut String) {
        for p in &self.plan {
            let _ = writeln!(
                t,
                "  plan {:<22} on {:<6} {}{}",
                p.step,
                p.host,
                p.what,
                if p.reversible {
                    ""
                } else {
                    "  [cannot be undone]"
                }
            );
            for s in &p.scripts {
                let _ = writeln!(
                    t,
                    "    to {}{}:",
                    s.host,
                    s.repeat
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                for l in &s.statements {
                    let each = l.each.as_deref().map(|e| format!("  -- {e}"));
                    let _ = writeln!(t, "      {}{}", l.sql, each.unwrap_or_default());
                }
            }
        }
    }

    /// The application sessions at the block, and each one killed.
    fn sessions_text(&self, t: &mut String) {
        if let Some(a) = self.sessions_at_block {
            let _ = writeln!(
                t,
                "  sessions at the block: {} idle (ended at once), {} with work in flight",
                a.idle, a.busy
            );
        }
        if self.killed_sessions.is_empty() {
            return;
        }
        let _ = writeln!(t, "  sessions killed: {}", self.killed_sessions.len());
        for s in &self.killed_sessions {
            let _ = writeln!(
                t,
                "    id={} user={} host={} command={} time={}s{}",
                s.id,
                s.user,
                s.host,
                s.command,
                s.time,
                if s.idle { " (idle)" } else { "" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_a_one_phase_command_once() {
        let mut r = Report::new("recover", "recover");
        r.outcome = "completed".into();
        assert!(
            r.to_text().starts_with("recover: completed in "),
            "{}",
            r.to_text()
        );
        let mut r = Report::new("master-ip-online-change", "stop");
        r.outcome = "completed".into();
        assert!(r
            .to_text()
            .starts_with("master-ip-online-change stop: completed in "));
    }
}
