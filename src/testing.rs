//! Scripted fakes for unit tests of the switch logic: a host whose "SSH"
//! answers each SQL script from a table, records what it was sent, and can
//! be told to fail statements. Only pure logic is tested this way; the lab
//! tests run the real thing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::cluster::{Host, HostSpec};
use crate::config::helper::HelperConfig;
use crate::config::mha::MhaConfig;
use crate::mysql::{Flavor, ServerInfo};
use crate::ssh::{Exec, Output};

/// What a fake host was sent, shared with the test.
pub type Log = Arc<Mutex<Vec<String>>>;

type Hook = Box<dyn FnMut(&str) + Send>;

pub struct FakeExec {
    name: String,
    /// Result-set bodies (header line + rows) by query name.
    pub answers: HashMap<String, String>,
    /// Statements (substrings) that fail with a MySQL error.
    pub failing: Vec<String>,
    pub log: Log,
    /// Called with each script before it is answered.
    pub on_script: Option<Hook>,
    /// The server's read_only, as SET GLOBAL statements leave it; queries
    /// named `ro` or `check` read it.
    pub read_only: bool,
    /// Slept before each answer: a slow host.
    pub delay: Duration,
    /// Scripts holding any of these never answer: the transport gives up
    /// at the deadline, as over a cut link (`timed_out`).
    pub hanging: Vec<String>,
    /// Answers that replace `answers` once a KILL was sent: the server
    /// dropped the killed sessions.
    pub after_kill: HashMap<String, String>,
    killed: bool,
}

impl FakeExec {
    pub fn new(name: &str, log: &Log) -> FakeExec {
        FakeExec {
            name: name.to_string(),
            answers: HashMap::new(),
            failing: Vec::new(),
            log: log.clone(),
            on_script: None,
            read_only: false,
            delay: Duration::ZERO,
            hanging: Vec::new(),
            after_kill: HashMap::new(),
            killed: false,
        }
    }
}

impl Exec for FakeExec {
    fn host(&self) -> &str {
        &self.name
    }

    fn exec(&mut self, _command: &str, stdin: &[u8], timeout: Duration) -> Result<Output> {
        let text = String::from_utf8_lossy(stdin);
        let start = text.find("SET SESSION sql_mode").unwrap_or(0);
        let sql = &text[start..];
        // The client numbers lines from the start of the SQL (the option
        // file before it is read apart).
        let first = text.find("SELECT 'mha-helper:session'").unwrap_or(start);
        let skipped = text[first.min(start)..start].matches('\n').count();
        self.log
            .lock()
            .unwrap()
            .push(format!("{}: {sql}", self.name));
        if let Some(h) = self.on_script.as_mut() {
            h(sql);
        }
        std::thread::sleep(self.delay);
        if self.hanging.iter().any(|h| sql.contains(h.as_str())) {
            return Ok(Output {
                status: -1,
                signal: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                timed_out: Some(timeout),
            });
        }
        let mut out = String::new();
        for (i, line) in sql.lines().enumerate() {
            if let Some(bad) = self.failing.iter().find(|f| line.contains(f.as_str())) {
                return Ok(Output {
                    status: 1,
                    signal: None,
                    stdout: out.into_bytes(),
                    stderr: format!(
                        "ERROR 1227 (42000) at line {}: Access denied ({bad})\n",
                        skipped + i + 1
                    )
                    .into_bytes(),
                    timed_out: None,
                });
            }
            if let Some(v) = line.strip_prefix("SET GLOBAL read_only = ") {
                self.read_only = v.starts_with('1');
            }
            self.killed |= line.starts_with("KILL ");
            if let Some(rest) = line.strip_prefix("SELECT 'mha-helper:") {
                let name = rest.split('\'').next().unwrap_or_default();
                out.push_str(&format!("mha-helper-marker\nmha-helper:{name}\n"));
                if name == "ro" || name == "check" {
                    out.push_str(&format!("read_only\n{}\n", u8::from(self.read_only)));
                } else if let Some(body) = self
                    .after_kill
                    .get(name)
                    .filter(|_| self.killed)
                    .or_else(|| self.answers.get(name))
                {
                    out.push_str(body);
                }
            }
        }
        Ok(Output {
            status: 0,
            signal: None,
            stdout: out.into_bytes(),
            stderr: Vec::new(),
            timed_out: None,
        })
    }
}

/// A MariaDB 10.11 host named `name` from a minimal MHA config, with
/// `exec` as its connection.
pub fn host(name: &str, mut exec: FakeExec, read_only: bool) -> Host {
    exec.read_only = read_only;
    // One directory per call: tests run in parallel and may share names.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("mha-helper-fake-{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("app.cnf");
    std::fs::write(
        &conf,
        format!("[server default]\nuser=mha\npassword=pw\nrepl_user=repl\nmanager_workdir={}\n[server1]\nhostname={name}\nip=192.0.2.1\n", dir.display()),
    )
    .unwrap();
    let mha =
        MhaConfig::load_with_resolver(&conf, Some(&dir.join("none")), &|_| Ok("192.0.2.1".into()))
            .unwrap();
    let helper = HelperConfig::load(None).unwrap();
    let spec = HostSpec::new(&mha.servers[0], helper.for_host(name));
    Host {
        spec,
        sent: None,
        conn: Box::new(exec),
        info: Some(ServerInfo {
            flavor: Flavor::MariaDb,
            version: "10.11.19-MariaDB".into(),
            version_number: (10, 11, 19),
            server_id: 1,
            read_only,
            super_read_only: None,
            log_bin: true,
            connection_id: 7,
            current_user: "mha@%".into(),
            replica: None,
            gtid_mode: false,
            gtid_executed: String::new(),
            server_uuid: String::new(),
        }),
    }
}

static TEMP_DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A directory of a test's own under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = TEMP_DIRS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mha-helper-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` in it; returns the path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
