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

use crate::state::journal::note;
use crate::step_id::StepId;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::phase::{closed_by_operator, phase_lock, HookOptions, Masters, HOOKS_DONE};
use crate::cluster::{self, HostSpec};
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{is_refusal, Code, Refused};
use crate::mha_args::OnlineArgs;
use crate::report::Report;
use crate::runner::Runner;
use crate::setup::Setup;
use crate::ssh::keeper;
use crate::state::journal::{new_id, Journal, Kind};
use crate::steps::accounts::RestoreGrants;
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
        let new_before = match j.undo_of(StepId::NewMasterReadOnly) {
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
            .find(|(s, u)| s == StepId::BlockAccounts.as_str() && u.host() == m.orig)
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
    // (Not connected: the opening step fails at its turn, and says so.)
    let settings = ctx
        .find(&m.new)
        .map(|h| h.spec.settings.clone())
        .unwrap_or_default();
    let open = crate::plans::open_new_master(
        &m.new,
        &settings,
        std::slice::from_ref(&m.orig),
        owed.new_before.unwrap_or((true, None)),
    );
    let mut restore: Vec<Box<dyn Step>> = Vec::new();
    if let Some(Undo::Grants {
        host,
        method,
        snapshots,
        digest,
    }) = &owed.grants
    {
        restore.push(Box::new(RestoreGrants::new(
            host,
            *method,
            snapshots.clone(),
            digest.clone(),
        )));
    }
    (open, restore)
}

/// The start phase of one switch.
struct Start<'a> {
    run: Runner<'a>,
    m: Masters,
}

pub fn run(setup: &Setup, args: &OnlineArgs, opts: &HookOptions) -> Result<Code> {
    let start = Start {
        run: Runner::new(setup, "start", opts)?,
        m: Masters::from_args(setup, args)?,
    };
    crate::fault::point("before:start")?;
    let mut report = start.report();
    let existing = start.journal_of_this_switch()?;
    let (lock, keeper) = phase_lock(
        &start.run.state,
        "master-ip-online-change start",
        existing.as_ref(),
    )?;
    let mut specs = start.m.cluster_specs(setup, args)?;
    if opts.dry_run {
        let mut ctx = start.run.connect(specs, report);
        // What the real run knows of the servers, the plan knows too.
        if let Some(j) = existing.as_ref() {
            known_servers(&mut ctx, j);
        }
        let owed = Owed::from_journal(existing.as_ref(), &start.m);
        return start
            .run
            .dry_run(&mut plan(&ctx, &start.m, &owed), &mut ctx);
    }
    let Some(mut journal) = start.journal(existing, &mut report)? else {
        return proof_only(&start, specs, report);
    };
    if let Err(e) = journal.phase("start-begun") {
        log::error!("{e:#}; going on (MHA has switched)");
    }
    crate::fault::point("after:start-begun")?;
    for s in &mut specs {
        s.target.keeper = keeper.clone();
    }
    let undo_timeout = start.setting(&specs, |s| s.undo_timeout);
    let mut ctx = start.run.connect(specs, report);
    known_servers(&mut ctx, &journal);
    ctx.report.journal = Some(journal.path().display().to_string());
    let operator_closes = closed_by_operator(&lock, &journal);
    let result = start.open_and_restore(&mut ctx, &mut journal, undo_timeout);
    start.run.stamp(&mut ctx);
    let code = start.finish(result, &mut ctx, journal, operator_closes);
    start.run.emit(&ctx.report);
    // An operator's command reads the cluster through it once MHA is done,
    // and ends it then.
    if let Some(k) = keeper.as_ref().filter(|_| !operator_closes) {
        keeper::stop(k);
    }
    Ok(code)
}

impl Start<'_> {
    fn report(&self) -> Report {
        let mut report = Report::new("master-ip-online-change", "start");
        report.orig_master = Some(self.m.orig.clone());
        report.new_master = Some(self.m.new.clone());
        report
    }

    /// The open journal, which must be this switch's (orig -> new): start
    /// never opens a new master for a switch it does not belong to.
    fn journal_of_this_switch(&self) -> Result<Option<Journal>> {
        let existing = Journal::open(&self.run.state)?;
        if let Some(j) = &existing {
            if j.masters() != Some((self.m.orig.as_str(), self.m.new.as_str())) {
                return Err(anyhow!(
                    "journal {} belongs to switch {}, not {} -> {}; refusing to open {} (run \
                     `mha-helper recover` to settle that switch first)",
                    j.path().display(),
                    j.masters()
                        .map(|(o, n)| format!("{o} -> {n}"))
                        .unwrap_or_default(),
                    self.m.orig,
                    self.m.new,
                    self.m.new
                )
                .context(Refused));
            }
        }
        Ok(existing)
    }

    /// The switch's journal: stop's, else one of its own (stop was not
    /// ours: nothing to give back). None when none can be made: then the
    /// old master is only proven read-only and MHA opens the new one.
    fn journal(&self, existing: Option<Journal>, report: &mut Report) -> Result<Option<Journal>> {
        if existing.is_some() {
            return Ok(existing);
        }
        let (orig, new) = (&self.m.orig, &self.m.new);
        report.warn(format!(
            "no journal of a stop for {orig} -> {new}: nothing to give back on {orig}; {new} is \
             still made writable only once {orig} is proven read-only"
        ));
        match self.run.begin(Kind::Online, new_id(), orig, new) {
            Ok(j) => Ok(Some(j)),
            Err(e) => {
                report.warn(format!("{e:#}"));
                Ok(None)
            }
        }
    }

    /// A setting of the new master, where start's changes begin.
    fn setting<T: Default>(
        &self,
        specs: &[HostSpec],
        f: impl Fn(&crate::config::HostSettings) -> T,
    ) -> T {
        specs
            .iter()
            .find(|s| s.name == self.m.new)
            .map(|s| f(&s.settings))
            .unwrap_or_default()
    }

    /// Open the new master (and the VIP), then — unless that was refused —
    /// give the old master's grants back while the new master's are
    /// compared with them. MHA has switched: a failure goes on.
    fn open_and_restore(
        &self,
        ctx: &mut Ctx,
        journal: &mut Journal,
        undo_timeout: Duration,
    ) -> Result<()> {
        let owed = Owed::from_journal(Some(journal), &self.m);
        let (mut open, mut restore) = plan_parts(ctx, &self.m, &owed);
        let policy = Policy {
            on_failure: OnFailure::Continue,
            journal: JournalUse::BestEffort,
            undo_timeout,
        };
        let result = engine::run(&mut open, ctx, journal, policy);
        if matches!(&result, Err(e) if is_refusal(e)) {
            return result;
        }
        let rest = after_open(ctx, &self.m, &owed, &mut restore, journal, policy);
        match (result, rest) {
            (Ok(()), r) => r,
            (Err(e), Ok(())) => Err(e),
            (Err(a), Err(b)) => Err(a.context(crate::exit::message(&b))),
        }
    }

    /// Done: the journal closed, or left at `hooks-done` for the
    /// operator's command. A refusal exits 1 (MHA stops before opening the
    /// new master itself); any other failure 10 (MHA proceeds; recover
    /// finishes what is left).
    fn finish(
        &self,
        result: Result<()>,
        ctx: &mut Ctx,
        mut journal: Journal,
        operator_closes: bool,
    ) -> Code {
        let e = match result {
            Ok(()) => {
                ctx.report.outcome = "new master writable, grants restored".into();
                ctx.report.peak_rss_kb = crate::report::peak_rss_kb();
                let r = serde_json::to_value(&ctx.report).unwrap_or_default();
                if let Err(e) = journal.note_lazy(note::START_REPORT, r) {
                    log::warn!("{e:#}");
                }
                if operator_closes {
                    if let Err(e) = journal.phase_lazy(HOOKS_DONE) {
                        log::warn!("{e:#}");
                    }
                } else {
                    match journal.close(&self.run.state, "completed") {
                        Ok(p) => ctx.report.journal = Some(p.display().to_string()),
                        Err(e) => log::error!("{e:#}"),
                    }
                }
                // (A kill here leaves the keeper holding the lock with no
                // open journal: an orphan the next command ends.)
                let _ = crate::fault::point("after:start-closed");
                return Code::Ok;
            }
            Err(e) => e,
        };
        log::error!("{e:#}");
        if is_refusal(&e) {
            ctx.report.outcome = format!(
                "refused: {}; MHA stops here, run `mha-helper recover`",
                crate::exit::message(&e)
            );
            return Code::Failed;
        }
        ctx.report.outcome = "incomplete; MHA proceeds, run `mha-helper recover` to finish".into();
        let r = serde_json::to_value(&ctx.report).unwrap_or_default();
        if let Err(e) = journal.note_lazy(note::START_REPORT, r) {
            log::warn!("{e:#}");
        }
        Code::Proceed
    }
}

/// Each server's kind as stop read it: flavour, version and GTID mode do
/// not change between the phases (what start needs of them: the dialect
/// of the new master's SET and of the old master's grant restore, and
/// whether to prove the catch-up by GTID). Its read state is as of stop;
/// nothing in start decides by it.
fn known_servers(ctx: &mut Ctx, journal: &Journal) {
    let servers = journal.note_value(note::SERVERS);
    for h in ctx.hosts.iter_mut() {
        if let Some(info) = servers
            .and_then(|v| v.get(&h.spec.name))
            .and_then(|v| serde_json::from_value::<crate::mysql::ServerInfo>(v.clone()).ok())
        {
            h.info = Some(info);
        }
    }
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
    let (snapshots, digest) = match &owed.grants {
        Some(Undo::Grants {
            snapshots, digest, ..
        }) => (snapshots.as_slice(), digest.as_ref()),
        _ => (&[][..], None),
    };
    let Some(i) = ctx.hosts.iter().position(|h| h.spec.name == m.new) else {
        return engine::run(restore, ctx, journal, policy);
    };
    let mut new_host = ctx.hosts.remove(i);
    let (compared, result) = std::thread::scope(|s| {
        let h = &mut new_host;
        let compare = s.spawn(move || {
            let t = h.spec.settings.step_timeout;
            crate::ops::accounts::compare(h, snapshots, digest, t)
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
fn proof_only(start: &Start, specs: Vec<HostSpec>, mut report: Report) -> Result<Code> {
    let m = &start.m;
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
    report.elapsed_ms = start.run.started.elapsed().as_millis() as u64;
    match proof {
        Ok(p) => {
            report.outcome = format!(
                "journal unavailable: {} left to MHA to open ({})",
                m.new,
                p.describe()
            );
            start.run.emit(&report);
            Ok(Code::Proceed)
        }
        Err(e) => {
            report.outcome = format!("refused: {}", crate::exit::message(&e));
            start.run.emit(&report);
            Err(e)
        }
    }
}
