//! Running SQL with the database host's own `mysql` client, over SSH.
//!
//! One script = one channel = one client process = one MySQL session. The
//! credentials travel on stdin: the remote shell copies the first N bytes of
//! stdin into a fresh 0600 temp file, opens it as fd 3, deletes it, and
//! starts the client with `--defaults-extra-file=/dev/fd/3`; the rest of
//! stdin is the SQL. No password is ever in an argv or an environment, and
//! the file exists on disk only for the instant between creation and unlink.
//!
//! A script that runs past its timeout is really stopped before the caller
//! goes on (to an undo, say): the first thing every script prints is its
//! session's connection id and the shell its pid (the client is unbuffered,
//! so both arrive at once), and on timeout the client process is killed and
//! the session is `KILL`ed on the server, then watched until it is gone.
//! The server is also told to give up first: `lock_wait_timeout` and the
//! statement time limit are set below the timeout.

pub mod dialect;
pub mod error;
pub mod gtid;
pub mod output;
pub mod script;
pub mod server;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::quote::{option_file_value, shell_word};
use crate::ssh::Exec;

pub use dialect::Flavor;
pub use error::{failed_at, script_error, server_down, Error, ErrorKind};
pub use output::{Record, ResultSet};
use script::SESSION_SET;
pub use script::{server_limit, Results, Script};
pub use server::ServerInfo;

/// How the client on a host reaches that host's server, and as whom.
#[derive(Debug, Clone)]
pub struct Access {
    /// The client program; None: `mariadb`, else `mysql`, found on the host
    /// by the same shell that runs it.
    pub client: Option<String>,
    pub socket: Option<String>,
    pub host: Option<String>,
    pub port: u16,
    pub defaults_file: Option<String>,
    pub user: String,
    pub password: String,
    pub connect_timeout: u64,
}

impl Access {
    /// The client for messages.
    pub fn client_name(&self) -> &str {
        self.client.as_deref().unwrap_or("mariadb or mysql")
    }

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
        let mut client = vec![match &self.client {
            Some(c) => shell_word(c),
            None => "\"$c\"".to_string(),
        }];
        if let Some(df) = &self.defaults_file {
            client.push(shell_word(&format!("--defaults-file={df}")));
        }
        client.push("--defaults-extra-file=/dev/fd/3".into());
        client.extend(
            [
                "--batch",
                "--unbuffered",
                "--no-auto-rehash",
                "--default-character-set=utf8mb4",
            ]
            .map(String::from),
        );
        client.push(format!("--connect-timeout={}", self.connect_timeout.max(1)));
        let find = if self.client.is_some() {
            ""
        } else {
            // builtins only: no subshell to fork on every script
            "if command -v mariadb >/dev/null 2>&1; then c=mariadb; else c=mysql; fi; "
        };
        let inner = format!(
            "{find}echo {PID_TAG}$$ >&2; umask 077 && f=$(mktemp \"${{TMPDIR:-/tmp}}/mha-helper.XXXXXX\") && \
             dd bs=1 count={len} of=\"$f\" 2>/dev/null && exec 3<\"$f\" && rm -f \"$f\" && exec {}",
            client.join(" ")
        );
        format!("/bin/sh -c {}", shell_word(&inner))
    }
}

/// The line the remote shell prints on stderr before it becomes the client.
const PID_TAG: &str = "mha-helper-pid=";

/// Run `script` on the host behind `conn`, as `access`. `flavor` (when
/// known) picks the server's statement time limit.
pub fn run(
    conn: &mut dyn Exec,
    access: &Access,
    script: &Script,
    timeout: Duration,
    flavor: Option<Flavor>,
) -> std::result::Result<Results, Error> {
    let host = conn.host().to_string();
    let started = Instant::now();
    let options = access.option_file();
    let (sql, labels) = script.render(flavor, timeout);
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
    let (pid, stderr) = split_pid(&out.stderr_text());
    if let Some(waited) = out.timed_out {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = session_id(&stdout);
        let (gone, what) = stop_session(conn, access, id, pid, timeout);
        return Err(Error {
            host,
            kind: ErrorKind::Timeout { gone },
            step: None,
            message: format!(
                "timed out after {:.1} s (step_timeout; raise it if the host is just slow); {what}",
                waited.as_secs_f64()
            ),
        });
    }
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
                access.client_name()
            ),
        });
    }
    if out.status != 0 {
        return Err(classify_failure(&host, &stderr, out.status, &labels));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sets = output::parse(&text).map_err(|e| Error {
        host: host.clone(),
        kind: ErrorKind::Transport,
        step: None,
        message: format!("cannot read the client's output: {e}"),
    })?;
    sets.remove(SESSION_SET);
    Ok(Results {
        sets,
        elapsed: started.elapsed(),
    })
}

/// The client's pid (from the shell's first stderr line) and the rest of
/// stderr.
fn split_pid(stderr: &str) -> (Option<u32>, String) {
    let mut pid = None;
    let rest: Vec<&str> = stderr
        .lines()
        .filter(|l| match l.strip_prefix(PID_TAG) {
            Some(p) => {
                pid = p.trim().parse().ok();
                false
            }
            None => true,
        })
        .collect();
    (pid, rest.join("\n").trim().to_string())
}

/// The connection id from the hidden first query, if it arrived.
fn session_id(stdout: &str) -> Option<u64> {
    let mut lines = stdout.lines();
    let tag = format!("{}{SESSION_SET}", output::MARKER_PREFIX);
    while let Some(l) = lines.next() {
        if l == tag {
            // header line "id", then the value
            let _header = lines.next()?;
            return lines.next()?.trim().parse().ok();
        }
    }
    None
}

/// Stop what a timed-out script left running: kill the client process on
/// the host (so it sends nothing more), `KILL` its session on the server,
/// and watch the processlist until the session is gone. Returns whether it
/// is proven gone, and what was done.
fn stop_session(
    conn: &mut dyn Exec,
    access: &Access,
    id: Option<u64>,
    pid: Option<u32>,
    timeout: Duration,
) -> (bool, String) {
    let host = conn.host().to_string();
    let wait = timeout.clamp(Duration::from_secs(2), Duration::from_secs(30));
    if let Some(pid) = pid {
        // Only our own client: its command line names the fd-3 option file.
        let cmd = format!(
            "/bin/sh -c {}",
            shell_word(&format!(
                "grep -qa -- --defaults-extra-file=/dev/fd/3 /proc/{pid}/cmdline 2>/dev/null && kill -9 {pid}; true"
            ))
        );
        if let Err(e) = conn.exec(&cmd, b"", wait) {
            log::warn!("{host}: cannot kill the timed-out client (pid {pid}): {e:#}");
        }
    }
    let Some(id) = id else {
        return match pid {
            Some(p) => (
                true,
                format!("its client (pid {p}) was killed before it had a server session"),
            ),
            None => (
                false,
                "the command never reported its client or session; it may still run".into(),
            ),
        };
    };
    let until = Instant::now() + wait;
    let mut killed = false;
    loop {
        let mut s = Script::new(wait);
        if !killed {
            s.exec(
                "kill the timed-out session",
                &format!("KILL CONNECTION {id}"),
            );
        }
        s.query(
            "left",
            &format!("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = {id}"),
        );
        match run(conn, access, &s, wait, None) {
            Ok(r) => {
                killed = true;
                if r.set("left").records().next().map(|r| r.num("n")) == Some(0) {
                    log::warn!(
                        "{host}: session {id} of the timed-out script was killed and is gone"
                    );
                    return (
                        true,
                        format!("its session {id} was killed on the server and is gone"),
                    );
                }
            }
            // It ended by itself between our look and the KILL.
            Err(e) if e.kind == ErrorKind::Statement { code: 1094 } => killed = true,
            Err(e) => log::warn!("{host}: killing session {id}: {e}"),
        }
        if Instant::now() >= until {
            return (
                false,
                format!(
                    "its session {id} could not be proven gone within {:.0} s",
                    wait.as_secs_f64()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
                    ErrorKind::Connect { code }
                },
                step: None,
                message: format!("cannot connect to MySQL: {message}{hint}"),
            }
        }
    }
}

/// The tag of the kept read-only question's answer.
const ASK_TAG: &str = "mha-helper-ask\t";

/// The question [`ask_read_only`] asks, one line.
pub fn read_only_question(gtid: bool) -> &'static str {
    if gtid {
        "SELECT 'mha-helper-ask' AS tag, @@GLOBAL.read_only AS ro, \
         REPLACE(@@GLOBAL.gtid_executed, '\\n', '') AS gtid;"
    } else {
        "SELECT 'mha-helper-ask' AS tag, @@GLOBAL.read_only AS ro;"
    }
}

/// `@@GLOBAL.read_only`, and with `gtid` (MySQL with GTID on)
/// `@@GLOBAL.gtid_executed` in the same question, asked of a client kept
/// running on the host for such questions (see `Exec::ask`): about a
/// millisecond once it runs, where a script costs a client start and a
/// login.
pub fn ask_read_only(
    conn: &mut dyn Exec,
    access: &Access,
    timeout: Duration,
    gtid: bool,
) -> Result<(bool, Option<String>)> {
    let options = access.option_file();
    let command = access.command(options.len());
    let question = format!("{}\n", read_only_question(gtid));
    let answer = conn.ask(&command, options.as_bytes(), &question, ASK_TAG, timeout)?;
    let rest = answer.strip_prefix(ASK_TAG).map(str::trim_end);
    let (ro, set) = match rest {
        Some(r) => r.split_once('\t').unwrap_or((r, "")),
        None => anyhow::bail!("{}: unexpected answer {answer:?}", conn.host()),
    };
    let set = gtid.then(|| server::gtid_set(set));
    match ro.trim() {
        "1" => Ok((true, set)),
        "0" => Ok((false, set)),
        _ => anyhow::bail!("{}: unexpected answer {answer:?}", conn.host()),
    }
}

/// Shortcut: run and turn the error into anyhow.
pub fn run_script(
    conn: &mut dyn Exec,
    access: &Access,
    script: &Script,
    timeout: Duration,
    flavor: Option<Flavor>,
) -> Result<Results> {
    run(conn, access, script, timeout, flavor).map_err(anyhow::Error::new)
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
            client: Some("mysql".into()),
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
                timed_out: None,
            },
        }
    }

    #[test]
    fn password_travels_on_stdin_never_in_the_command() {
        let mut f = fake(0, "", "");
        let mut s = Script::new(Duration::from_secs(30));
        s.exec("x", "SELECT 1");
        run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap();
        assert!(!f.seen_command.contains("pa$$"));
        assert!(!f.seen_command.contains("password"));
        let stdin = String::from_utf8(f.seen_stdin).unwrap();
        assert!(stdin.starts_with("[client]\nuser=\"mha\"\npassword=\"pa$$ w'o\\\"rd\\\\\"\n"));
        let optlen = stdin.find("SELECT 'mha-helper:session'").unwrap();
        assert!(f.seen_command.contains(&format!("count={optlen} ")));
    }

    #[test]
    fn remote_command_is_exact() {
        let mut a = access();
        a.socket = Some("/run/my sock".into());
        a.defaults_file = Some("/etc/my.cnf".into());
        assert_eq!(
            a.command(42),
            "/bin/sh -c 'echo mha-helper-pid=$$ >&2; umask 077 && f=$(mktemp \"${TMPDIR:-/tmp}/mha-helper.XXXXXX\") && \
             dd bs=1 count=42 of=\"$f\" 2>/dev/null && exec 3<\"$f\" && rm -f \"$f\" && \
             exec mysql --defaults-file=/etc/my.cnf --defaults-extra-file=/dev/fd/3 --batch \
             --unbuffered --no-auto-rehash --default-character-set=utf8mb4 --connect-timeout=5'"
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
        let (text, labels) = s.render(Some(Flavor::MariaDb), Duration::from_secs(7));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), labels.len());
        assert_eq!(
            lines[0..3],
            [
                "SELECT 'mha-helper:session' AS `mha-helper-marker`;",
                "SELECT CONNECTION_ID() AS id;",
                "SET SESSION max_statement_time = 5.600;"
            ]
        );
        // The server gives up before we do: 7 s allowed, locks waited 5 s.
        assert_eq!(lines[4], "SET SESSION lock_wait_timeout = 5;");
        assert_eq!(lines[5], "SET SESSION sql_log_bin = 0;");
        assert_eq!(
            lines[6],
            "REVOKE ALL PRIVILEGES, GRANT OPTION  FROM `a`@`%`;"
        );
        assert_eq!(
            lines[7],
            "SELECT 'mha-helper:grants' AS `mha-helper-marker`;"
        );
        assert_eq!(labels[6], "revoke");
        assert_eq!(labels[8], "grants");
        let (mysql, _) = s.render(Some(Flavor::MySql), Duration::from_secs(30));
        assert!(mysql.contains("SET SESSION max_execution_time = 24000;"));
        let (unknown, _) = s.render(None, Duration::from_secs(30));
        assert!(!unknown.contains("max_"));
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
            "ERROR 1141 (42000) at line 5: There is no such grant defined\n",
        );
        let e = run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap_err();
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
        let e = run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect { code: 1045 });
        assert!(e.to_string().contains("check user/password"), "{e}");
        let mut f = fake(
            1,
            "",
            "ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)\n",
        );
        let e = run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect { code: 2002 });
        assert!(e.server_down());
        assert!(e.to_string().contains("is mysqld running"), "{e}");
    }

    #[test]
    fn missing_client_is_reported_as_such() {
        let s = Script::new(Duration::from_secs(30));
        let mut f = fake(127, "", "/bin/sh: 1: exec: mysql: not found\n");
        let e = run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientMissing);
    }

    /// Answers the first script as timed out after printing its session id,
    /// then records what is sent to stop it.
    struct Hung {
        seen: Vec<String>,
        gone_after: usize,
    }

    impl Exec for Hung {
        fn host(&self) -> &str {
            "db1"
        }
        fn exec(&mut self, command: &str, stdin: &[u8], _t: Duration) -> Result<Output> {
            let sql = String::from_utf8_lossy(stdin).to_string();
            self.seen.push(format!("{command}\n{sql}"));
            if self.seen.len() == 1 {
                return Ok(Output {
                    stdout: b"mha-helper-marker\nmha-helper:session\nid\n4242\n".to_vec(),
                    stderr: b"mha-helper-pid=777\n".to_vec(),
                    timed_out: Some(Duration::from_millis(2500)),
                    ..Output::default()
                });
            }
            let n = if self.seen.len() > self.gone_after {
                0
            } else {
                1
            };
            Ok(Output {
                stdout: if sql.contains("PROCESSLIST") {
                    format!("mha-helper-marker\nmha-helper:left\nn\n{n}\n").into_bytes()
                } else {
                    Vec::new()
                },
                ..Output::default()
            })
        }
    }

    #[test]
    fn a_timed_out_script_is_killed_on_the_host_and_the_server_and_watched_until_gone() {
        let mut s = Script::new(Duration::from_secs(2));
        s.exec("read_only", "SET GLOBAL read_only = 1");
        let mut f = Hung {
            seen: Vec::new(),
            gone_after: 3,
        };
        let e = run(&mut f, &access(), &s, Duration::from_secs(2), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout { gone: true });
        assert!(e.message.contains("timed out after 2.5 s"), "{}", e.message);
        assert!(
            e.message.contains("session 4242 was killed"),
            "{}",
            e.message
        );
        // 1: the script; 2: kill -9 of our client only; 3: KILL + look;
        // 4: look again (gone).
        assert_eq!(f.seen.len(), 4, "{:#?}", f.seen);
        assert!(f.seen[1].contains("/proc/777/cmdline") && f.seen[1].contains("kill -9 777"));
        assert!(f.seen[2].contains("KILL CONNECTION 4242;"));
        assert!(f.seen[2].contains("WHERE ID = 4242"));
        assert!(!f.seen[3].contains("KILL CONNECTION"), "killed once");
    }

    /// A transport that keeps a process: answers the read-only question.
    struct Keeps(&'static str);

    impl Exec for Keeps {
        fn host(&self) -> &str {
            "db1"
        }
        fn exec(&mut self, _c: &str, _s: &[u8], _t: Duration) -> Result<Output> {
            unreachable!("asked, not run")
        }
        fn ask(
            &mut self,
            command: &str,
            prefix: &[u8],
            line: &str,
            tag: &str,
            _t: Duration,
        ) -> Result<String> {
            assert!(command.contains("--unbuffered") && !command.contains("pa$$"));
            assert!(String::from_utf8_lossy(prefix).starts_with("[client]\n"));
            assert!(line.contains("@@GLOBAL.read_only") && line.ends_with(";\n"));
            Ok(format!("{tag}{}", self.0))
        }
    }

    #[test]
    fn read_only_is_asked_of_a_kept_client_with_the_credentials_on_its_stdin() {
        let t = Duration::from_secs(1);
        assert_eq!(
            ask_read_only(&mut Keeps("1"), &access(), t, false).unwrap(),
            (true, None)
        );
        assert_eq!(
            ask_read_only(&mut Keeps("0"), &access(), t, false).unwrap(),
            (false, None)
        );
        assert!(ask_read_only(&mut Keeps("x"), &access(), t, false).is_err());
        // with the GTID set in the same answer, line breaks dropped
        assert_eq!(
            ask_read_only(&mut Keeps("1\tu:1-5,\nv:1"), &access(), t, true).unwrap(),
            (true, Some("u:1-5,v:1".into()))
        );
    }

    #[test]
    fn killed_client_is_not_a_success() {
        let s = Script::new(Duration::from_secs(30));
        let mut f = fake(0, "", "");
        f.reply.signal = Some("KILL".into());
        let e = run(&mut f, &access(), &s, Duration::from_secs(1), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport);
    }

    /// Run `access`'s remote command in a real /bin/sh whose PATH holds
    /// only `dir`; returns its exit status and stdout.
    fn run_command_in(access: &Access, dir: &std::path::Path) -> (i32, String) {
        use std::io::Write;
        let options = access.option_file();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &access.command(options.len())])
            .env_clear()
            .env("PATH", dir)
            .env("TMPDIR", dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut input = options.into_bytes();
        input.extend_from_slice(b"SELECT 1;\n");
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    #[test]
    fn with_no_client_set_the_host_runs_mariadb_else_mysql() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mha-helper-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // the tools the command uses, and fake clients naming themselves
        for tool in ["mktemp", "dd", "rm"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(real, dir.join(tool)).unwrap();
        }
        let fake = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho {name}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let auto = Access {
            client: None,
            ..access()
        };
        let ran = |a: &Access| run_command_in(a, &dir);
        // neither: 127, which run() reports as the client missing
        assert_eq!(ran(&auto).0, 127);
        fake("mysql");
        assert_eq!(ran(&auto), (0, "mysql".into()));
        fake("mariadb");
        assert_eq!(ran(&auto), (0, "mariadb".into()));
        // a configured client is run as given, even where mariadb exists
        assert_eq!(ran(&access()), (0, "mysql".into()));
        std::fs::remove_file(dir.join("mysql")).unwrap();
        assert_eq!(ran(&auto), (0, "mariadb".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
