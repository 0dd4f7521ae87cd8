//! An ordered SQL script with named result sets: what is sent to a host's
//! client in one round trip, and what comes back.

use std::collections::HashMap;
use std::time::Duration;

use super::dialect::Flavor;
use super::output::{self, ResultSet};
use crate::quote::{sql_ident, sql_string};

/// The hidden first query of every script: our session's connection id.
pub(super) const SESSION_SET: &str = "session";

/// How long the server may spend on one statement, or wait for a lock,
/// inside a script allowed `timeout`: less, so the server gives up first.
pub fn server_limit(timeout: Duration) -> Duration {
    let margin = (timeout / 5).max(Duration::from_secs(1));
    timeout.saturating_sub(margin).max(Duration::from_secs(1))
}

/// An ordered SQL script with named result sets.
#[derive(Debug, Clone)]
pub struct Script {
    stmts: Vec<Stmt>,
    /// How many of `stmts` are the session setup `new` adds.
    setup: usize,
}

#[derive(Debug, Clone)]
struct Stmt {
    label: String,
    sql: String,
    query: bool,
    /// What a person is shown instead of `sql` (it holds a secret).
    shown: Option<String>,
}

impl Script {
    /// A script whose session reads our string quoting correctly and waits
    /// for locks less long than `timeout`, the time it will be given.
    pub fn new(timeout: Duration) -> Script {
        let mut s = Script {
            stmts: Vec::new(),
            setup: 0,
        };
        s.exec(
            "session setup",
            "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
        );
        s.exec(
            "session setup",
            &format!(
                "SET SESSION lock_wait_timeout = {}",
                server_limit(timeout).as_secs().max(1)
            ),
        );
        s.setup = s.stmts.len();
        s
    }

    /// The session's own changes stay out of the binary log.
    pub fn without_binlog(mut self) -> Script {
        self.exec("session setup", "SET SESSION sql_log_bin = 0");
        self
    }

    pub fn exec(&mut self, label: &str, sql: &str) -> &mut Script {
        self.stmts.push(Stmt {
            label: label.to_string(),
            sql: one_line(sql),
            query: false,
            shown: None,
        });
        self
    }

    /// A statement that holds a secret: sent as `sql`, shown to people
    /// (dry run, reports) as `shown`.
    pub fn exec_secret(&mut self, label: &str, sql: &str, shown: &str) -> &mut Script {
        self.exec(label, sql);
        if let Some(last) = self.stmts.last_mut() {
            last.shown = Some(one_line(shown));
        }
        self
    }

    pub fn query(&mut self, name: &str, sql: &str) -> &mut Script {
        self.stmts.push(Stmt {
            label: name.to_string(),
            sql: one_line(sql),
            query: true,
            shown: None,
        });
        self
    }

    /// The statements a step adds, without the session setup every script
    /// starts with (what a dry run lists under each step).
    pub fn body(&self) -> Vec<String> {
        let mut all = self.statements();
        all.split_off(self.setup.min(all.len()))
    }

    /// The statements a human should see (dry run), setup included.
    pub fn statements(&self) -> Vec<String> {
        self.stmts
            .iter()
            .map(|s| format!("{};", s.shown.as_deref().unwrap_or(&s.sql)))
            .collect()
    }

    /// The text fed to the client: one statement per line, so an error's
    /// line number names its statement. First the hidden session query,
    /// then (where the server has one) the statement time limit for
    /// `timeout`, then the script. Returns the text and the label of each
    /// line.
    pub(super) fn render(
        &self,
        flavor: Option<Flavor>,
        timeout: Duration,
    ) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut labels = Vec::new();
        let mut line = |text: &mut String, label: &str, sql: &str| {
            text.push_str(sql);
            text.push_str(";\n");
            labels.push(label.to_string());
        };
        let marker = |name: &str| {
            format!(
                "SELECT {} AS {}",
                sql_string(&format!("{}{name}", output::MARKER_PREFIX)),
                sql_ident(output::MARKER_COLUMN)
            )
        };
        line(&mut text, SESSION_SET, &marker(SESSION_SET));
        line(&mut text, SESSION_SET, "SELECT CONNECTION_ID() AS id");
        let limit = server_limit(timeout);
        let hang = crate::fault::hang_now();
        match flavor {
            Some(Flavor::MariaDb) => {
                let secs = if hang { 0.0 } else { limit.as_secs_f64() };
                line(
                    &mut text,
                    "session setup",
                    &format!("SET SESSION max_statement_time = {secs:.3}"),
                )
            }
            Some(Flavor::MySql) => {
                let ms = if hang { 0 } else { limit.as_millis() };
                line(
                    &mut text,
                    "session setup",
                    &format!("SET SESSION max_execution_time = {ms}"),
                )
            }
            None => {}
        }
        if hang {
            line(&mut text, "hang (fault injection)", "DO SLEEP(86400)");
        }
        for s in &self.stmts {
            if s.query {
                line(&mut text, &s.label, &marker(&s.label));
            }
            line(&mut text, &s.label, &s.sql);
        }
        (text, labels)
    }
}

fn one_line(sql: &str) -> String {
    sql.trim().trim_end_matches(';').replace(['\n', '\r'], " ")
}

/// What a script returned.
#[derive(Debug, Default)]
pub struct Results {
    pub sets: HashMap<String, ResultSet>,
    pub elapsed: Duration,
}

impl Results {
    /// The named result set (empty when the query returned no rows).
    pub fn set(&self, name: &str) -> &ResultSet {
        static EMPTY: ResultSet = ResultSet {
            columns: Vec::new(),
            rows: Vec::new(),
        };
        self.sets.get(name).unwrap_or(&EMPTY)
    }
}
