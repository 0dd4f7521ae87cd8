//! The operator commands that drive MHA: `switchover` (the historic
//! `mysql_online_failover`) and `failover` (the historic `mysql_failover`).
//! Both run `masterha_master_switch` non-interactively, show its progress
//! (a spinner on a terminal, log lines otherwise), keep its whole output in
//! a file beside the journal, and end with a short summary.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::{bad_input, Code, Refused};
use crate::online::stop::SWITCH_ID_VAR;
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::{new_id, Journal};
use crate::state::StateDir;

/// A spinner on stderr when it is a terminal (so MHA's captured logs stay
/// clean); log lines go through it while it spins.
pub fn spinner(show: bool, msg: &str) -> Option<ProgressBar> {
    if !show {
        return None;
    }
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.enable_steady_tick(Duration::from_millis(120));
    b.set_message(msg.to_string());
    crate::logger::set_progress(Some(b.clone()));
    Some(b)
}

/// What one masterha_master_switch run printed and returned.
pub struct SwitchRun {
    pub success: bool,
    pub output: Vec<String>,
    pub log_file: PathBuf,
    pub elapsed: Duration,
}

/// Run masterha_master_switch with `args`, streaming its output.
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
    let mut child = Command::new(&program)
        .args(args)
        .env(SWITCH_ID_VAR, id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is mha4mysql-manager installed?)"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let bar = spinner(std::io::stderr().is_terminal(), what);
    let mut output = Vec::new();
    for line in rx {
        log::debug!("mha: {line}");
        if let Some(b) = &bar {
            b.set_message(format!(
                "{what}: {}",
                line.chars().take(100).collect::<String>()
            ));
        }
        output.push(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().context("waiting for masterha_master_switch")?;
    // With manager_log set, MHA writes its log there instead of stdout.
    if let Some((path, from)) = &manager_log {
        if let Ok(text) = std::fs::read(path) {
            let new = text.get(*from as usize..).unwrap_or_default();
            output.extend(String::from_utf8_lossy(new).lines().map(String::from));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
        crate::logger::set_progress(None);
    }
    let log_file = state.switch_log(id);
    if let Err(e) = state.write(&log_file, (output.join("\n") + "\n").as_bytes()) {
        log::warn!("cannot keep MHA's output: {e:#}");
    }
    Ok(SwitchRun {
        success: status.success(),
        output,
        log_file,
        elapsed: started.elapsed(),
    })
}

fn base_args(setup: &Setup, paths: &ConfigPaths) -> Vec<String> {
    let mut a = vec![format!("--conf={}", setup.mha.app_path.display())];
    if let Some(g) = &paths.global {
        a.push(format!("--global_conf={}", g.display()));
    }
    a
}

fn check_hook(setup: &Setup, key: &str) {
    let configured = setup
        .mha
        .servers
        .first()
        .and_then(|s| s.values.get(key).cloned())
        .unwrap_or_default();
    if configured.is_empty() {
        log::warn!(
            "{key} is not set in {}: MHA will not call mha-helper's hook",
            setup.mha.app_path.display()
        );
    }
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `mha-helper switchover`.
pub fn switchover(
    paths: &ConfigPaths,
    new_master: Option<&str>,
    orig_as_slave: bool,
    json: bool,
) -> Result<Code> {
    let setup = paths.load()?;
    if let Some(n) = new_master {
        setup.hostname(n)?;
    }
    check_hook(&setup, "master_ip_online_change_script");
    let state = setup.state()?;
    // Held for the whole switch; the hooks MHA runs work under it.
    let mut lock =
        crate::ssh::keeper::acquire(&state, "switchover").map_err(|e| e.context(Refused))?;
    if let Some(j) = Journal::open(&state)? {
        bail!(
            "an unfinished switch is recorded in {}; run `mha-helper recover --conf {}` first",
            j.path().display(),
            setup.mha.app_path.display()
        );
    }
    let id = new_id();
    lock.set_switch(&id);
    let mut args = base_args(&setup, paths);
    args.push("--master_state=alive".into());
    if let Some(n) = new_master {
        args.push(format!("--new_master_host={n}"));
    }
    if orig_as_slave {
        args.push("--orig_master_is_new_slave".into());
    }
    args.push("--interactive=0".into());
    let run = run_switch(&setup, &state, &args, &id, "online switchover")?;
    let closed = state.closed_journal(&id, "completed");
    let recover = crate::recover::Options {
        json,
        ..Default::default()
    };
    if !run.success {
        log::error!(
            "masterha_master_switch failed after {:?}:\n{}",
            run.elapsed,
            tail(&run.output, 15)
        );
        if Journal::open(&state)?.is_some() {
            log::warn!("MHA failed after mha-helper blocked writes: recovering now");
            crate::recover::run(paths, recover)?;
        }
        bail!(
            "online switchover failed; MHA's output is in {}",
            run.log_file.display()
        );
    }
    if Journal::open(&state)?.is_some() {
        log::warn!("MHA switched but mha-helper's start phase did not finish: recovering now");
        crate::recover::run(
            paths,
            crate::recover::Options {
                json: false,
                ..recover
            },
        )?;
    }
    summary_from_journal(&closed, &run, json)?;
    Ok(Code::Ok)
}

/// Print what the hooks recorded (stop and start reports) and the time.
fn summary_from_journal(closed: &Path, run: &SwitchRun, json: bool) -> Result<()> {
    let j = Journal::open_path(closed)?;
    let note = |k: &str| j.as_ref().and_then(|j| j.note_value(k).cloned());
    let (stop, start) = (note("stop-report"), note("start-report"));
    if json {
        let v = serde_json::json!({
            "outcome": "switched",
            "elapsed_ms": run.elapsed.as_millis() as u64,
            "mha_log": run.log_file.display().to_string(),
            "stop": stop, "start": start,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let get = |v: &Option<serde_json::Value>, k: &str| v.as_ref().and_then(|v| v.get(k)).cloned();
    let new = get(&start, "new_master")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let orig = get(&start, "orig_master")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    println!("switched {orig} -> {new} in {} ms", run.elapsed.as_millis());
    if let Some(ms) = get(&start, "write_block_ms") {
        println!("  write-block window (first revoke to new master writable): {ms} ms");
    }
    if let Some(k) = get(&stop, "killed_sessions").and_then(|v| v.as_array().cloned()) {
        println!("  sessions killed on {orig}: {}", k.len());
        for s in k {
            let t = |k: &str| {
                s[k].as_str()
                    .map(String::from)
                    .unwrap_or_else(|| s[k].to_string())
            };
            println!(
                "    id={} user={} host={} command={} time={}s",
                t("id"),
                t("user"),
                t("host"),
                t("command"),
                t("time")
            );
        }
    }
    if let Some(a) = get(&stop, "accounts_changed").and_then(|v| v.as_array().cloned()) {
        println!("  accounts blocked then restored on {orig}: {}", a.len());
    }
    for w in [stop, start]
        .iter()
        .flatten()
        .filter_map(|r| r.get("warnings")?.as_array().cloned())
        .flatten()
    {
        println!("  warning: {}", w.as_str().unwrap_or_default());
    }
    println!("  MHA output: {}", run.log_file.display());
    Ok(())
}

/// `mha-helper failover`.
pub fn failover(
    paths: &ConfigPaths,
    dead: &str,
    new_master: Option<&str>,
    json: bool,
) -> Result<Code> {
    let setup = paths.load()?;
    let dead_host = setup.hostname(dead)?;
    if let Some(n) = new_master {
        if setup.hostname(n)? == dead_host {
            return Err(bad_input(anyhow!(
                "--new-master cannot be the dead master {dead_host}"
            )));
        }
    }
    check_hook(&setup, "master_ip_failover_script");
    let state = setup.state()?;
    let _lock = crate::ssh::keeper::acquire(&state, "failover").map_err(|e| e.context(Refused))?;
    let server = setup
        .mha
        .server(&dead_host)
        .ok_or_else(|| anyhow!("no block for {dead_host}"))?;
    let id = new_id();
    let mut args = base_args(&setup, paths);
    args.push("--master_state=dead".into());
    args.push(format!("--dead_master_host={}", server.hostname));
    args.push(format!("--dead_master_ip={}", server.ip));
    args.push(format!("--dead_master_port={}", server.port));
    if let Some(n) = new_master {
        args.push(format!("--new_master_host={n}"));
    }
    args.push("--interactive=0".into());
    args.push("--ignore_last_failover".into());
    let run = run_switch(&setup, &state, &args, &id, "dead-master failover")?;
    let summary = FailoverSummary::parse(&run.output);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "outcome": if run.success { "failed-over" } else { "failed" },
                "dead_master": dead_host,
                "new_master": summary.new_master,
                "replicas": summary.replicas,
                "elapsed_ms": run.elapsed.as_millis() as u64,
                "mha_log": run.log_file.display().to_string(),
            }))?
        );
    } else if run.success {
        println!(
            "failed over from {dead_host} to {} in {} ms",
            summary.new_master.as_deref().unwrap_or("?"),
            run.elapsed.as_millis()
        );
        for r in &summary.replicas {
            println!("  replica {r} now replicates from the new master");
        }
        println!("  MHA output: {}", run.log_file.display());
    }
    if !run.success {
        log::error!(
            "masterha_master_switch failed after {:?}:\n{}",
            run.elapsed,
            tail(&run.output, 15)
        );
        bail!(
            "failover from {dead_host} failed; MHA's output is in {}",
            run.log_file.display()
        );
    }
    Ok(Code::Ok)
}

/// What MHA's output says about the result of a failover.
#[derive(Debug, Default, PartialEq)]
pub struct FailoverSummary {
    pub new_master: Option<String>,
    pub replicas: Vec<String>,
}

impl FailoverSummary {
    pub fn parse(lines: &[String]) -> FailoverSummary {
        let mut s = FailoverSummary::default();
        for l in lines {
            if let Some(rest) = l.split("Master failover to ").nth(1) {
                if l.contains("completed successfully") {
                    s.new_master = rest.split('(').next().map(|h| h.trim().to_string());
                }
            }
            if l.contains("Slave started, replicating from") {
                if let Some(host) = l.split('(').next() {
                    let host = host
                        .trim()
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    if !host.is_empty() && !s.replicas.contains(&host) {
                        s.replicas.push(host);
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_summary_reads_mha_report_lines() {
        let out: Vec<String> = [
            "Selected db1(198.51.100.11:3306) as a new master.",
            "db3(198.51.100.13:3306): OK: Applying all logs succeeded. Slave started, replicating from db1(198.51.100.11:3306)",
            "Master failover to db1(198.51.100.11:3306) completed successfully.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = FailoverSummary::parse(&out);
        assert_eq!(s.new_master.as_deref(), Some("db1"));
        assert_eq!(s.replicas, vec!["db3"]);
    }
}
