//! `--command=start`: MHA has switched; open the new master for writes and
//! give the old master's application accounts back exactly what they had.
//!
//! Runbook: take the lock (or work under the session keeper's, which holds
//! it since `stop`); journal the start; through the keeper's sessions,
//! prove every other host read-only and make the new master writable; the
//! writer VIP arrives there; the old master's grants are replayed as saved.
//! Each change goes through the engine with its undo journaled.
//!
//! MHA has already moved the master when start runs, so failing here must
//! not abort it half-way: operational failures exit 10 (MHA proceeds and
//! turns read_only off itself) and leave the journal open for `recover`.
//! Two exceptions exit 1, so that MHA stops before it makes the new master
//! writable: a refusal (another host, the old master above all, is not
//! proven read-only), and another mha-helper holding the lock.

use std::time::Instant;

use anyhow::{anyhow, Result};

use super::phase::{closed_by_operator, emit, phase_lock, HookOptions, Masters, HOOKS_DONE};
use crate::cluster;
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{is_refusal, Code, Refused};
use crate::mha_args::HookArgs;
use crate::report::Report;
use crate::setup::Setup;
use crate::ssh::keeper;
use crate::state::journal::{new_id, Entry, Journal};
use crate::steps::accounts::{RestoreGrants, BLOCK};
use crate::steps::read_only::MakeWritable;
use crate::steps::vip::MoveVip;
use crate::steps::{Ctx, Step, Undo};

type Steps = Vec<Box<dyn Step>>;

/// What the journal of a stop says start owes.
#[derive(Debug, Clone, Default)]
pub struct Owed {
    /// The new master's read-only state before stop (its undo puts it back).
    pub new_before: Option<(bool, Option<bool>)>,
    /// The grants the block took on the old master, not yet given back.
    pub grants: Option<Undo>,
}

impl Owed {
    pub fn from_journal(journal: Option<&Journal>, m: &Masters) -> Owed {
        let Some(j) = journal else {
            return Owed::default();
        };
        let new_before = match j.undo_of("new-master-read-only") {
            Some(Undo::ReadOnly {
                read_only,
                super_read_only,
                ..
            }) => Some((
                *read_only || super_read_only == &Some(true),
                *super_read_only,
            )),
            _ => None,
        };
        let grants = j
            .pending_undos()
            .into_iter()
            .find(|(s, u)| s == BLOCK && u.host() == m.orig)
            .map(|(_, u)| u);
        Owed { new_before, grants }
    }
}

/// The steps that finish a switch `m`, given what is owed: the new master
/// writable (the old one must be proven read-only), the VIP to it, the old
/// master's grants back.
pub fn plan(ctx: &Ctx, m: &Masters, owed: &Owed) -> Vec<Box<dyn Step>> {
    let (mut open, restore) = plan_parts(ctx, m, owed);
    open.extend(restore);
    open
}

/// The same, in two parts: what opens the new master (inside the outage),
/// and what happens on the old master after.
fn plan_parts(ctx: &Ctx, m: &Masters, owed: &Owed) -> (Steps, Steps) {
    let (ro, sro) = owed.new_before.unwrap_or((true, None));
    let mut open: Vec<Box<dyn Step>> = vec![Box::new(
        MakeWritable::new("new-master-writable", &m.new, std::slice::from_ref(&m.orig))
            .undoing_to(ro, sro),
    )];
    let vip = ctx
        .find(&m.new)
        .is_some_and(|h| h.spec.settings.writer_vip.is_some());
    if vip {
        open.push(Box::new(MoveVip::new(
            "vip-arrive-new-master",
            &m.new,
            true,
        )));
    }
    let mut restore: Vec<Box<dyn Step>> = Vec::new();
    if let Some(Undo::Grants {
        host,
        method,
        snapshots,
    }) = &owed.grants
    {
        restore.push(Box::new(RestoreGrants::new(
            host,
            *method,
            snapshots.clone(),
        )));
    }
    (open, restore)
}

pub fn run(setup: &Setup, args: &HookArgs, opts: &HookOptions) -> Result<Code> {
    let started = Instant::now();
    crate::fault::set_phase("start");
    crate::fault::point("before:start")?;
    let m = Masters::from_args(setup, args)?;
    let mut report = Report::new("master-ip-online-change", "start");
    report.orig_master = Some(m.orig.clone());
    report.new_master = Some(m.new.clone());
    let state = setup.state()?;
    let existing = Journal::open(&state)?;
    if let Some(j) = &existing {
        if j.masters() != Some((m.orig.as_str(), m.new.as_str())) {
            return Err(anyhow!(
                "journal {} belongs to switch {}, not {} -> {}; refusing to open {} (run `mha-helper \
                 recover` to settle that switch first)",
                j.path().display(),
                j.masters()
                    .map(|(o, n)| format!("{o} -> {n}"))
                    .unwrap_or_default(),
                m.orig,
                m.new,
                m.new
            )
            .context(Refused));
        }
    }
    let (lock, keeper) = phase_lock(&state, "master-ip-online-change start", existing.as_ref())?;
    let mut specs = m.cluster_specs(setup, args)?;
    let undo_timeout = specs
        .iter()
        .find(|s| s.name == m.new)
        .map(|s| s.settings.undo_timeout)
        .unwrap_or_default();
    if opts.dry_run {
        let (hosts, unreachable) = cluster::connect_split(specs);
        let mut ctx = Ctx::new(hosts, report);
        ctx.unreachable = unreachable;
        let owed = Owed::from_journal(existing.as_ref(), &m);
        let mut steps = plan(&ctx, &m, &owed);
        ctx.report.plan = engine::plan(&mut steps, &mut ctx)?;
        ctx.report.outcome = "dry-run: nothing changed".into();
        emit(&ctx.report, opts.json);
        return Ok(Code::Ok);
    }
    let mut journal = match existing {
        Some(j) => j,
        None => {
            report.warn(format!(
                "no journal of a stop for {} -> {}: nothing to give back on {}; {} is still made \
                 writable only once {} is proven read-only",
                m.orig, m.new, m.orig, m.new, m.orig
            ));
            match Journal::create(
                &state,
                Entry::Begin {
                    id: new_id(),
                    kind: "online".into(),
                    orig: m.orig.clone(),
                    new: m.new.clone(),
                    at: crate::logger::utc_now(),
                    pid: std::process::id(),
                },
            ) {
                Ok(j) => j,
                Err(e) => {
                    // Without a journal of our own we still must not leave
                    // the old master unproven: MHA goes on and opens the
                    // new master itself.
                    report.warn(format!("{e:#}"));
                    return proof_only(&m, specs, report, opts, started);
                }
            }
        }
    };
    if let Err(e) = journal.phase("start-begun") {
        log::error!("{e:#}; going on (MHA has switched)");
    }
    crate::fault::point("after:start-begun")?;
    for s in &mut specs {
        s.target.keeper = keeper.clone();
    }
    let (mut hosts, unreachable) = cluster::connect_split(specs);
    // Each server's kind as stop read it: flavour, version and GTID mode do
    // not change between the phases (what start needs of them: the dialect
    // of the new master's SET and of the old master's grant restore, and
    // whether to prove the catch-up by GTID). Its read state is as of stop;
    // nothing in start decides by it.
    let servers = journal.note_value(super::stop::SERVERS_NOTE);
    for h in hosts.iter_mut() {
        if let Some(info) = servers
            .as_ref()
            .and_then(|v| v.get(&h.spec.name))
            .and_then(|v| serde_json::from_value::<crate::mysql::ServerInfo>(v.clone()).ok())
        {
            h.info = Some(info);
        }
    }
    let mut ctx = Ctx::new(hosts, report);
    ctx.unreachable = unreachable;
    ctx.report.journal = Some(journal.path().display().to_string());
    let owed = Owed::from_journal(Some(&journal), &m);
    let operator_closes = closed_by_operator(&lock, &journal);
    let (mut open, mut restore) = plan_parts(&ctx, &m, &owed);
    let policy = Policy {
        on_failure: OnFailure::Continue,
        journal: JournalUse::BestEffort,
        undo_timeout,
    };
    let mut result = engine::run(&mut open, &mut ctx, &mut journal, policy);
    if !matches!(&result, Err(e) if is_refusal(e)) {
        // The old master's grants, and (at the same time, on the other
        // host) the new master's compared with them.
        let rest = after_open(&mut ctx, &m, &owed, &mut restore, &mut journal, policy);
        result = match (result, rest) {
            (Ok(()), r) => r,
            (Err(e), Ok(())) => Err(e),
            (Err(a), Err(b)) => Err(a.context(crate::exit::message(&b))),
        };
    }
    ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.collect_stats();
    let code = match result {
        Ok(()) => {
            ctx.report.outcome = "new master writable, grants restored".into();
            ctx.report.peak_rss_kb = crate::report::peak_rss_kb();
            let r = serde_json::to_value(&ctx.report).unwrap_or_default();
            if let Err(e) = journal.note_lazy("start-report", r) {
                log::warn!("{e:#}");
            }
            if operator_closes {
                if let Err(e) = journal.phase_lazy(HOOKS_DONE) {
                    log::warn!("{e:#}");
                }
            } else {
                match journal.close(&state, "completed") {
                    Ok(p) => ctx.report.journal = Some(p.display().to_string()),
                    Err(e) => log::error!("{e:#}"),
                }
            }
            // (A kill here leaves the keeper holding the lock with no open
            // journal: an orphan the next command ends.)
            let _ = crate::fault::point("after:start-closed");
            Code::Ok
        }
        Err(e) if is_refusal(&e) => {
            ctx.report.outcome = format!(
                "refused: {}; MHA stops here, run `mha-helper recover`",
                crate::exit::message(&e)
            );
            log::error!("{e:#}");
            Code::Failed
        }
        Err(e) => {
            ctx.report.outcome =
                "incomplete; MHA proceeds, run `mha-helper recover` to finish".into();
            log::error!("{e:#}");
            let r = serde_json::to_value(&ctx.report).unwrap_or_default();
            if let Err(e) = journal.note_lazy("start-report", r) {
                log::warn!("{e:#}");
            }
            Code::Proceed
        }
    };
    emit(&ctx.report, opts.json);
    // An operator's command reads the cluster through it once MHA is done,
    // and ends it then.
    if let Some(k) = keeper.as_ref().filter(|_| !operator_closes) {
        keeper::stop(k);
    }
    Ok(code)
}

/// Run `restore` (the old master) while the new master's application
/// grants are compared with the old master's snapshot on another thread:
/// they should be equal (the block was not binlogged); differences are
/// warnings. Both after the new master is open, outside the outage.
fn after_open(
    ctx: &mut Ctx,
    m: &Masters,
    owed: &Owed,
    restore: &mut [Box<dyn Step>],
    journal: &mut Journal,
    policy: Policy,
) -> Result<()> {
    let snapshots = match &owed.grants {
        Some(Undo::Grants { snapshots, .. }) => snapshots.as_slice(),
        _ => &[],
    };
    let Some(i) = ctx.hosts.iter().position(|h| h.spec.name == m.new) else {
        return engine::run(restore, ctx, journal, policy);
    };
    let mut new_host = ctx.hosts.remove(i);
    let (compared, result) = std::thread::scope(|s| {
        let h = &mut new_host;
        let compare = s.spawn(move || {
            let t = h.spec.settings.step_timeout;
            crate::ops::accounts::compare(h, snapshots, t)
        });
        let result = engine::run(restore, ctx, journal, policy);
        (compare.join(), result)
    });
    ctx.hosts.insert(i, new_host);
    match compared {
        Ok(Ok(diffs)) => {
            for d in diffs {
                ctx.report
                    .warn(format!("{}: {d} (compared with the old master's)", m.new));
            }
        }
        Ok(Err(e)) => ctx
            .report
            .warn(format!("{}: cannot read grants: {e:#}", m.new)),
        Err(_) => ctx
            .report
            .warn(format!("{}: grant comparison panicked", m.new)),
    }
    result
}

/// No journal and none can be made: prove the old master (and every other
/// host) read-only and leave the new master to MHA (exit 10), or refuse.
fn proof_only(
    m: &Masters,
    specs: Vec<crate::cluster::HostSpec>,
    mut report: Report,
    opts: &HookOptions,
    started: Instant,
) -> Result<Code> {
    let (mut hosts, unreachable) = cluster::connect_split(specs);
    let down: Vec<String> = unreachable.iter().map(|(n, _)| n.clone()).collect();
    let t = hosts
        .first()
        .map(|h| h.spec.settings.step_timeout)
        .unwrap_or_default();
    let (_, mut others) = crate::ops::read_only::split(&mut hosts, &m.new)?;
    let proof = crate::ops::read_only::prove_read_only(
        &mut others,
        &down,
        std::slice::from_ref(&m.orig),
        t,
    );
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    match proof {
        Ok(p) => {
            report.outcome = format!(
                "journal unavailable: {} left to MHA to open ({})",
                m.new,
                p.describe()
            );
            emit(&report, opts.json);
            Ok(Code::Proceed)
        }
        Err(e) => {
            report.outcome = format!("refused: {}", crate::exit::message(&e));
            emit(&report, opts.json);
            Err(e)
        }
    }
}
