//! The dead-master hook (`master_ip_failover_script`), in MHA's four
//! phases:
//!
//! * `status` — at every masterha_manager start and masterha_check_repl:
//!   prove the helper can act for this cluster (config valid, the master's
//!   block present, the state directory usable, the VIP on the master), and
//!   try once to fence an old master a past failover could not fence. Any
//!   non-zero exit fails MHA's check.
//! * `stopssh` — the old master is dead but SSH answers: fence it as far as
//!   is safe (read_only if its mysqld still answers, VIP off). Failing to
//!   fence is a warning (10): MHA proceeds, and a background fencer keeps
//!   trying (see `fence`).
//! * `stop` — not even SSH answers: nothing can be done there now; the
//!   background fencer waits for it to come back.
//! * `start` — the new master has caught up: prove every other host that
//!   answers read-only, make it writable (verified), bring the VIP, compare
//!   its application grants with what the cluster expects. Failures exit 10
//!   (MHA turns read_only off itself and must not stop half-way with
//!   replicas not yet repointed), except a refusal (another host writable):
//!   exit 1, so MHA stops before making a second writable master.
//!
//! Every change goes through the engine with its undo in a journal of kind
//! `failover`, which `start` closes.

use crate::step_id::StepId;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::cluster;
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{bad_input, is_refusal, Code};
use crate::fence;
use crate::grants::SavedGrants;
use crate::mha_args::{FailoverArgs, HookArgs, MasterArg};
use crate::online::HookOptions;
use crate::ops;
use crate::report::Report;
use crate::setup::Setup;
use crate::state::journal::{new_id, note, Entry, Journal};
use crate::state::StateDir;
use crate::steps::{Ctx, Step, Undo};

/// How long a phase waits for the lock (a fence attempt holds it briefly).
const LOCK_WAIT: Duration = Duration::from_secs(30);

pub fn hook(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    log::info!("master-ip-failover {}", args.redacted());
    let setup = opts.paths.load()?;
    let args = &FailoverArgs::from(args).map_err(bad_input)?;
    let command = args.command.clone();
    crate::fault::set_phase(&command);
    let started = Instant::now();
    let mut report = Report::new("master-ip-failover", &command);
    let code = match command.as_str() {
        "status" => status(&setup, args, &mut report),
        "stopssh" => stop(&setup, args, true, opts, &mut report),
        "stop" => stop(&setup, args, false, opts, &mut report),
        "start" => start(&setup, args, opts, &mut report),
        other => Err(bad_input(anyhow!(
            "unknown --command={other} for master-ip-failover (MHA sends status, stop, stopssh or start)"
        ))),
    }?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    crate::report::emit_or_keep(&report, opts.json, opts.capture.as_ref());
    Ok(code)
}

fn status(setup: &Setup, args: &FailoverArgs, report: &mut Report) -> Result<Code> {
    let dead = args.dead_master().map_err(bad_input)?;
    let orig = setup.hostname(&dead.host)?;
    report.orig_master = Some(orig.clone());
    let server = setup
        .mha
        .server(&orig)
        .ok_or_else(|| anyhow!("no block for {orig}"))?;
    if let Some(ip) = &dead.ip {
        if *ip != server.ip {
            bail!(
                "MHA says the master {orig} is at {ip}, but {} says {}; fix the config",
                setup.mha.app_path.display(),
                server.ip
            );
        }
    }
    let state = setup.state()?;
    match fence::attempt(setup, &state) {
        Ok(fence::Attempt::Fenced(r)) => report.warn(format!(
            "fenced the old master a past failover left writable: {}",
            r.outcome
        )),
        Ok(fence::Attempt::NotYet(why)) => report.warn(format!(
            "an old master a past failover left unfenced is still not reachable: {why}"
        )),
        Ok(fence::Attempt::Nothing) => {}
        Err(e) => report.warn(format!("fencing a past failover's old master: {e:#}")),
    }
    let vip_note = match check_vip_on(setup, &orig)? {
        Some(v) => format!(", writer VIP {v} on {orig}"),
        None => String::new(),
    };
    report.outcome = format!(
        "ready: configuration {} valid, master {orig} known{vip_note}, state in {}, helper settings {}",
        setup.mha.app_path.display(),
        state.dir().display(),
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
    let specs = setup.specs(&[master])?;
    let Some(spec) = ops::vip::VipSpec::for_host(master, &specs[0].settings)? else {
        return Ok(None);
    };
    let mut host = cluster::connect(specs)
        .pop()
        .expect("one host")
        .map_err(|e| e.context(format!("{master}: cannot check the writer VIP")))?;
    let t = host.spec.settings.step_timeout;
    if !ops::vip::present(host.conn.as_mut(), &spec, t)? {
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

/// The failover's journal: the open one of this failover, a new one, or
/// none (another switch's journal is open; its steps still run, warned).
fn failover_journal(state: &StateDir, orig: &str, new: &str) -> Result<Option<Journal>> {
    match Journal::open(state)? {
        Some(j)
            if j.kind() == Some(crate::state::journal::Kind::Failover)
                && j.masters().map(|m| m.0) == Some(orig) =>
        {
            Ok(Some(j))
        }
        Some(j) => {
            log::warn!(
                "journal {} of another switch is open; this failover's changes are not journaled",
                j.path().display()
            );
            Ok(None)
        }
        None => Journal::create(
            state,
            Entry::Begin {
                id: crate::state::journal::switch_id(),
                kind: crate::state::journal::Kind::Failover,
                orig: orig.to_string(),
                new: new.to_string(),
                at: crate::logger::utc_now(),
                pid: std::process::id(),
            },
        )
        .map(Some),
    }
}

/// Run `steps` in the failover's way: go on past failures, journal when
/// there is a journal.
fn run_steps(
    steps: &mut [Box<dyn Step>],
    ctx: &mut Ctx,
    journal: Option<&mut Journal>,
    undo_timeout: Duration,
) -> Result<()> {
    let policy = Policy {
        on_failure: OnFailure::Continue,
        journal: JournalUse::BestEffort,
        undo_timeout,
    };
    match journal {
        Some(j) => engine::run(steps, ctx, j, policy),
        None => {
            let mut j = Journal::in_memory(Entry::Begin {
                id: new_id(),
                kind: crate::state::journal::Kind::FailoverUnjournaled,
                orig: String::new(),
                new: String::new(),
                at: crate::logger::utc_now(),
                pid: std::process::id(),
            });
            engine::run(steps, ctx, &mut j, policy)
        }
    }
}

fn stop(
    setup: &Setup,
    args: &FailoverArgs,
    ssh_reachable: bool,
    opts: &HookOptions,
    report: &mut Report,
) -> Result<Code> {
    let dry_run = opts.dry_run;
    let orig = setup.hostname(&args.dead_master().map_err(bad_input)?.host)?;
    report.orig_master = Some(orig.clone());
    let state = setup.state()?;
    let pending = |why: &str, ssh: bool| {
        if !dry_run {
            fence::leave_pending(setup, &state, &orig, why, ssh);
        }
    };
    if !ssh_reachable {
        report.outcome = format!(
            "{orig} is unreachable (MHA could not SSH to it): nothing can be fenced there now"
        );
        report.warn(format!(
            "{orig} may still be running and writable behind a partition; mha-helper fences it as \
             soon as it answers"
        ));
        pending("no SSH during the failover", false);
        return Ok(Code::Ok);
    }
    let specs = setup.specs(&[&orig])?;
    let settings = specs[0].settings.clone();
    let mut host = match cluster::connect(specs).pop() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            report.warn(format!(
                "{orig}: cannot reach it over SSH after all ({e:#}); not fenced"
            ));
            report.outcome = "not fenced".into();
            pending("no SSH during the failover", false);
            return Ok(Code::Proceed);
        }
        None => bail!("no host"),
    };
    let answers = mysqld_answers(&mut host, report);
    let mut steps = crate::plans::fence(
        &orig,
        &settings,
        crate::plans::Fence {
            read_only: answers.then_some(StepId::FenceReadOnly),
            vip: StepId::VipLeaveDeadMaster,
            kill_as: None,
        },
    );
    let mut ctx = Ctx::new(vec![host], report.clone());
    ctx.show_sent = opts.show_sent;
    if dry_run {
        ctx.report.plan = engine::plan(&mut steps, &mut ctx)?;
        *report = ctx.report;
        report.outcome = "dry-run: nothing changed".into();
        return Ok(Code::Ok);
    }
    let _lock =
        match crate::ssh::keeper::acquire_within(&state, "master-ip-failover stopssh", LOCK_WAIT) {
            Ok(l) => l,
            Err(e) => {
                report.warn(format!("{e:#}; not fencing {orig} now"));
                pending("the lock was held by another mha-helper", true);
                report.outcome = "not fenced".into();
                return Ok(Code::Proceed);
            }
        };
    let mut journal = failover_journal(&state, &orig, "")?;
    let result = run_steps(
        &mut steps,
        &mut ctx,
        journal.as_mut(),
        settings.undo_timeout,
    );
    *report = ctx.report;
    stop_outcome(&orig, answers, &result, report, &pending);
    Ok(if result.is_ok() {
        Code::Ok
    } else {
        Code::Proceed
    })
}

/// Whether the dead master's mysqld still answers (nothing to fence now
/// if not, but it may come back).
fn mysqld_answers(host: &mut crate::cluster::Host, report: &mut Report) -> bool {
    match host.refresh_info() {
        Ok(_) => true,
        Err(e) if crate::mysql::server_down(&e) => false,
        Err(e) => {
            report.warn(format!("{}: cannot inspect mysqld: {e:#}", host.name()));
            false
        }
    }
}

/// What stopssh did, in the report; an old master left unfenced gets a
/// pending fence (and the background fencer).
fn stop_outcome(
    orig: &str,
    answers: bool,
    result: &Result<()>,
    report: &mut Report,
    pending: &dyn Fn(&str, bool),
) {
    if let Err(e) = result {
        report.warn(format!("{orig}: {}", crate::exit::message(e)));
    }
    if !(answers && result.is_ok()) {
        pending(
            if answers {
                "setting read_only failed"
            } else {
                "its mysqld did not answer (it may come back writable)"
            },
            true,
        );
    }
    let vip = report
        .steps
        .iter()
        .find(|s| s.step == StepId::VipLeaveDeadMaster.as_str() && s.status == "done")
        .map(|s| match s.detail.as_deref() {
            Some(crate::steps::vip::REMOVED) => "; writer VIP removed",
            _ => "; writer VIP was not there",
        })
        .unwrap_or_default();
    report.outcome = match (answers, result) {
        (true, Ok(())) => {
            format!("{orig}: mysqld still answered; set read-only so it takes no more writes{vip}")
        }
        (false, Ok(())) => format!("{orig}: mysqld does not answer: nothing to fence now{vip}"),
        (_, Err(_)) => format!("not fenced{vip}"),
    };
}

/// The application grants the cluster expects: an unfinished online
/// switch's snapshot, else what `check` saved from the master.
fn expected_grants(state: &StateDir) -> Option<(SavedGrants, String)> {
    if let Ok(Some(j)) = Journal::open(state) {
        if let Some(Undo::Grants {
            snapshots, digest, ..
        }) = j.undo_of(StepId::BlockAccounts)
        {
            let saved = SavedGrants {
                snapshots: snapshots.clone(),
                digest: digest.clone(),
            };
            return Some((saved, format!("journal {}", j.path().display())));
        }
    }
    let text = state.read(&state.grants_snapshot()).ok()??;
    Some((
        SavedGrants::parse(&text)?,
        format!(
            "the last `mha-helper check` ({})",
            state.grants_snapshot().display()
        ),
    ))
}

fn start(
    setup: &Setup,
    args: &FailoverArgs,
    opts: &HookOptions,
    report: &mut Report,
) -> Result<Code> {
    let dry_run = opts.dry_run;
    let new_arg = args.new_master().map_err(bad_input)?;
    let new = setup.hostname(&new_arg.host)?;
    let orig = args
        .orig
        .as_ref()
        .map(|o| setup.hostname(&o.host))
        .transpose()?;
    report.orig_master = orig.clone();
    report.new_master = Some(new.clone());
    let state = setup.state()?;
    let pending = fence::read(&state).ok().flatten();
    // A host MHA could not SSH to during this failover is not waited for
    // again; every other host is connected, to be proven read-only.
    let skip: Option<String> = pending
        .as_ref()
        .filter(|p| !p.ssh_reachable && Some(&p.host) == orig.as_ref())
        .map(|p| p.host.clone());
    let specs = start_specs(setup, new_arg, &new, skip.as_deref())?;
    let settings = specs
        .iter()
        .find(|s| s.name == new)
        .map(|s| s.settings.clone())
        .ok_or_else(|| bad_input(anyhow!("{new}: no server block")))?;
    let (hosts, mut unreachable) = cluster::connect_split(specs);
    unreachable.extend(skip.map(|s| (s, "no SSH during this failover".to_string())));
    if !hosts.iter().any(|h| h.spec.name == new) {
        report.warn(format!(
            "{new}: cannot reach it over SSH; MHA will turn read_only off itself"
        ));
        report.outcome = "new master not touched".into();
        return Ok(Code::Proceed);
    }
    let mut ctx = Ctx::new(hosts, report.clone());
    ctx.show_sent = opts.show_sent;
    ctx.unreachable = unreachable;
    let mut steps = crate::plans::open_new_master(&new, &settings, &[], (true, None));
    if dry_run {
        ctx.report.plan = engine::plan(&mut steps, &mut ctx)?;
        *report = ctx.report;
        report.outcome = "dry-run: nothing changed".into();
        return Ok(Code::Ok);
    }
    let lock = crate::ssh::keeper::acquire_within(&state, "master-ip-failover start", LOCK_WAIT)
        .map_err(|e| e.context(crate::exit::Refused))?;
    let mut journal = failover_journal(&state, orig.as_deref().unwrap_or(""), &new)?;
    if let Some(j) = journal
        .as_mut()
        .filter(|j| j.masters().is_some_and(|m| m.1.is_empty()))
    {
        if let Err(e) = j.note(note::NEW_MASTER, new.clone().into()) {
            log::error!("{e:#}");
        }
    }
    let result = run_steps(
        &mut steps,
        &mut ctx,
        journal.as_mut(),
        settings.undo_timeout,
    );
    let code = match &result {
        Ok(()) => Code::Ok,
        Err(e) if is_refusal(e) => {
            ctx.report.outcome = format!("refused: {}", crate::exit::message(e));
            *report = ctx.report;
            return Err(result.unwrap_err());
        }
        Err(e) => {
            ctx.report.warn(format!(
                "{new}: {}; MHA will try to turn read_only off itself",
                crate::exit::message(e)
            ));
            Code::Proceed
        }
    };
    if let Some(o) = &orig {
        mark_dead(&state, o, &new, pending.as_ref());
    }
    if code == Code::Ok {
        compare_grants(&state, &mut ctx, &new, settings.step_timeout)?;
        if let Some(j) = journal.take() {
            finish_journal(&state, &lock, j, &ctx.report);
        }
    }
    ctx.collect_stats();
    ctx.report.outcome = if code == Code::Ok {
        format!("{new} is writable")
    } else {
        "incomplete".into()
    };
    *report = ctx.report;
    drop(lock);
    Ok(code)
}

/// The specs of every host start proves read-only or opens (all but
/// `skip`), the new master's with the credentials MHA passed.
fn start_specs(
    setup: &Setup,
    new_arg: &MasterArg,
    new: &str,
    skip: Option<&str>,
) -> Result<Vec<crate::cluster::HostSpec>> {
    let names: Vec<String> = setup
        .all_hosts()
        .into_iter()
        .filter(|h| Some(h.as_str()) != skip)
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(setup
        .specs(&refs)?
        .into_iter()
        .map(|s| {
            if s.name == new {
                s.with_credentials(new_arg.user.as_deref(), new_arg.password.as_deref())
            } else {
                s
            }
        })
        .collect())
}

/// Remember which master died and whom MHA chose instead (check excuses
/// the dead one; a pending fence learns the master it must not fence).
fn mark_dead(state: &StateDir, orig: &str, new: &str, pending: Option<&fence::Pending>) {
    state.write_dead_mark(&crate::state::DeadMark {
        host: orig.to_string(),
        new_master: new.to_string(),
        at: crate::logger::utc_now(),
    });
    if pending.is_some_and(|p| p.host == orig) {
        fence::set_new_master(state, new);
    }
}

/// The new master's application grants against what the cluster expects;
/// differences are warnings.
fn compare_grants(state: &StateDir, ctx: &mut Ctx, new: &str, t: Duration) -> Result<()> {
    match expected_grants(state) {
        Some((saved, source)) => {
            match ops::accounts::compare(ctx.host(new)?, &saved.snapshots, saved.digest.as_ref(), t)
            {
                Ok(diffs) => {
                    for d in diffs {
                        ctx.report
                            .warn(format!("{new}: {d} (compared with {source})"));
                    }
                }
                Err(e) => ctx.report.warn(format!("{new}: cannot read grants: {e:#}")),
            }
        }
        None => ctx.report.warn(format!(
            "{new}: no record of the application's grants to compare with (run `mha-helper check` \
             regularly)"
        )),
    }
    Ok(())
}

/// The failover's journal, done: what the notifications tell of it, then
/// closed — or left at `hooks-done` for the operator's command that runs
/// MHA.
fn finish_journal(
    state: &StateDir,
    lock: &crate::state::lock::AppLock,
    mut j: Journal,
    report: &Report,
) {
    let r = serde_json::to_value(report).unwrap_or_default();
    if let Err(e) = j.note_lazy(note::START_REPORT, r) {
        log::warn!("{e:#}");
    }
    let done = if crate::online::closed_by_operator(lock, &j) {
        j.phase_lazy(crate::online::HOOKS_DONE)
    } else {
        j.close(state, "completed").map(|_| ())
    };
    if let Err(e) = done {
        log::error!("{e:#}");
    }
}
