//! The operator commands that drive MHA: `switchover` (the historic
//! `mysql_online_failover`) and `failover` (the historic `mysql_failover`).
//! Both run `masterha_master_switch` non-interactively, show its progress
//! (a spinner on a terminal, log lines otherwise), keep its whole output in
//! a file beside the journal, then settle and report the cluster as it is
//! (`settle`): whatever MHA did or failed to do, the command ends with the
//! switch finished, undone, or named as left for a person, and says which.
//! An interrupt (Ctrl-C, SIGTERM, SIGHUP) stops MHA at its next step and is
//! settled the same way.

mod choose;
mod confirm;
mod dry_run;
pub mod hooks;
mod run;
mod settle;
mod why;

pub use run::{interrupted, run_switch, SwitchRun};

use anyhow::{anyhow, bail, Result};

use crate::exit::{bad_input, Code, Refused};
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::note;
use crate::state::journal::{new_id, Journal};
use crate::state::lock::AppLock;
use crate::state::StateDir;

fn base_args(setup: &Setup, paths: &ConfigPaths) -> Vec<String> {
    let mut a = vec![format!("--conf={}", setup.mha.app_path.display())];
    if let Some(g) = &paths.global {
        a.push(format!("--global_conf={}", g.display()));
    }
    a
}

/// masterha_master_switch's arguments for an online switch.
fn online_args(
    setup: &Setup,
    paths: &ConfigPaths,
    new_master: Option<&str>,
    orig_as_slave: bool,
) -> Vec<String> {
    let mut args = base_args(setup, paths);
    args.push("--master_state=alive".into());
    if let Some(n) = new_master {
        args.push(format!("--new_master_host={n}"));
    }
    if orig_as_slave {
        args.push("--orig_master_is_new_slave".into());
    }
    args.push("--interactive=0".into());
    args
}

/// Refuse (bad input, exit 2) to start MHA when the hook it would run is
/// not mha-helper's on this application, unless the operator asked for an
/// unprotected switch.
fn guard(setup: &Setup, hook: hooks::Hook, unprotected: bool) -> Result<()> {
    match hooks::refusal(setup, hook) {
        None => Ok(()),
        Some(why) if unprotected => {
            log::warn!("--unprotected: {why}: switching without mha-helper's hook");
            Ok(())
        }
        Some(why) => Err(bad_input(anyhow!(
            "{why}; fix it, or pass --unprotected to switch without mha-helper's hook"
        ))),
    }
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the operator asked of `switchover`.
pub struct SwitchoverArgs<'a> {
    pub new_master: Option<&'a str>,
    pub orig_as_slave: bool,
    pub unprotected: bool,
    pub dry_run: bool,
    /// Do not ask on a terminal.
    pub yes: bool,
}

/// `mha-helper switchover`.
pub fn switchover(paths: &ConfigPaths, asked: SwitchoverArgs, json: bool) -> Result<Code> {
    let SwitchoverArgs {
        new_master,
        orig_as_slave,
        unprotected,
        dry_run,
        yes,
    } = asked;
    let setup = paths.load()?;
    if let Some(n) = new_master {
        setup.hostname(n)?;
    }
    guard(&setup, hooks::Hook::Online, unprotected)?;
    why::check_needs(&setup)?;
    if dry_run {
        return dry_run::switchover(&setup, paths, new_master, orig_as_slave, json);
    }
    if confirm::wanted(yes) {
        confirm::ask(&setup, paths, new_master, orig_as_slave)?;
    }
    let state = setup.state()?;
    // Held for the whole switch; the hooks MHA runs work under it.
    let (_lock, id) = lock_for_switch(&setup, &state, "switchover")?;
    let args = online_args(&setup, paths, new_master, orig_as_slave);
    let run = run_switch(&setup, &state, &args, &id, "online switchover")?;
    log_failure(&run);
    let settled = settle::after_mha(paths, &setup, &state, &id, &run)?;
    let journal = Journal::open_path(&state.closed_journal(&id, "completed"))?;
    let note = |k: &str| journal.as_ref().and_then(|j| j.note_value(k).cloned());
    let (stop, start) = (note(note::STOP_REPORT), note(note::START_REPORT));
    if json {
        let mut v = summary_json(&settled, &run);
        v["stop"] = stop.unwrap_or_default();
        v["start"] = start.unwrap_or_default();
        crate::output::set(v);
    } else {
        print_summary("online switchover", &settled, &run);
        if settled.new.is_some() && matches!(settled.ending, settle::Ending::Switched) {
            print_hook_reports(&stop, &start);
        }
        print_cluster(&settled, &run);
    }
    ending_code(&settled, &run, "online switchover")
}

/// Take the application's lock for a switch this command runs, refusing
/// while another switch's journal is open; returns the lock and the new
/// switch's id (which the hooks MHA runs will use).
fn lock_for_switch(setup: &Setup, state: &StateDir, command: &str) -> Result<(AppLock, String)> {
    let mut lock = crate::ssh::keeper::acquire(state, command).map_err(|e| e.context(Refused))?;
    if let Some(j) = Journal::open(state)? {
        bail!(
            "an unfinished switch is recorded in {}; run `mha-helper recover --conf {}` first",
            j.path().display(),
            setup.mha.app_path.display()
        );
    }
    let id = new_id();
    lock.set_switch(&id);
    Ok((lock, id))
}

fn log_failure(run: &SwitchRun) {
    if !run.success {
        log::error!(
            "masterha_master_switch ended ({}{}) after {:?}:\n{}",
            run.status,
            run.interrupted
                .map(|s| format!(", interrupted by signal {s}"))
                .unwrap_or_default(),
            run.elapsed,
            tail(&run.output, 15)
        );
    }
}

/// How MHA ended, for the summary, with the first error it logged.
fn mha_ending(run: &SwitchRun) -> String {
    let ended = match run.interrupted {
        Some(sig) => format!(
            "MHA was interrupted (signal {sig}; it ended with {})",
            run.status
        ),
        None => format!("MHA ended with {}", run.status),
    };
    match why::first_error(&run.output).filter(|_| !run.success) {
        Some(e) => format!("{ended}: {e}"),
        None => ended,
    }
}

/// The first line of the summary, saying how the switch ended.
fn print_summary(what: &str, s: &settle::Settled, run: &SwitchRun) {
    let ms = run.elapsed.as_millis();
    let (orig, new) = (
        s.orig.as_deref().unwrap_or("?"),
        s.new.as_deref().unwrap_or("?"),
    );
    match &s.ending {
        settle::Ending::Switched if s.orig.is_some() && what == "dead-master failover" => {
            println!("failed over from {orig} to {new} in {ms} ms")
        }
        settle::Ending::Switched if s.orig.is_some() => {
            println!("switched {orig} -> {new} in {ms} ms")
        }
        settle::Ending::Switched => println!(
            "{what}: MHA switched in {ms} ms, but no hook of mha-helper ran (nothing was blocked \
             or journaled)"
        ),
        settle::Ending::Finished { repointed } if run.success => {
            println!(
                "switched {orig} -> {new} in {ms} ms; mha-helper finished what its hooks had left \
                 (see the recover report above)"
            );
            if !repointed.is_empty() {
                println!("  repointed to {new}: {}", repointed.join(", "));
            }
        }
        settle::Ending::Finished { repointed } => {
            println!(
                "switched {orig} -> {new} in {ms} ms, finished by mha-helper: {} after {new} was \
                 opened",
                mha_ending(run)
            );
            if !repointed.is_empty() {
                println!("  repointed to {new}: {}", repointed.join(", "));
            }
        }
        settle::Ending::RolledBack => println!(
            "{what} failed: {}; mha-helper undid every change it had made: {orig} is the master \
             as before",
            mha_ending(run)
        ),
        settle::Ending::Untouched => println!(
            "{what} failed before mha-helper changed anything: {}",
            mha_ending(run)
        ),
    }
}

/// Every host as it is now, and where MHA's output is.
fn print_cluster(s: &settle::Settled, run: &SwitchRun) {
    println!("  cluster now:");
    for h in &s.cluster {
        println!("    {}", h.describe());
    }
    println!("  MHA output: {}", run.log_file.display());
}

fn summary_json(s: &settle::Settled, run: &SwitchRun) -> serde_json::Value {
    serde_json::json!({
        "outcome": s.outcome(),
        "orig_master": s.orig,
        "new_master": s.new,
        "repointed": match &s.ending {
            settle::Ending::Finished { repointed } => repointed.clone(),
            _ => Vec::new(),
        },
        "mha": {
            "status": run.status,
            "interrupted_by_signal": run.interrupted,
            "error": why::first_error(&run.output).filter(|_| !run.success),
            "log": run.log_file.display().to_string(),
        },
        "elapsed_ms": run.elapsed.as_millis() as u64,
        "mha_log": run.log_file.display().to_string(),
        "cluster": s.cluster,
    })
}

/// Exit 0 when the switch is done (by MHA or finished by us), 1 when the
/// cluster is as it was.
fn ending_code(s: &settle::Settled, run: &SwitchRun, what: &str) -> Result<Code> {
    match s.ending {
        settle::Ending::Switched | settle::Ending::Finished { .. } => Ok(Code::Ok),
        settle::Ending::RolledBack | settle::Ending::Untouched => Err(anyhow!(
            "{what} failed ({}); the cluster is as it was; MHA's output is in {}",
            mha_ending(run),
            run.log_file.display()
        )),
    }
}

/// What the hooks recorded: the write-block window, sessions killed,
/// accounts blocked, warnings.
fn print_hook_reports(stop: &Option<serde_json::Value>, start: &Option<serde_json::Value>) {
    let get = |v: &Option<serde_json::Value>, k: &str| v.as_ref().and_then(|v| v.get(k)).cloned();
    let orig = get(start, "orig_master")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    if let Some(ms) = get(start, "write_block_ms") {
        println!("  write-block window (first revoke to new master writable): {ms} ms");
    }
    if let Some(k) = get(stop, "killed_sessions").and_then(|v| v.as_array().cloned()) {
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
    if let Some(a) = get(stop, "accounts_changed").and_then(|v| v.as_array().cloned()) {
        println!("  accounts blocked then restored on {orig}: {}", a.len());
    }
    for w in [stop, start]
        .iter()
        .filter_map(|r| r.as_ref()?.get("warnings")?.as_array().cloned())
        .flatten()
    {
        println!("  warning: {}", w.as_str().unwrap_or_default());
    }
}

/// `mha-helper failover`.
pub fn failover(
    paths: &ConfigPaths,
    dead: &str,
    new_master: Option<&str>,
    (unprotected, yes, dry_run): (bool, bool, bool),
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
    guard(&setup, hooks::Hook::Failover, unprotected)?;
    why::check_needs(&setup)?;
    if dry_run {
        return dry_run::failover(&setup, paths, &dead_host, new_master, json);
    }
    if confirm::wanted(yes) {
        confirm::ask_failover(&setup, &dead_host, new_master)?;
    }
    let state = setup.state()?;
    let (_lock, id) = lock_for_switch(&setup, &state, "failover")?;
    let server = setup
        .mha
        .server(&dead_host)
        .ok_or_else(|| anyhow!("no block for {dead_host}"))?;
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
    log_failure(&run);
    let mut settled = settle::after_mha(paths, &setup, &state, &id, &run)?;
    let summary = FailoverSummary::parse(&run.output);
    settled.orig.get_or_insert(dead_host.clone());
    if settled.new.is_none() && settled.ending == settle::Ending::Switched {
        settled.new = summary.new_master.clone();
    }
    if json {
        let mut v = summary_json(&settled, &run);
        v["dead_master"] = dead_host.clone().into();
        v["replicas"] = summary.replicas.clone().into();
        crate::output::set(v);
    } else {
        print_summary("dead-master failover", &settled, &run);
        if settled.ending == settle::Ending::Switched {
            for r in &summary.replicas {
                println!("  replica {r} now replicates from the new master");
            }
        }
        print_cluster(&settled, &run);
    }
    ending_code(&settled, &run, &format!("failover from {dead_host}"))
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
