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
use crate::steps::{self, read_only, Undo};
use crate::vip::{Change, VipSpec};

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
    let vip_note = match check_vip_on(setup, &orig)? {
        Some(v) => format!(", writer VIP {v} on {orig}"),
        None => String::new(),
    };
    report.outcome = format!(
        "ready: configuration {} valid, master {orig} known{vip_note}, helper settings {}",
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

/// With a writer VIP configured, fail unless the master holds it.
fn check_vip_on(setup: &Setup, master: &str) -> Result<Option<String>> {
    let specs = cluster::specs(&setup.mha, &setup.helper, &[master])?;
    let Some(spec) = VipSpec::for_host(master, &specs[0].settings)? else {
        return Ok(None);
    };
    let mut host = cluster::connect(specs)
        .pop()
        .expect("one host")
        .map_err(|e| e.context(format!("{master}: cannot check the writer VIP")))?;
    let t = host.spec.settings.step_timeout;
    if !crate::vip::present(host.conn.as_mut(), &spec, t)? {
        bail!(
            "writer VIP {} is not on the master {master} (interface {}); put it there \
             (ip addr add {} dev {}) or fix writer_vip/cluster_interface",
            spec.vip,
            spec.iface,
            spec.vip,
            spec.iface
        );
    }
    Ok(Some(spec.vip.to_string()))
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
        if setup.helper.for_host(&orig).writer_vip.is_some() {
            report.warn(format!(
                "{orig} may still hold the writer VIP; the new master's gratuitous ARP takes the VIP's \
                 traffic on this network, but remove it from {orig} before it rejoins"
            ));
        }
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
    let (mut code, mut outcome) = fence_mysql(&mut host, &orig, mode, dry_run, report)?;
    if let Some(spec) = steps::vip::spec(&host)? {
        if dry_run {
            outcome.push_str(&format!(
                "; would remove the writer VIP: {}",
                spec.remove_script()
            ));
        } else {
            let timeout = host.spec.settings.step_timeout;
            match steps::vip::apply(&mut host, false, timeout) {
                Ok(Some(Change::Done)) => {
                    report.step(
                        "vip-leave-dead-master",
                        &orig,
                        "done",
                        t.elapsed().as_millis() as u64,
                        None,
                    );
                    outcome.push_str("; writer VIP removed");
                }
                Ok(_) => outcome.push_str("; writer VIP was not there"),
                Err(e) => {
                    report.warn(format!("{orig}: could not remove the writer VIP: {e:#}"));
                    code = Code::Proceed;
                }
            }
        }
    }
    report.outcome = outcome;
    Ok(code)
}

/// Set read_only on a dead master's mysqld if it still answers. Returns the
/// exit code and what happened.
fn fence_mysql(
    host: &mut Host,
    orig: &str,
    mode: crate::config::helper::SuperReadOnly,
    dry_run: bool,
    report: &mut Report,
) -> Result<(Code, String)> {
    let t = Instant::now();
    let info = match host.refresh_info() {
        Ok(i) => i.clone(),
        Err(e) => {
            let down = e
                .downcast_ref::<crate::mysql::Error>()
                .is_some_and(|m| m.kind == ErrorKind::Connect);
            if down {
                return Ok((
                    Code::Ok,
                    format!("{orig}: mysqld does not answer: nothing to fence"),
                ));
            }
            report.warn(format!("{orig}: cannot inspect mysqld: {e:#}"));
            return Ok((Code::Proceed, "not fenced".into()));
        }
    };
    let stmts = read_only::statements(orig, &info, true, mode)?;
    if dry_run {
        return Ok((
            Code::Ok,
            format!("dry-run: would run {} on {orig}", stmts.join("; ")),
        ));
    }
    let mut s = Script::new(host.spec.settings.step_timeout);
    for st in &stmts {
        s.exec("fence", st);
    }
    match host.run(&s) {
        Ok(_) => {
            report.step(
                "fence-read-only",
                orig,
                "done",
                t.elapsed().as_millis() as u64,
                None,
            );
            Ok((
                Code::Ok,
                format!("{orig}: mysqld still answered; set read-only so it takes no more writes"),
            ))
        }
        Err(e) => {
            report.warn(format!("{orig}: could not set read_only: {e:#}"));
            Ok((Code::Proceed, "not fenced".into()))
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
    if code == Code::Ok {
        let timeout = host.spec.settings.step_timeout;
        match steps::vip::apply(&mut host, true, timeout) {
            Ok(None) => {}
            Ok(Some(_)) => report.step(
                "vip-arrive-new-master",
                &new,
                "done",
                t.elapsed().as_millis() as u64,
                None,
            ),
            Err(e) => {
                report.warn(format!("{new}: could not bring the writer VIP: {e:#}"));
                code = Code::Proceed;
            }
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
