//! Shared plumbing for the end-to-end tests against the namespaced lab
//! (`scripts/lab`): real MariaDB or MySQL (the lab's flavour, from
//! `MHALAB_FLAVOUR`), real OpenSSH, real MHA.
//!
//! The lab is one shared resource, so every test takes [`Lab::lock`] (one at
//! a time, even when the harness runs threads) and starts from
//! `scripts/lab reset`. If the lab cannot come up, the test fails: a lab test
//! never skips itself. While a test holds the lab, a [`watchdog`] fails it
//! if two hosts are ever writable at once.

#![allow(dead_code)]

pub mod watchdog;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const HOSTS: [&str; 3] = ["db1", "db2", "db3"];

static LOCK: Mutex<()> = Mutex::new(());
static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();

pub struct Lab {
    pub env: HashMap<String, String>,
    watchdog: watchdog::Watchdog,
    // last: released after the watchdog has stopped
    _guard: MutexGuard<'static, ()>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mha-helper")
}

pub fn lab_script() -> PathBuf {
    repo().join("scripts/lab")
}

/// The MHA password every test starts from: its lab instance's (see
/// scripts/lab), so that labs side by side never carry each other's.
pub fn default_mha_password() -> String {
    match std::env::var("MHALAB_INSTANCE").as_deref() {
        Ok("0") | Err(_) => "mha-Admin-Lab-1".into(),
        Ok(n) => format!("mha-Admin-Lab{n}x1"),
    }
}

/// Run `scripts/lab ARGS`, returning its output (never panics). The hooks
/// point at this build's binary; the MHA password is the default unless
/// `MHALAB_MHA_PASSWORD` is set for this process.
pub fn lab_raw(args: &[&str]) -> Output {
    lab_raw_env(args, &[])
}

pub fn lab_raw_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(lab_script());
    cmd.args(args)
        .env("MHALAB_HOOK_BIN", bin())
        .env("MHALAB_MHA_PASSWORD", default_mha_password());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run scripts/lab: {e}"))
}

/// Run `scripts/lab ARGS` and insist it succeeds.
pub fn lab(args: &[&str]) -> String {
    let out = lab_raw(args);
    if !out.status.success() {
        panic!(
            "scripts/lab {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    /// Take the lab for this test and bring it to its pristine state, with
    /// the hooks pointing at this build's binary; then start the watchdog.
    pub fn lock() -> Lab {
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let env = ENV
            .get_or_init(|| {
                lab(&["up"]);
                parse_env(&lab(&["env"]))
            })
            .clone();
        lab(&["reset"]);
        let hosts: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
        Lab {
            env,
            watchdog: watchdog::Watchdog::start(&lab_script(), &hosts),
            _guard: guard,
        }
    }

    /// The lab's server is MySQL (else MariaDB).
    pub fn is_mysql(&self) -> bool {
        self.var("MHALAB_SERVER_KIND") == "mysql"
    }

    /// `mariadb` or `mysql`, as the lab's server needs it.
    pub fn sql_for<'a>(&self, mariadb: &'a str, mysql: &'a str) -> &'a str {
        if self.is_mysql() {
            mysql
        } else {
            mariadb
        }
    }

    /// SQL that changes a replica's own data or grants: the lab's MySQL
    /// replicas run with super_read_only, lifted (read_only kept) around it.
    pub fn replica_sql(&self, host: &str, sql: &str) -> String {
        if self.is_mysql() {
            self.mysql(
                host,
                &format!("SET GLOBAL super_read_only = 0; {sql}; SET GLOBAL super_read_only = 1"),
            )
        } else {
            self.mysql(host, sql)
        }
    }

    /// Stop `host`'s replication threads.
    pub fn stop_replica(&self, host: &str) {
        self.mysql(host, self.sql_for("STOP SLAVE", "STOP REPLICA"));
    }

    /// Stop and forget `host`'s replication (it becomes a lone server).
    pub fn detach_replica(&self, host: &str) {
        self.mysql(
            host,
            self.sql_for(
                "STOP SLAVE; RESET SLAVE ALL",
                "STOP REPLICA; RESET REPLICA ALL",
            ),
        );
    }

    /// `host` replicates (configured, not started) from `source`: by file
    /// and position on MariaDB, by GTID on MySQL.
    pub fn point_at(&self, host: &str, source: &str) {
        let ip = self.var(&format!("MHALAB_IP_{source}"));
        let pw = self.var("MHALAB_REPL_PASSWORD");
        let sql = if self.is_mysql() {
            format!(
                "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_HOST='{ip}', SOURCE_PORT=3306, \
                 SOURCE_USER='repl', SOURCE_PASSWORD='{pw}', SOURCE_AUTO_POSITION=1, \
                 GET_SOURCE_PUBLIC_KEY=1"
            )
        } else {
            format!(
                "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{ip}', MASTER_PORT=3306, MASTER_USER='repl', \
                 MASTER_PASSWORD='{pw}', MASTER_USE_GTID=no"
            )
        };
        self.mysql(host, &sql);
    }

    /// The privilege that lets an account write through read_only.
    pub fn bypass_privilege(&self) -> &'static str {
        if self.is_mysql() {
            "CONNECTION_ADMIN"
        } else {
            "READ_ONLY ADMIN"
        }
    }

    /// SQL that lists every account (roles left out on MariaDB, where they
    /// have no host) as `'user'@'host'` strings, one per row, wrapped in
    /// `before` and `after`.
    fn accounts_sql(&self, before: &str, after: &str) -> String {
        let filter = if self.is_mysql() {
            ""
        } else {
            " WHERE is_role='N'"
        };
        format!(
            "SELECT CONCAT({before}QUOTE(User), '@', QUOTE(Host){after}) FROM mysql.user{filter} \
             ORDER BY User, Host"
        )
    }

    /// Answered `read_only` readings the watchdog has taken so far.
    pub fn watchdog_samples(&self) -> u64 {
        self.watchdog.samples()
    }

    /// The watchdog's violations so far (does not fail the test).
    pub fn watchdog_violations(&self) -> Vec<String> {
        self.watchdog.violations()
    }

    /// For a test that makes two hosts writable on purpose: violations are
    /// still recorded and printed, but no longer fail the test.
    pub fn allow_two_writable(&self, reason: &str) {
        self.watchdog.allow_two_writable(reason);
    }

    pub fn watchdog(&self) -> &watchdog::Watchdog {
        &self.watchdog
    }

    /// Reset the lab with another MHA password (MHA config, accounts and
    /// option files all change); the next `Lab::lock` goes back to the
    /// default.
    pub fn reset_with_password(&mut self, pw: &str) {
        let out = lab_raw_env(&["reset"], &[("MHALAB_MHA_PASSWORD", pw)]);
        assert!(
            out.status.success(),
            "lab reset with another password: {}",
            both(&out)
        );
        self.env = parse_env(&lab(&["env"]));
        assert_eq!(self.var("MHALAB_MHA_PASSWORD"), pw);
    }

    pub fn var(&self, k: &str) -> String {
        self.env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("lab env has no {k}"))
    }

    pub fn app_cnf(&self) -> String {
        self.var("MHALAB_APP_CNF")
    }
    pub fn helper_cnf(&self) -> String {
        self.var("MHALAB_HELPER_CNF")
    }
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.var("MHALAB_DIR"))
    }

    /// SQL as MariaDB root on `host`'s own server; tab-separated rows.
    pub fn mysql(&self, host: &str, sql: &str) -> String {
        lab(&["mysql", host, sql])
    }

    /// One value from a query.
    pub fn value(&self, host: &str, sql: &str) -> String {
        let out = self.mysql(host, sql);
        out.lines().nth(1).unwrap_or_default().to_string()
    }

    /// `mha-helper ARGS` in the manager's namespace.
    pub fn helper(&self, args: &[&str]) -> Output {
        self.helper_env(args, &[])
    }

    pub fn helper_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(lab_script());
        cmd.arg("exec").arg("mgr").arg(bin()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mha-helper: {e}"))
    }

    /// `mha-helper COMMAND --conf APP --helper-conf HELPER EXTRA...` with
    /// the lab's helper settings and MHA file `conf`.
    pub fn command_on(&self, conf: &str, command: &str, extra: &[&str]) -> Output {
        let helper = self.helper_cnf();
        let mut args = vec![command, "--conf", conf, "--helper-conf", &helper];
        args.extend_from_slice(extra);
        self.helper(&args)
    }

    /// `mha-helper COMMAND` on the lab's own files.
    pub fn command(&self, command: &str, extra: &[&str]) -> Output {
        self.command_on(&self.app_cnf(), command, extra)
    }

    /// `check --conf` with the lab's files plus `extra` arguments.
    pub fn check(&self, extra: &[&str]) -> Output {
        let conf = self.app_cnf();
        let helper = self.helper_cnf();
        let mut args = vec!["check", "--conf", &conf, "--helper-conf", &helper];
        args.extend_from_slice(extra);
        self.helper(&args)
    }

    pub fn exec(&self, host: &str, cmd: &str) -> String {
        lab(&["exec", host, "sh", "-c", cmd])
    }

    /// Grants of every account on `host`, keyed by account, sorted lines.
    pub fn all_grants(&self, host: &str) -> Vec<(String, Vec<String>)> {
        let users = self.mysql(host, &self.accounts_sql("", ""));
        let mut out = Vec::new();
        for acct in users.lines().skip(1) {
            let acct = acct.replace("\\\\", "\\");
            let g = self.mysql(host, &format!("SHOW GRANTS FOR {acct}"));
            let mut lines: Vec<String> = g.lines().skip(1).map(String::from).collect();
            lines.sort();
            out.push((acct, lines));
        }
        out
    }
}

impl Drop for Lab {
    /// Stop the watchdog and print its sample counts; fail the test if it saw
    /// two writable hosts (unless allowed, or the test is failing already)
    /// or could read no host at all.
    fn drop(&mut self) {
        self.watchdog.stop();
        eprintln!("{}", self.watchdog.summary());
        if std::thread::panicking() {
            for v in self.watchdog.violations() {
                eprintln!("watchdog: {v}");
            }
            return;
        }
        // a watchdog that cannot read any host watches nothing
        assert!(
            self.watchdog.samples() > 0 || self.watchdog.elapsed() < Duration::from_secs(1),
            "watchdog: no host answered in {:?}",
            self.watchdog.elapsed()
        );
        let v = self.watchdog.violations();
        if v.is_empty() {
            return;
        }
        let list = v.join("\n  ");
        if let Some(reason) = self.watchdog.allowed() {
            eprintln!("watchdog: two writable hosts allowed ({reason}):\n  {list}");
        } else {
            panic!(
                "watchdog: two hosts writable at once ({} samples):\n  {list}",
                self.watchdog.samples()
            );
        }
    }
}

pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect()
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("'\\''", "'")
    } else if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, for assertion messages.
pub fn both(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Poll `f` until it returns true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A copy of a file with `edit` applied, next to the original.
pub fn edited_copy(path: &str, suffix: &str, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let p = format!("{path}.{suffix}");
    std::fs::write(&p, edit(&text)).unwrap();
    p
}

pub fn exists(p: &str) -> bool {
    Path::new(p).exists()
}

/// Samples every process's argv and environment on the machine (all lab
/// hosts share this kernel's /proc) until stopped, collecting any that
/// contain one of the secrets.
pub struct LeakWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(Vec<String>, u64)>>,
}

impl LeakWatch {
    pub fn start(secrets: Vec<String>) -> LeakWatch {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let me = std::process::id();
        // Labs run side by side: another lab's processes are not ours.
        let other_lab = |environ: &str| {
            let mine = format!(
                "MHALAB_INSTANCE={}",
                std::env::var("MHALAB_INSTANCE").unwrap_or_else(|_| "0".into())
            );
            environ.contains("MHALAB_INSTANCE=") && !environ.contains(&mine)
        };
        let handle = std::thread::spawn(move || {
            let mut hits = Vec::new();
            let mut samples = 0u64;
            while !s2.load(Ordering::Relaxed) {
                samples += 1;
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    break;
                };
                for e in dir.flatten() {
                    let name = e.file_name();
                    let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                        continue;
                    };
                    if pid == me {
                        continue;
                    }
                    let environ = std::fs::read(format!("/proc/{pid}/environ"))
                        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                        .unwrap_or_default();
                    if other_lab(&environ) {
                        continue;
                    }
                    for what in ["cmdline", "environ"] {
                        let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) else {
                            continue;
                        };
                        let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                        for s in &secrets {
                            if text.contains(s.as_str()) {
                                hits.push(format!("pid {pid} {what}: {text}"));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (hits, samples)
        });
        LeakWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop sampling; returns (leaks found, number of sweeps made).
    pub fn finish(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Everything a switch may touch, to compare before and after: each host's
/// read_only, whom it replicates from (and whether both threads run), and
/// every account's grants (normalized, sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub hosts: Vec<HostState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub host: String,
    pub read_only: bool,
    /// Master_Host and whether IO and SQL threads both run.
    pub replica_of: Option<(String, bool)>,
    pub grants: Vec<(String, Vec<String>)>,
}

impl Lab {
    /// Grants of every account on `host` (MariaDB: roles left out), in two
    /// client calls. On MySQL each account's default roles are added as
    /// `DEFAULT ROLE 'r'@'h'` lines: MySQL's SHOW GRANTS does not show them.
    pub fn grants(&self, host: &str) -> Vec<(String, Vec<String>)> {
        let users = self.mysql(host, &self.accounts_sql("'SHOW GRANTS FOR ', ", ", ';'"));
        let mut script: String = users
            .lines()
            .skip(1)
            .map(|l| l.replace("\\\\", "\\") + "\n")
            .collect();
        if self.is_mysql() {
            script.push_str(
                "SELECT CONCAT(USER, '@', HOST) AS `Grants for default roles`, \
                 CONCAT('DEFAULT ROLE ', QUOTE(DEFAULT_ROLE_USER), '@', QUOTE(DEFAULT_ROLE_HOST)) \
                 FROM mysql.default_roles ORDER BY 1, 2;\n",
            );
        }
        let out = lab_stdin(&["mysql", host], &script);
        let mut res: Vec<(String, Vec<String>)> = Vec::new();
        let mut default_roles = false;
        for line in out.lines() {
            if line.starts_with("Grants for default roles") {
                default_roles = true;
            } else if default_roles {
                let (acct, role) = line.split_once('\t').unwrap_or((line, ""));
                if let Some(e) = res.iter_mut().find(|(a, _)| a == acct) {
                    e.1.push(role.to_string());
                }
            } else if let Some(acct) = line.strip_prefix("Grants for ") {
                res.push((acct.to_string(), Vec::new()));
            } else if let Some(last) = res.last_mut() {
                last.1.push(mha_helper::grants::normalize(line));
            }
        }
        for (_, g) in res.iter_mut() {
            g.sort();
        }
        res
    }

    /// read_only, replication and grants of `host`, in three client calls.
    pub fn host_state(&self, host: &str) -> HostState {
        let out = self.mysql(
            host,
            &format!(
                "SELECT @@GLOBAL.read_only; {}",
                self.sql_for("SHOW SLAVE STATUS", "SHOW REPLICA STATUS")
            ),
        );
        // The first result (a header and a value), then the replica
        // status: a header and a row, or nothing on a host that is not one.
        let mut lines = out.lines().skip(1);
        let ro = lines.next() == Some("1");
        let (header, row) = (lines.next(), lines.next());
        let replica_of = header.zip(row).map(|(header, row)| {
            let cols: Vec<&str> = header.split('\t').collect();
            let vals: Vec<&str> = row.split('\t').collect();
            // MySQL's names first, then MariaDB's
            let get = |mysql: &str, mariadb: &str| {
                cols.iter()
                    .position(|c| *c == mysql || *c == mariadb)
                    .map(|i| vals[i].to_string())
                    .unwrap_or_default()
            };
            (
                get("Source_Host", "Master_Host"),
                get("Replica_IO_Running", "Slave_IO_Running") == "Yes"
                    && get("Replica_SQL_Running", "Slave_SQL_Running") == "Yes",
            )
        });
        HostState {
            host: host.to_string(),
            read_only: ro,
            replica_of,
            grants: self.grants(host),
        }
    }

    /// Every host's state, the hosts read side by side.
    pub fn state(&self) -> State {
        let hosts = std::thread::scope(|s| {
            let reads: Vec<_> = HOSTS
                .iter()
                .map(|h| s.spawn(move || self.host_state(h)))
                .collect();
            reads.into_iter().map(|r| r.join().unwrap()).collect()
        });
        State { hosts }
    }

    /// Wait until replication settles (replicas caught up), then read state.
    pub fn settled_state(&self) -> State {
        std::thread::sleep(Duration::from_millis(300));
        self.state()
    }

    /// Write the helper settings file used by the lab's hooks. The lab's
    /// `journal_dir` is kept (added under `[default]`).
    pub fn set_helper_conf(&self, text: &str) {
        let dir = format!("journal_dir = {}\n", self.journal_dir().display());
        let text = match text.find("[default]\n") {
            Some(i) => format!("{}[default]\n{dir}{}", &text[..i], &text[i + 10..]),
            None => format!("[default]\n{dir}{text}"),
        };
        std::fs::write(self.helper_cnf(), text).unwrap();
    }

    /// mha-helper's state directory in the lab (journal, lock, ...).
    pub fn journal_dir(&self) -> PathBuf {
        PathBuf::from(self.var("MHALAB_JOURNAL_DIR"))
    }

    /// The open journal's path.
    pub fn journal(&self) -> PathBuf {
        self.journal_dir().join("mha-helper.app1.journal")
    }

    /// A client option file for an application account (0600, no argv
    /// password), returning its path.
    pub fn app_client_cnf(&self, user: &str) -> String {
        use std::os::unix::fs::OpenOptionsExt;
        let p = format!(
            "{}/manager/client-{}.cnf",
            self.var("MHALAB_DIR"),
            user.replace('\'', "_")
        );
        // written aside and renamed: a client started a moment ago may be
        // reading it (many sessions held at once)
        let tmp = format!(
            "{p}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .unwrap();
        use std::io::Write;
        write!(
            f,
            "[client]\nuser=\"{}\"\npassword=\"{}\"\n",
            user,
            self.var("MHALAB_APP_PASSWORD")
        )
        .unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    /// Start an application client in the manager's namespace running SQL
    /// against `host` (by address); returns the child.
    pub fn app_session(&self, user: &str, host: &str, sql: &str) -> std::process::Child {
        let cnf = self.app_client_cnf(user);
        let ip = self.var(&format!("MHALAB_IP_{host}"));
        Command::new(lab_script())
            .args([
                "exec",
                "mgr",
                "mysql",
                &format!("--defaults-extra-file={cnf}"),
                "-h",
                &ip,
                "appdb",
                "-e",
                sql,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// An application client in the manager's namespace connected to
    /// `host` (by address) that runs `sql` and then stays connected, idle,
    /// until its stdin is closed (dropped with the child's `stdin`).
    pub fn app_session_held(&self, user: &str, host: &str, sql: &str) -> std::process::Child {
        use std::io::Write;
        let cnf = self.app_client_cnf(user);
        let ip = self.var(&format!("MHALAB_IP_{host}"));
        let mut child = Command::new(lab_script())
            .args(["exec", "mgr", "mysql"])
            .arg(format!("--defaults-extra-file={cnf}"))
            .args(["-h", &ip, "appdb"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
        child
    }

    /// A root session on `host`'s own server (socket) running `sql` in the
    /// background.
    pub fn app_session_root(&self, host: &str, sql: &str) -> std::process::Child {
        Command::new(lab_script())
            .args(["mysql", host, sql])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run SQL as an application account against `host`; Ok(stdout) or
    /// Err(stderr).
    pub fn app_sql(&self, user: &str, host: &str, sql: &str) -> Result<String, String> {
        let out = self
            .app_session(user, host, sql)
            .wait_with_output()
            .unwrap();
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(stderr(&out))
        }
    }

    /// MHA's arguments to the online hook for `command`, orig -> new.
    fn online_args(&self, command: &str, orig: &str, new: &str) -> Vec<String> {
        let pw = self.var("MHALAB_MHA_PASSWORD");
        vec![
            "master-ip-online-change".into(),
            format!("--conf={}", self.app_cnf()),
            format!("--helper-conf={}", self.helper_cnf()),
            format!("--command={command}"),
            format!("--orig_master_host={orig}"),
            format!(
                "--orig_master_ip={}",
                self.var(&format!("MHALAB_IP_{orig}"))
            ),
            "--orig_master_port=3306".into(),
            "--orig_master_user=mha".into(),
            format!("--new_master_host={new}"),
            format!("--new_master_ip={}", self.var(&format!("MHALAB_IP_{new}"))),
            "--new_master_port=3306".into(),
            "--new_master_user=mha".into(),
            "--orig_master_ssh_user=mha".into(),
            "--new_master_ssh_user=mha".into(),
            "--orig_master_is_new_slave".into(),
            format!("--orig_master_password={}", mha_escape(&pw)),
            format!("--new_master_password={}", mha_escape(&pw)),
        ]
    }

    /// The online stop/start hook called directly, with MHA's arguments.
    pub fn online_hook(
        &self,
        command: &str,
        orig: &str,
        new: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let args = self.online_args(command, orig, new);
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        self.helper_env(&all, env)
    }

    /// The online hook started in the background.
    pub fn online_hook_spawn(
        &self,
        command: &str,
        orig: &str,
        new: &str,
        env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut cmd = Command::new(lab_script());
        cmd.arg("exec")
            .arg("mgr")
            .arg(bin())
            .args(self.online_args(command, orig, new));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The dead-master hook's `stopssh` for `host`, as MHA sends it.
    pub fn stopssh(&self, host: &str) -> Output {
        let ip = format!(
            "--orig_master_ip={}",
            self.var(&format!("MHALAB_IP_{host}"))
        );
        let orig = format!("--orig_master_host={host}");
        self.failover_hook(&[
            &orig,
            &ip,
            "--orig_master_port=3306",
            "--command=stopssh",
            "--ssh_user=mha",
        ])
    }

    /// What MHA printed during a `switchover` or `failover` command (the
    /// file its summary names; the hooks' own logs are in it).
    pub fn switch_log(&self, o: &Output) -> String {
        let out = stdout(o);
        let path = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("MHA output: "))
            .unwrap_or_else(|| panic!("the summary names no MHA output file:\n{out}"));
        std::fs::read_to_string(path.trim()).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The lab's MHA manager log.
    pub fn manager_log(&self) -> String {
        std::fs::read_to_string(self.var("MHALAB_MANAGER_LOG")).unwrap_or_default()
    }

    /// `masterha_manager` started in the manager's namespace, monitoring;
    /// ended (its whole process group) when the value is dropped.
    pub fn start_manager(&self) -> Manager {
        use std::os::unix::process::CommandExt;
        let conf = format!("--conf={}", self.app_cnf());
        let child = Command::new(lab_script())
            .args([
                "exec",
                "mgr",
                "masterha_manager",
                &conf,
                "--ignore_last_failover",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let m = Manager { child };
        let watching = wait_for(Duration::from_secs(30), || {
            self.manager_log()
                .contains("Ping(SELECT) succeeded, waiting until MySQL doesn't respond")
        });
        assert!(
            watching,
            "masterha_manager never started monitoring:\n{}",
            self.manager_log()
        );
        m
    }

    pub fn recover(&self) -> Output {
        self.recover_with(&[])
    }

    /// A copy of the lab's MHA config in `manager/<dir>/app1.cnf` (so the
    /// application is still app1) with `line` added to [server default],
    /// e.g. a report_script; `{conf}` in it becomes the copy's path.
    pub fn app_cnf_with(&self, dir: &str, line: &str) -> String {
        self.app_cnf_edited(dir, |text, conf| {
            let line = line.replace("{conf}", conf);
            let text = text.replacen(
                "[server default]\n",
                &format!("[server default]\n{line}\n"),
                1,
            );
            assert!(text.contains(&line), "{text}");
            text
        })
    }

    /// A copy of the lab's MHA config in `manager/<dir>/app1.cnf`, its hooks
    /// pointing at the copy, then edited by `edit(text, copy's path)`.
    pub fn app_cnf_edited(&self, dir: &str, edit: impl Fn(&str, &str) -> String) -> String {
        let dir = self.dir().join("manager").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("app1.cnf").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(self.app_cnf()).unwrap().replace(
            &format!("--conf={}", self.app_cnf()),
            &format!("--conf={conf}"),
        );
        std::fs::write(&conf, edit(&text, &conf)).unwrap();
        conf
    }

    /// `mha-helper recover` with extra arguments (`--force`, `--abandon`).
    pub fn recover_with(&self, extra: &[&str]) -> Output {
        let conf = self.app_cnf();
        let helper = self.helper_cnf();
        let mut args = vec!["recover", "--conf", &conf, "--helper-conf", &helper];
        args.extend_from_slice(extra);
        self.helper(&args)
    }

    /// `mha-helper switchover` started in the background (its own process
    /// group, so a test can end all of it).
    pub fn switchover_spawn(&self, new: &str, env: &[(&str, &str)]) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(lab_script());
        cmd.args([
            "exec",
            "mgr",
            bin(),
            "switchover",
            "--conf",
            &self.app_cnf(),
            "--helper-conf",
            &self.helper_cnf(),
            "--new-master",
            new,
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// A fresh directory for `wait@POINT` fault files.
    pub fn fault_dir(&self, name: &str) -> PathBuf {
        let d = self.dir().join("manager").join(format!("faults-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The pid of the session keeper the open journal names.
    pub fn keeper_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.journal()).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["t"] == "note" && v["key"] == "keeper")
            .and_then(|v| v["value"]["pid"].as_u64())
            .map(|p| p as u32)
    }

    /// Pids of the running `masterha_master_switch` for this lab's app.
    pub fn mha_switch_pids(&self) -> Vec<u32> {
        let conf = self.app_cnf();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("masterha_master_switch") && c.contains(&conf)
                })
            })
            .collect()
    }

    /// Who writes where, as the master and replicas of `master` must be
    /// after a switch to it: it writable and nobody's replica, every other
    /// host read-only and replicating from it with both threads running.
    pub fn assert_settled_on(&self, master: &str) {
        let ip = self.var(&format!("MHALAB_IP_{master}"));
        for h in self.state().hosts {
            if h.host == master {
                assert!(!h.read_only && h.replica_of.is_none(), "{h:?}");
            } else {
                assert!(h.read_only, "{h:?}");
                assert_eq!(h.replica_of, Some((ip.clone(), true)), "{}", h.host);
            }
        }
    }

    /// Every live session keeper process of this lab's state directory.
    pub fn keeper_processes(&self) -> Vec<u32> {
        let socket = self.journal_dir().display().to_string();
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("mha-helper keeper") && c.contains(&socket)
                })
            })
            .collect();
        pids.sort();
        pids
    }

    /// `mha-helper failover --dead-master DEAD [EXTRA]` in the manager namespace.
    pub fn failover(&self, dead: &str, extra: &[&str]) -> Output {
        self.failover_with_conf(&self.app_cnf(), dead, extra)
    }

    /// `mha-helper failover` with another MHA config (a copy with extra
    /// script settings, see `app_cnf_with`).
    pub fn failover_with_conf(&self, conf: &str, dead: &str, extra: &[&str]) -> Output {
        let helper = self.helper_cnf();
        let mut args = vec![
            "failover",
            "--conf",
            conf,
            "--helper-conf",
            &helper,
            "--dead-master",
            dead,
        ];
        args.extend_from_slice(extra);
        self.helper(&args)
    }

    /// The dead-master hook called directly with MHA-style `args` (the new
    /// master's password appended, as MHA does).
    pub fn failover_hook(&self, args: &[&str]) -> Output {
        let conf = format!("--conf={}", self.app_cnf());
        let helper = format!("--helper-conf={}", self.helper_cnf());
        let pw = format!("--new_master_password={}", self.var("MHALAB_MHA_PASSWORD"));
        let mut all = vec!["master-ip-failover", conf.as_str(), helper.as_str()];
        all.extend_from_slice(args);
        all.push(&pw);
        self.helper(&all)
    }

    /// `mha-helper switchover` in the manager namespace.
    pub fn switchover(&self, new: &str, env: &[(&str, &str)]) -> Output {
        let conf = self.app_cnf();
        let helper = self.helper_cnf();
        self.helper_env(
            &[
                "switchover",
                "--conf",
                &conf,
                "--helper-conf",
                &helper,
                "--new-master",
                new,
            ],
            env,
        )
    }
}

/// A running masterha_manager (see `Lab::start_manager`).
pub struct Manager {
    child: std::process::Child,
}

impl Manager {
    /// Wait up to `limit` for it to exit by itself (it does after a
    /// failover); true if it did.
    pub fn exits_within(&mut self, limit: Duration) -> bool {
        wait_for(limit, || matches!(self.child.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            // SAFETY: the process group of the manager this test started.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// Wait for a `wait@POINT` fault's file in `dir` to appear; returns its path.
pub fn wait_point(dir: &Path, point: &str, limit: Duration) -> PathBuf {
    let f = dir.join(format!("mha-helper-wait.{}", point.replace(':', "_")));
    assert!(
        wait_for(limit, || f.exists()),
        "the process never reached {point}"
    );
    f
}

/// Wait for a child to end, killing its process group after `limit`.
pub fn finish(mut child: std::process::Child, limit: Duration) -> Output {
    let done = wait_for(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !done {
        // SAFETY: the group of a child this test started.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    }
    child.wait_with_output().unwrap()
}

/// Whether `pid` runs a command line containing `what` (before a test
/// ends a process it started, by pid).
pub fn runs(pid: u32, what: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(what)
        })
        .unwrap_or(false)
}

/// MHA's escape_for_shell as the hook receives it (after sh): a backslash
/// before each special character.
pub fn mha_escape(s: &str) -> String {
    let special = "\"!#&;`|*?~<>^()[]{}$, \\";
    let mut out = String::new();
    for c in s.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Run `cmd` with `input` on its stdin; its output. The input is written
/// from another thread: a command that answers while it reads (thousands
/// of SHOW GRANTS) would otherwise block on a full stdout pipe while we
/// block on its full stdin.
pub fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    std::thread::scope(|s| {
        // (a command that exits without reading it all is judged by its output)
        s.spawn(move || stdin.write_all(input.as_bytes()).ok());
        child.wait_with_output().unwrap()
    })
}

/// `scripts/lab ARGS` with `input` on stdin.
pub fn lab_stdin(args: &[&str], input: &str) -> String {
    let out = with_stdin(Command::new(lab_script()).args(args), input);
    assert!(
        out.status.success(),
        "scripts/lab {}: {}",
        args.join(" "),
        both(&out)
    );
    stdout(&out)
}
