//! Shared plumbing for the end-to-end tests against the namespaced lab
//! (`scripts/lab`): real MariaDB, real OpenSSH, real MHA.
//!
//! The lab is one shared resource, so every test takes [`Lab::lock`] (one at
//! a time, even when the harness runs threads) and starts from
//! `scripts/lab reset`. If the lab cannot come up, the test fails: a lab test
//! never skips itself.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const HOSTS: [&str; 3] = ["db1", "db2", "db3"];

static LOCK: Mutex<()> = Mutex::new(());
static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();

pub struct Lab {
    _guard: MutexGuard<'static, ()>,
    pub env: HashMap<String, String>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mha-helper")
}

fn lab_script() -> PathBuf {
    repo().join("scripts/lab")
}

/// Run `scripts/lab ARGS`, returning its output (never panics).
pub fn lab_raw(args: &[&str]) -> Output {
    Command::new(lab_script())
        .args(args)
        .env("MHALAB_HOOK_BIN", bin())
        .output()
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
    /// the hooks pointing at this build's binary.
    pub fn lock() -> Lab {
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let env = ENV
            .get_or_init(|| {
                lab(&["up"]);
                parse_env(&lab(&["env"]))
            })
            .clone();
        lab(&["reset"]);
        Lab { _guard: guard, env }
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
        let users = self.mysql(
            host,
            "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE is_role='N' ORDER BY User, Host",
        );
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
