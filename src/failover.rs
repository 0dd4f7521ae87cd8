//! The dead-master hook (`master_ip_failover_script`), in MHA's four
//! phases:
//!
//! * `status` — at every masterha_manager start and masterha_check_repl:
//!   prove the helper can act for this cluster (config valid, the master's
//!   block present, settings valid). Any non-zero exit fails MHA's check.
//! * `stopssh` — the old master is dead but SSH answers: fence it as far as
//!   is safe (read_only if its mysqld still answers). Failing to fence is a
//!   warning (10): MHA proceeds.
//! * `stop` — not even SSH answers: nothing can be done there; say so.
//! * `start` — the new master has caught up: read_only off (verified), and
//!   its application grants compared with what the cluster expects.
//!   Failures exit 10: MHA turns read_only off itself and must not stop
//!   half-way with replicas not yet repointed.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, Host};
use crate::exit::{bad_input, Code};
use crate::grants::{self, Snapshot};
use crate::journal::Journal;
use crate::mha_args::HookArgs;
use crate::mysql::{ErrorKind, Script};
use crate::online::{emit, HookOptions};
use crate::report::Report;
use crate::setup::Setup;
use crate::steps::{read_only, Undo};

pub fn hook(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    log::info!("master-ip-failover {}", args.redacted());
    let setup = opts.paths.load()?;
    let command = args.require("command").map_err(bad_input)?.to_string();
    let started = Instant::now();
    let mut report = Report::new("master-ip-failover", &command);
    let code = match command.as_str() {
        "status" => status(&setup, args, &mut report),
        "stopssh" => stop(&setup, args, true, opts.dry_run, &mut report),
        "stop" => stop(&setup, args, false, opts.dry_run, &mut report),
        "start" => start(&setup, args, opts.dry_run, &mut report),
        other => Err(bad_input(anyhow!(
            "unknown --command={other} for master-ip-failover (MHA sends status, stop, stopssh or start)"
        ))),
    }?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    emit(&report, opts.json);
    Ok(code)
}

fn status(setup: &Setup, args: &HookArgs, report: &mut Report) -> Result<Code> {
    let orig = setup.hostname(args.require("orig_master_host").map_err(bad_input)?)?;
    report.orig_master = Some(orig.clone());
    let server = setup
        .mha
        .server(&orig)
        .ok_or_else(|| anyhow!("no block for {orig}"))?;
    if let Some(ip) = args.value("orig_master_ip") {
        if ip != server.ip {
            bail!(
                "MHA says the master {orig} is at {ip}, but {} says {}; fix the config",
                setup.mha.app_path.display(),
                server.ip
            );
        }
    }
    let journal = setup.journal_path();
    if let Some(dir) = journal.parent() {
        if !dir.is_dir() {
            bail!(
                "journal directory {} does not exist; create it or set journal_dir",
                dir.display()
            );
        }
    }
    report.outcome = format!(
        "ready: configuration {} valid, master {orig} known, helper settings {}",
        setup.mha.app_path.display(),
        setup
            .helper
            .path
            .as_deref()
            .map(|p| format!("from {}", p.display()))
            .unwrap_or_else(|| "defaults".into())
    );
    Ok(Code::Ok)
}

fn stop(
    setup: &Setup,
    args: &HookArgs,
    ssh_reachable: bool,
    dry_run: bool,
    report: &mut Report,
) -> Result<Code> {
    let orig = setup.hostname(args.require("orig_master_host").map_err(bad_input)?)?;
    report.orig_master = Some(orig.clone());
    if !ssh_reachable {
        report.outcome =
            format!("{orig} is unreachable (MHA could not SSH to it): nothing can be fenced there");
        report.warn(format!(
            "{orig} may still be running and writable behind a partition; mha-helper cannot fence it"
        ));
        return Ok(Code::Ok);
    }
    let specs = cluster::specs(&setup.mha, &setup.helper, &[&orig])?;
    let mode = specs[0].settings.super_read_only;
    let mut host = match cluster::connect(specs).pop() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            report.warn(format!(
                "{orig}: cannot reach it over SSH after all ({e:#}); not fenced"
            ));
            report.outcome = "not fenced".into();
            return Ok(Code::Proceed);
        }
        None => bail!("no host"),
    };
    let t = Instant::now();
    let info = match host.refresh_info() {
        Ok(i) => i.clone(),
        Err(e) => {
            let down = e
                .downcast_ref::<crate::mysql::Error>()
                .is_some_and(|m| m.kind == ErrorKind::Connect);
            report.outcome = if down {
                format!("{orig}: mysqld does not answer: nothing to fence")
            } else {
                report.warn(format!("{orig}: cannot inspect mysqld: {e:#}"));
                "not fenced".into()
            };
            return Ok(if down { Code::Ok } else { Code::Proceed });
        }
    };
    let stmts = read_only::statements(&orig, &info, true, mode)?;
    if dry_run {
        report.outcome = format!("dry-run: would run {} on {orig}", stmts.join("; "));
        return Ok(Code::Ok);
    }
    let mut s = Script::new(host.spec.settings.step_timeout);
    for st in &stmts {
        s.exec("fence", st);
    }
    match host.run(&s) {
        Ok(_) => {
            report.step(
                "fence-read-only",
                &orig,
                "done",
                t.elapsed().as_millis() as u64,
                None,
            );
            report.outcome =
                format!("{orig}: mysqld still answered; set read-only so it takes no more writes");
            Ok(Code::Ok)
        }
        Err(e) => {
            report.warn(format!("{orig}: could not set read_only: {e:#}"));
            report.outcome = "not fenced".into();
            Ok(Code::Proceed)
        }
    }
}

/// The application grants the cluster expects: an unfinished online
/// switch's snapshot, else what `check` saved from the master.
fn expected_grants(setup: &Setup) -> Option<(Vec<Snapshot>, String)> {
    if let Ok(Some(j)) = Journal::open(&setup.journal_path()) {
        if let Some(Undo::Grants { snapshots, .. }) = j.undo_of("block-accounts") {
            return Some((
                snapshots.clone(),
                format!("journal {}", setup.journal_path().display()),
            ));
        }
    }
    let file = crate::check::grants_file(setup);
    let text = std::fs::read_to_string(&file).ok()?;
    let snaps: Vec<Snapshot> = serde_json::from_str(&text).ok()?;
    Some((
        snaps,
        format!("the last `mha-helper check` ({})", file.display()),
    ))
}

/// Compare the application grants on `host` with what the cluster
/// expects; every difference is a warning in the report. `users` are the
/// accounts that exist there.
fn compare_grants(
    host: &mut Host,
    users: &[(String, String)],
    expected: &[Snapshot],
    source: &str,
    report: &mut Report,
) {
    let (present, missing): (Vec<&Snapshot>, Vec<&Snapshot>) = expected
        .iter()
        .partition(|s| users.contains(&(s.account.user.clone(), s.account.host.clone())));
    for m in missing {
        report.warn(format!(
            "{}: application account {} (expected from {source}) does not exist",
            host.name(),
            m.account.label()
        ));
    }
    let present: Vec<Snapshot> = present.into_iter().cloned().collect();
    if present.is_empty() {
        return;
    }
    let mut s = Script::new(Duration::from_secs(10));
    grants::add_readback(&mut s, &present);
    match host.run(&s) {
        Ok(r) => {
            for d in grants::differences(&r, &present) {
                report.warn(format!("{}: grants differ from {source}: {d}", host.name()));
            }
        }
        Err(e) => report.warn(format!("{}: cannot read grants: {e:#}", host.name())),
    }
}

/// What the last failover left behind, for `check`: which host MHA gave
/// up on and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadMark {
    pub host: String,
    pub new_master: String,
    pub at: String,
}

pub fn dead_mark_path(setup: &Setup) -> std::path::PathBuf {
    setup
        .journal_path()
        .with_file_name(format!("mha-helper.{}.failed-over.json", setup.mha.app))
}

pub fn read_dead_mark(setup: &Setup) -> Option<DeadMark> {
    let text = std::fs::read_to_string(dead_mark_path(setup)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_dead_mark(setup: &Setup, mark: &DeadMark) {
    let path = dead_mark_path(setup);
    if let Err(e) = std::fs::write(&path, serde_json::to_string(mark).unwrap_or_default()) {
        log::warn!("cannot record the failover in {}: {e}", path.display());
    }
}

fn start(setup: &Setup, args: &HookArgs, dry_run: bool, report: &mut Report) -> Result<Code> {
    let new = setup.hostname(args.require("new_master_host").map_err(bad_input)?)?;
    let orig = args
        .value("orig_master_host")
        .map(|o| setup.hostname(o))
        .transpose()?;
    report.orig_master = orig.clone();
    report.new_master = Some(new.clone());
    let spec = cluster::specs(&setup.mha, &setup.helper, &[&new])?
        .pop()
        .expect("one spec")
        .with_credentials(args.get("new_master_user"), args.get("new_master_password"));
    if dry_run {
        report.outcome = format!("dry-run: would run {} on {new}", read_only::WRITABLE);
        return Ok(Code::Ok);
    }
    let t = Instant::now();
    let mut host = match cluster::connect(vec![spec]).pop() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            report.warn(format!(
                "{new}: cannot reach it over SSH: {e:#}; MHA will turn read_only off itself"
            ));
            report.outcome = "new master not touched".into();
            return Ok(Code::Proceed);
        }
        None => bail!("no host"),
    };
    let mut s = Script::new(host.spec.settings.step_timeout);
    s.exec("new master read_only off", read_only::WRITABLE);
    s.query("ro", "SELECT @@GLOBAL.read_only AS read_only");
    s.query("users", "SELECT User AS user, Host AS host FROM mysql.user");
    let result = host.run(&s);
    let ms = t.elapsed().as_millis() as u64;
    let mut code = Code::Ok;
    let mut users = Vec::new();
    match result {
        Ok(r)
            if r.set("ro")
                .records()
                .next()
                .is_some_and(|r| !r.flag("read_only")) =>
        {
            report.step("new-master-writable", &new, "done", ms, None);
            users = r
                .set("users")
                .records()
                .map(|u| (u.text("user"), u.text("host")))
                .collect();
        }
        Ok(_) => {
            report.step(
                "new-master-writable",
                &new,
                "failed",
                ms,
                Some("read_only still 1".into()),
            );
            report.warn(format!(
                "{new}: read_only still reads 1 after turning it off; MHA will try itself"
            ));
            code = Code::Proceed;
        }
        Err(e) => {
            report.step(
                "new-master-writable",
                &new,
                "failed",
                ms,
                Some(format!("{e:#}")),
            );
            report.warn(format!(
                "{new}: could not turn read_only off: {e:#}; MHA will try itself"
            ));
            code = Code::Proceed;
        }
    }
    if let Some(o) = &orig {
        write_dead_mark(
            setup,
            &DeadMark {
                host: o.clone(),
                new_master: new.clone(),
                at: crate::logger::utc_now(),
            },
        );
    }
    if code == Code::Ok {
        match expected_grants(setup) {
            Some((snaps, source)) => compare_grants(&mut host, &users, &snaps, &source, report),
            None => report.warn(format!(
                "{new}: no record of the application's grants to compare with (run `mha-helper check` regularly)"
            )),
        }
    }
    if let Some(s) = host.conn.stats() {
        report.ssh.insert(new.clone(), s);
    }
    report.outcome = if code == Code::Ok {
        format!("{new} is writable")
    } else {
        "incomplete".into()
    };
    Ok(code)
}
