//! Running SQL with the database host's own `mysql` client, over SSH.
//!
//! One script = one channel = one client process = one MySQL session. The
//! credentials travel on stdin: the remote shell copies the first N bytes of
//! stdin into a fresh 0600 temp file, opens it as fd 3, deletes it, and
//! starts the client with `--defaults-extra-file=/dev/fd/3`; the rest of
//! stdin is the SQL. No password is ever in an argv or an environment, and
//! the file exists on disk only for the instant between creation and unlink.

pub mod output;
pub mod server;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::quote::{option_file_value, shell_word, sql_ident, sql_string};
use crate::ssh::Exec;

pub use output::{Record, ResultSet};
pub use server::{Flavor, ServerInfo};

/// How the client on a host reaches that host's server, and as whom.
#[derive(Debug, Clone)]
pub struct Access {
    pub client: String,
    pub socket: Option<String>,
    pub host: Option<String>,
    pub port: u16,
    pub defaults_file: Option<String>,
    pub user: String,
    pub password: String,
    pub connect_timeout: u64,
}

impl Access {
    /// The option file sent on stdin (holds the password; never logged).
    fn option_file(&self) -> String {
        let mut f = String::from("[client]\n");
        f.push_str(&format!("user={}\n", option_file_value(&self.user)));
        f.push_str(&format!("password={}\n", option_file_value(&self.password)));
        if let Some(socket) = &self.socket {
            f.push_str(&format!("socket={}\n", option_file_value(socket)));
            f.push_str("protocol=socket\n");
        }
        if let Some(host) = &self.host {
            f.push_str(&format!("host={}\n", option_file_value(host)));
            f.push_str(&format!("port={}\n", self.port));
            f.push_str("protocol=tcp\n");
        }
        f
    }

    /// The remote command line for an option file of `len` bytes.
    fn command(&self, len: usize) -> String {
        let mut client = vec![shell_word(&self.client)];
        if let Some(df) = &self.defaults_file {
            client.push(shell_word(&format!("--defaults-file={df}")));
        }
        client.push("--defaults-extra-file=/dev/fd/3".into());
        client.extend(
            [
                "--batch",
                "--no-auto-rehash",
                "--default-character-set=utf8mb4",
            ]
            .map(String::from),
        );
        client.push(format!("--connect-timeout={}", self.connect_timeout.max(1)));
        let inner = format!(
            "umask 077 && f=$(mktemp \"${{TMPDIR:-/tmp}}/mha-helper.XXXXXX\") && \
             dd bs=1 count={len} of=\"$f\" 2>/dev/null && exec 3<\"$f\" && rm -f \"$f\" && exec {}",
            client.join(" ")
        );
        format!("/bin/sh -c {}", shell_word(&inner))
    }
}

/// An ordered SQL script with named result sets.
#[derive(Debug, Clone)]
pub struct Script {
    stmts: Vec<Stmt>,
}

#[derive(Debug, Clone)]
struct Stmt {
    label: String,
    sql: String,
    query: bool,
}

impl Script {
    /// A script whose session reads our string quoting correctly and waits
    /// at most `lock_wait` for metadata locks.
    pub fn new(lock_wait: Duration) -> Script {
        let mut s = Script { stmts: Vec::new() };
        s.exec(
            "session setup",
            "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
        );
        s.exec(
            "session setup",
            &format!(
                "SET SESSION lock_wait_timeout = {}",
                lock_wait.as_secs().max(1)
            ),
        );
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
        });
        self
    }

    pub fn query(&mut self, name: &str, sql: &str) -> &mut Script {
        self.stmts.push(Stmt {
            label: name.to_string(),
            sql: one_line(sql),
            query: true,
        });
        self
    }

    /// The statements a human should see (dry run), setup included.
    pub fn statements(&self) -> Vec<String> {
        self.stmts.iter().map(|s| format!("{};", s.sql)).collect()
    }

    /// The text fed to the client: one statement per line, so an error's
    /// line number names its statement. Returns the text and the label of
    /// each line.
    fn render(&self) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut labels = Vec::new();
        for s in &self.stmts {
            if s.query {
                text.push_str(&format!(
                    "SELECT {} AS {};\n",
                    sql_string(&format!("{}{}", output::MARKER_PREFIX, s.label)),
                    sql_ident(output::MARKER_COLUMN)
                ));
                labels.push(s.label.clone());
            }
            text.push_str(&s.sql);
            text.push_str(";\n");
            labels.push(s.label.clone());
        }
        (text, labels)
    }
}

fn one_line(sql: &str) -> String {
    sql.trim().trim_end_matches(';').replace(['\n', '\r'], " ")
}

/// Why a script failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// SSH could not run the command at all.
    Transport,
    /// The client program is not on the host.
    ClientMissing,
    /// The client could not log in or reach the server.
    Connect,
    /// A statement failed; the script stopped there.
    Statement { code: u32 },
}

#[derive(Debug, Clone)]
pub struct Error {
    pub host: String,
    pub kind: ErrorKind,
    /// The label of the failing statement, when known.
    pub step: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{}: {} failed: {}", self.host, step, self.message),
            None => write!(f, "{}: {}", self.host, self.message),
        }
    }
}

impl std::error::Error for Error {}

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

/// Run `script` on the host behind `conn`, as `access`.
pub fn run(
    conn: &mut dyn Exec,
    access: &Access,
    script: &Script,
    timeout: Duration,
) -> std::result::Result<Results, Error> {
    let host = conn.host().to_string();
    let started = Instant::now();
    let options = access.option_file();
    let (sql, labels) = script.render();
    let mut stdin = Vec::with_capacity(options.len() + sql.len());
    stdin.extend_from_slice(options.as_bytes());
    stdin.extend_from_slice(sql.as_bytes());
    let command = access.command(options.len());
    log::trace!("{host}: running {} statements", labels.len());
    let out = conn.exec(&command, &stdin, timeout).map_err(|e| Error {
        host: host.clone(),
        kind: ErrorKind::Transport,
        step: None,
        message: format!("{e:#}"),
    })?;
    let stderr = out.stderr_text();
    if let Some(sig) = &out.signal {
        return Err(Error {
            host,
            kind: ErrorKind::Transport,
            step: None,
            message: format!("the mysql client was killed by signal {sig}"),
        });
    }
    if out.status == 127 || stderr.contains("not found") && !stderr.contains("ERROR") {
        return Err(Error {
            host,
            kind: ErrorKind::ClientMissing,
            step: None,
            message: format!(
                "mysql client '{}' not found on the host ({stderr}); install it or set mysql_client",
                access.client
            ),
        });
    }
    if out.status != 0 {
        return Err(classify_failure(&host, &stderr, out.status, &labels));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sets = output::parse(&text).map_err(|e| Error {
        host: host.clone(),
        kind: ErrorKind::Transport,
        step: None,
        message: format!("cannot read the client's output: {e}"),
    })?;
    Ok(Results {
        sets,
        elapsed: started.elapsed(),
    })
}

/// Turn the client's `ERROR 1045 (28000) at line 3: ...` into an error
/// naming the statement.
fn classify_failure(host: &str, stderr: &str, status: i32, labels: &[String]) -> Error {
    let first = stderr
        .lines()
        .find(|l| l.starts_with("ERROR"))
        .unwrap_or(stderr)
        .to_string();
    let code: u32 = first
        .strip_prefix("ERROR ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let line: Option<usize> = first
        .split(" at line ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.trim().parse().ok());
    let message = match first.split_once(": ") {
        Some((_, m)) if first.starts_with("ERROR") => format!("{m} (error {code})"),
        _ if first.is_empty() => format!("mysql client exited with status {status}"),
        _ => first.clone(),
    };
    match line {
        Some(n) if n >= 1 && n <= labels.len() => Error {
            host: host.to_string(),
            kind: ErrorKind::Statement { code },
            step: Some(labels[n - 1].clone()),
            message,
        },
        _ => {
            let hint = match code {
                1045 => "; check user/password in the MHA config",
                2002 | 2003 | 2005 | 2006 | 2013 => {
                    "; is mysqld running there, and do mysql_socket/mysql_host point at it?"
                }
                _ => "",
            };
            Error {
                host: host.to_string(),
                kind: if code == 0 || line.is_some() {
                    ErrorKind::Statement { code }
                } else {
                    ErrorKind::Connect
                },
                step: None,
                message: format!("cannot connect to MySQL: {message}{hint}"),
            }
        }
    }
}

/// Shortcut: run and turn the error into anyhow.
pub fn run_script(
    conn: &mut dyn Exec,
    access: &Access,
    script: &Script,
    timeout: Duration,
) -> Result<Results> {
    run(conn, access, script, timeout).map_err(anyhow::Error::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Output;

    struct Fake {
        seen_command: String,
        seen_stdin: Vec<u8>,
        reply: Output,
    }

    impl Exec for Fake {
        fn host(&self) -> &str {
            "db1"
        }
        fn exec(&mut self, command: &str, stdin: &[u8], _t: Duration) -> Result<Output> {
            self.seen_command = command.to_string();
            self.seen_stdin = stdin.to_vec();
            Ok(self.reply.clone())
        }
    }

    fn access() -> Access {
        Access {
            client: "mysql".into(),
            socket: None,
            host: None,
            port: 3306,
            defaults_file: None,
            user: "mha".into(),
            password: "pa$$ w'o\"rd\\".into(),
            connect_timeout: 5,
        }
    }

    fn fake(status: i32, stdout: &str, stderr: &str) -> Fake {
        Fake {
            seen_command: String::new(),
            seen_stdin: Vec::new(),
            reply: Output {
                status,
                signal: None,
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn password_travels_on_stdin_never_in_the_command() {
        let mut f = fake(0, "", "");
        let mut s = Script::new(Duration::from_secs(30));
        s.exec("x", "SELECT 1");
        run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap();
        assert!(!f.seen_command.contains("pa$$"));
        assert!(!f.seen_command.contains("password"));
        let stdin = String::from_utf8(f.seen_stdin).unwrap();
        assert!(stdin.starts_with("[client]\nuser=\"mha\"\npassword=\"pa$$ w'o\\\"rd\\\\\"\n"));
        let optlen = stdin.find("SET SESSION").unwrap();
        assert!(f.seen_command.contains(&format!("count={optlen} ")));
    }

    #[test]
    fn remote_command_is_exact() {
        let mut a = access();
        a.socket = Some("/run/my sock".into());
        a.defaults_file = Some("/etc/my.cnf".into());
        assert_eq!(
            a.command(42),
            "/bin/sh -c 'umask 077 && f=$(mktemp \"${TMPDIR:-/tmp}/mha-helper.XXXXXX\") && \
             dd bs=1 count=42 of=\"$f\" 2>/dev/null && exec 3<\"$f\" && rm -f \"$f\" && \
             exec mysql --defaults-file=/etc/my.cnf --defaults-extra-file=/dev/fd/3 --batch \
             --no-auto-rehash --default-character-set=utf8mb4 --connect-timeout=5'"
        );
        assert!(a
            .option_file()
            .contains("socket=\"/run/my sock\"\nprotocol=socket\n"));
    }

    #[test]
    fn script_renders_one_statement_per_line_with_markers_before_queries() {
        let mut s = Script::new(Duration::from_secs(7)).without_binlog();
        s.exec(
            "revoke",
            "REVOKE ALL PRIVILEGES, GRANT OPTION\n FROM `a`@`%`;",
        );
        s.query("grants", "SHOW GRANTS FOR `a`@`%`");
        let (text, labels) = s.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), labels.len());
        assert_eq!(lines[1], "SET SESSION lock_wait_timeout = 7;");
        assert_eq!(lines[2], "SET SESSION sql_log_bin = 0;");
        assert_eq!(
            lines[3],
            "REVOKE ALL PRIVILEGES, GRANT OPTION  FROM `a`@`%`;"
        );
        assert_eq!(
            lines[4],
            "SELECT 'mha-helper:grants' AS `mha-helper-marker`;"
        );
        assert_eq!(labels[3], "revoke");
        assert_eq!(labels[5], "grants");
    }

    #[test]
    fn statement_error_names_the_statement() {
        let mut s = Script::new(Duration::from_secs(30));
        s.exec(
            "revoke `app`@`%`",
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `app`@`%`",
        );
        let mut f = fake(
            1,
            "",
            "ERROR 1141 (42000) at line 3: There is no such grant defined\n",
        );
        let e = run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Statement { code: 1141 });
        assert_eq!(e.step.as_deref(), Some("revoke `app`@`%`"));
        assert_eq!(
            e.to_string(),
            "db1: revoke `app`@`%` failed: There is no such grant defined (error 1141)"
        );
    }

    #[test]
    fn login_failure_is_a_connect_error_with_a_hint() {
        let s = Script::new(Duration::from_secs(30));
        let mut f = fake(
            1,
            "",
            "ERROR 1045 (28000): Access denied for user 'mha'@'localhost' (using password: YES)\n",
        );
        let e = run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(e.to_string().contains("check user/password"), "{e}");
        let mut f = fake(
            1,
            "",
            "ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)\n",
        );
        let e = run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(e.to_string().contains("is mysqld running"), "{e}");
    }

    #[test]
    fn missing_client_is_reported_as_such() {
        let s = Script::new(Duration::from_secs(30));
        let mut f = fake(127, "", "/bin/sh: 1: exec: mysql: not found\n");
        let e = run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientMissing);
    }

    #[test]
    fn killed_client_is_not_a_success() {
        let s = Script::new(Duration::from_secs(30));
        let mut f = fake(0, "", "");
        f.reply.signal = Some("KILL".into());
        let e = run(&mut f, &access(), &s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport);
    }
}
