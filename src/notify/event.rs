//! What a notification says. One JSON shape for every sink (schema
//! `mha-helper.event/1`, documented in README "Notifications"); mail and
//! Slack-style webhooks get [`Event::text`].

use std::fmt::Write as _;

use serde::Serialize;

pub use crate::state::history::{last_switch, Switch};

pub const SCHEMA: &str = "mha-helper.event/1";

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub schema: &'static str,
    /// `report` (MHA's report_script), `alert` (a hook or command that
    /// needs a person), `check` (`mha-helper check --notify`).
    pub kind: String,
    pub app: String,
    pub at: String,
    /// The host mha-helper runs on (the MHA manager).
    pub manager: String,
    pub subject: String,
    /// MHA's body for a report; what happened for an alert.
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_master: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_replicas: Vec<String>,
    /// What mha-helper's journal says of the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
    /// For an alert: the command, its phase and exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What a person must still do.
    pub next: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub exit_code: i32,
    pub error: String,
}

fn manager_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Event {
    fn new(kind: &str, app: &str, subject: &str, body: &str) -> Event {
        Event {
            schema: SCHEMA,
            kind: kind.into(),
            app: app.into(),
            at: crate::logger::utc_now(),
            manager: manager_name(),
            subject: subject.into(),
            body: body.into(),
            orig_master: None,
            new_master: None,
            new_replicas: Vec::new(),
            switch: None,
            failure: None,
            next: Vec::new(),
        }
    }

    pub fn alert(app: &str, subject: &str, body: &str) -> Event {
        Event::new("alert", app, subject, body)
    }

    pub fn report(app: &str, subject: &str, body: &str) -> Event {
        Event::new("report", app, subject, body)
    }

    pub fn check(app: &str, subject: &str, body: &str) -> Event {
        Event::new("check", app, subject, body)
    }

    /// The event as people read it: the body, then what mha-helper knows.
    pub fn text(&self) -> String {
        let mut t = self.body.trim_end().to_string();
        t.push_str("\n\n-- mha-helper --\n");
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(t, "{k:<20} {v}");
        };
        line("application", &self.app);
        line("manager", &self.manager);
        if let Some(o) = &self.orig_master {
            line("old master", o);
        }
        if let Some(n) = &self.new_master {
            line("new master", n);
        }
        if !self.new_replicas.is_empty() {
            line("replicas", &self.new_replicas.join(", "));
        }
        if let Some(f) = &self.failure {
            let phase = f
                .phase
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            line(
                "failed",
                &format!("{}{phase}, exit {}", f.command, f.exit_code),
            );
            line("error", &f.error);
        }
        if let Some(s) = &self.switch {
            line(
                "switch",
                &format!(
                    "{} {} {} -> {}: {}",
                    s.kind, s.id, s.orig_master, s.new_master, s.outcome
                ),
            );
            if let Some(ms) = s.write_block_ms {
                line("writes blocked", &format!("{ms} ms"));
            }
            line("sessions killed", &s.sessions_killed.to_string());
            line("accounts blocked", &s.accounts_blocked.len().to_string());
            line("accounts restored", &s.accounts_restored.len().to_string());
            if !s.steps_done.is_empty() {
                line("steps done", &s.steps_done.join(", "));
            }
            for w in &s.warnings {
                line("warning", w);
            }
            line("journal", &s.journal);
        }
        for n in &self.next {
            line("to do", n);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_summary_shows_in_the_text_of_an_event() {
        let mut e = Event::report("app1", "subj", "MHA body\n");
        e.switch = Some(Switch {
            id: "20261202-1".into(),
            kind: "online".into(),
            outcome: "completed".into(),
            write_block_ms: Some(412),
            sessions_killed: 2,
            ..Default::default()
        });
        let t = e.text();
        assert!(t.starts_with("MHA body\n\n-- mha-helper --\n"), "{t}");
        assert!(t.contains("writes blocked       412 ms"), "{t}");
        assert!(t.contains("sessions killed      2"), "{t}");
    }
}
