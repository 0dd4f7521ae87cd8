//! `--command=stop`: make the old master stop taking application writes,
//! with every change journaled first and undone on any failure.
//!
//! Runbook: take the application's lock; connect to every host of the
//! cluster in parallel (through a session keeper that holds the sessions,
//! and the lock, until `start`); preflight (reads only); new master
//! read_only; block application accounts on the old master
//! (sql_log_bin=0); wait up to the grace period for their sessions to end;
//! kill the rest; old master read_only; prove the fence; the writer VIP
//! leaves.

use crate::state::journal::note;
use crate::step_id::StepId;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::phase::{phase_lock, HookOptions, Masters};
use super::preflight;
use crate::cluster::{self, HostSpec};
use crate::config::helper::BlockMethod;
use crate::engine::{JournalUse, OnFailure, Policy};
use crate::exit::{bad_input, Code, NeedsRecover, Refused};
use crate::grants::Selection;
use crate::mha_args::OnlineArgs;
use crate::ops;
use crate::report::Report;
use crate::runner::Runner;
use crate::setup::Setup;
use crate::ssh::keeper;
use crate::state::journal::{Journal, Kind};
use crate::state::lock::{AppLock, Held};
use crate::steps::accounts::BlockAccounts;
use crate::steps::read_only::SetReadOnly;
use crate::steps::sessions::{DrainSessions, KillSessions, VerifyFence};
use crate::steps::vip::MoveVip;
use crate::steps::{Ctx, Step};

/// How long the session keeper waits for `start` before it gives up.
const KEEPER_IDLE: Duration = Duration::from_secs(600);

/// The steps, in order, for the block method of the old master.
pub fn plan(ctx: &Ctx, m: &Masters, admin: &str, sel: Selection) -> Result<Vec<Box<dyn Step>>> {
    let orig = ctx
        .find(&m.orig)
        .ok_or_else(|| anyhow!("{}: not connected", m.orig))?;
    let new = ctx
        .find(&m.new)
        .ok_or_else(|| anyhow!("{}: not connected", m.new))?;
    let so = &orig.spec.settings;
    let new_ro: Box<dyn Step> = Box::new(SetReadOnly::new(
        StepId::NewMasterReadOnly,
        &m.new,
        new.spec.settings.super_read_only,
    ));
    let block: Box<dyn Step> = Box::new(BlockAccounts::new(&m.orig, so.block_method, sel));
    let drain: Box<dyn Step> = Box::new(DrainSessions::new(&m.orig, admin, so.grace_period));
    let kill: Box<dyn Step> = Box::new(KillSessions::new(&m.orig, admin));
    let old_ro = SetReadOnly::new(StepId::OldMasterReadOnly, &m.orig, so.super_read_only);
    let mut steps: Vec<Box<dyn Step>> = match so.block_method {
        // Accounts cannot log in again, so kill first; read_only and the
        // proof of the fence then share one round trip.
        BlockMethod::Revoke | BlockMethod::AccountLock => {
            vec![
                new_ro,
                block,
                drain,
                kill,
                Box::new(old_ro.proving_fence(admin)),
            ]
        }
        // Sessions would come straight back with full rights: read_only
        // first, then kill, then prove the fence.
        BlockMethod::ReadOnlyOnly => vec![
            new_ro,
            block,
            drain,
            Box::new(old_ro),
            kill,
            Box::new(VerifyFence::new(&m.orig, admin)),
        ],
    };
    // The VIP leaves once writes are blocked; start brings it to the new
    // master once that is writable.
    if so.writer_vip.is_some() {
        steps.push(Box::new(MoveVip::new(
            StepId::VipLeaveOldMaster,
            &m.orig,
            false,
        )));
    }
    Ok(steps)
}

/// The stop phase of one switch: its masters, the run and what it reads
/// before the first change.
struct Stop<'a> {
    run: Runner<'a>,
    args: &'a OnlineArgs,
    opts: &'a HookOptions,
    m: Masters,
}

pub fn run(setup: &Setup, args: &OnlineArgs, opts: &HookOptions) -> Result<Code> {
    let stop = Stop {
        run: Runner::new(setup, "stop", opts)?,
        args,
        opts,
        m: Masters::from_args(setup, args)?,
    };
    let report = stop.report();
    let Some(mut lock) = stop.lock(&report)? else {
        return Ok(Code::Ok);
    };
    let mut specs = stop.m.cluster_specs(setup, args)?;
    let (sel, admin, undo_timeout) = stop.old_master(&specs)?;
    let id = crate::state::journal::switch_id();
    lock.set_switch(&id);
    let (keeper, guard) = stop.keeper(&lock, &specs, &id)?;
    for s in &mut specs {
        s.target.keeper = keeper.clone();
    }
    let mut ctx = stop.run.connect(specs, report);
    stop.check(&mut ctx, &sel, keeper.is_some())?;
    let mut steps = plan(&ctx, &stop.m, &admin, sel)?;
    if opts.dry_run {
        return stop.run.dry_run(&mut steps, &mut ctx);
    }
    let mut journal = stop.begin(&mut ctx, id, keeper.as_ref())?;
    let policy = Policy {
        on_failure: OnFailure::RollBack,
        journal: JournalUse::Required,
        undo_timeout,
    };
    let result = stop.run.apply(&mut steps, &mut ctx, &mut journal, policy);
    stop.finish(result, ctx, journal, guard)
}

impl Stop<'_> {
    fn report(&self) -> Report {
        let mut report = Report::new("master-ip-online-change", "stop");
        report.orig_master = Some(self.m.orig.clone());
        report.new_master = Some(self.m.new.clone());
        report
    }

    /// The application's lock (or the one a keeper or an operator's
    /// command holds for this switch). None when this stop already ran
    /// for these masters (MHA runs it again): nothing to do. Any other
    /// unfinished switch is a refusal.
    fn lock(&self, report: &Report) -> Result<Option<AppLock>> {
        let state = &self.run.state;
        let existing = Journal::open(state)?;
        let (lock, _) = phase_lock(state, "master-ip-online-change stop", existing.as_ref())?;
        let Some(j) = existing else {
            return Ok(Some(lock));
        };
        let (orig, new) = (self.m.orig.as_str(), self.m.new.as_str());
        if j.masters() == Some((orig, new))
            && j.reached("stop-complete")
            && !j.reached("start-begun")
        {
            log::info!(
                "stop already completed for {orig} -> {new} (journal {}); nothing to do",
                j.path().display()
            );
            let mut report = report.clone();
            report.outcome = "already-stopped".into();
            report.journal = Some(j.path().display().to_string());
            self.run.emit(&report);
            return Ok(None);
        }
        Err(anyhow!(
            "an unfinished switch {} is recorded in {}; run `mha-helper recover --conf {}` first",
            j.masters()
                .map(|(o, n)| format!("{o} -> {n}"))
                .unwrap_or_default(),
            j.path().display(),
            self.run.setup.app_path().display()
        )
        .context(Refused))
    }

    /// What the old master's settings say: whose accounts are the
    /// application's, the MHA account, and how long an undo may take.
    fn old_master(&self, specs: &[HostSpec]) -> Result<(Selection, String, Duration)> {
        let spec = specs
            .iter()
            .find(|s| s.name == self.m.orig)
            .ok_or_else(|| bad_input(anyhow!("{}: no server block", self.m.orig)))?;
        Ok((
            ops::accounts::selection(self.run.setup, spec),
            spec.access.user.clone(),
            spec.settings.undo_timeout,
        ))
    }

    /// The session keeper for this switch (none in a dry run, or when it
    /// cannot start: then each phase connects directly). It takes over the
    /// lock only when the lock is ours to hand on.
    fn keeper(
        &self,
        lock: &AppLock,
        specs: &[HostSpec],
        id: &str,
    ) -> Result<(Option<crate::cluster::KeeperRef>, KeeperGuard)> {
        if self.opts.dry_run {
            return Ok((None, KeeperGuard(None)));
        }
        let hosts: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let lock_fd = match lock.held() {
            Held::Own => lock.raw_fd(),
            _ => None,
        };
        let state = &self.run.state;
        let spawned = keeper::spawn(&keeper::Spawn {
            conf_args: self.opts.paths.as_args(),
            socket: &state.keeper_socket(),
            log: &state.keeper_log(),
            hosts: &hosts,
            idle: KEEPER_IDLE,
            switch: id,
            lock_fd,
        });
        crate::fault::point("after:keeper-spawned")?;
        Ok(match spawned {
            Ok((k, tether)) => (Some(k.clone()), KeeperGuard(Some((k, tether)))),
            Err(e) => {
                log::debug!("no session keeper ({e:#}); connecting directly");
                (None, KeeperGuard(None))
            }
        })
    }

    /// Every host answers, the preflight passes (reads only); with a
    /// keeper, the clients start's read-only proof asks are started now,
    /// before the block, so that inside the outage the proof costs a round
    /// trip, not a client start and a login.
    fn check(&self, ctx: &mut Ctx, sel: &Selection, kept: bool) -> Result<()> {
        refuse_unreachable(self.run.setup, ctx)?;
        preflight::run(ctx, &self.m.orig, &self.m.new, sel)?;
        if kept {
            let mut others: Vec<&mut crate::cluster::Host> = ctx
                .hosts
                .iter_mut()
                .filter(|h| h.spec.name != self.m.new)
                .collect();
            let t = Duration::from_secs(5);
            cluster::parallel(&mut others, |h| ops::read_only::now(h, t, false));
        }
        Ok(())
    }

    /// The switch's journal with what start and recover need before the
    /// first change: the keeper, each server's kind (so that start need
    /// not ask inside the outage), whether the old master is to follow the
    /// new one. A journal that cannot say so is put aside: nothing changed.
    fn begin(
        &self,
        ctx: &mut Ctx,
        id: String,
        keeper: Option<&crate::cluster::KeeperRef>,
    ) -> Result<Journal> {
        let mut journal = self
            .run
            .begin(Kind::Online, id, &self.m.orig, &self.m.new)?;
        ctx.report.journal = Some(journal.path().display().to_string());
        let servers: serde_json::Map<String, serde_json::Value> = ctx
            .hosts
            .iter()
            .filter_map(|h| {
                Some((
                    h.spec.name.clone(),
                    serde_json::to_value(h.info.as_ref()?).ok()?,
                ))
            })
            .collect();
        let follows = self.args.orig_is_new_slave;
        let begun = keeper
            .map(|k| journal.note(note::KEEPER, serde_json::to_value(k).unwrap_or_default()))
            .unwrap_or(Ok(()))
            .and_then(|_| journal.note_lazy(note::SERVERS, servers.into()))
            .and_then(|_| journal.note_lazy(note::ORIG_FOLLOWS_NEW, follows.into()))
            .and_then(|_| journal.phase("stop-begun"));
        if let Err(e) = begun {
            let _ = journal.close(&self.run.state, "rolled-back");
            return Err(e.context("nothing was changed"));
        }
        Ok(journal)
    }

    /// Writes blocked: the keeper goes on to start, exit 0 (from here on a
    /// journal that cannot be written only costs the report). A failure
    /// was rolled back (the journal is put aside) or asks for recover (it
    /// stays open).
    fn finish(
        &self,
        result: Result<()>,
        mut ctx: Ctx,
        mut journal: Journal,
        guard: KeeperGuard,
    ) -> Result<Code> {
        let e = match result {
            Ok(()) => {
                ctx.report.outcome = "writes blocked on the old master".into();
                ctx.report.peak_rss_kb = crate::report::peak_rss_kb();
                let report = serde_json::to_value(&ctx.report).unwrap_or_default();
                if let Err(e) = journal
                    .phase_lazy("stop-complete")
                    .and_then(|_| journal.note(note::STOP_REPORT, report))
                {
                    log::error!("{e:#}; stop is complete all the same");
                }
                guard.keep();
                self.run.emit(&ctx.report);
                return Ok(Code::Ok);
            }
            Err(e) => e,
        };
        let needs_recover = e.downcast_ref::<NeedsRecover>().is_some();
        ctx.report.outcome = if needs_recover {
            "failed; rollback incomplete".into()
        } else {
            "failed; rolled back".into()
        };
        self.run.emit(&ctx.report);
        if !needs_recover {
            if let Err(c) = journal.close(&self.run.state, "rolled-back") {
                log::error!("{c:#}");
            }
        }
        Err(e)
    }
}

/// MHA's online switch needs every replica; a host that does not answer
/// (and is not `ignore_fail`) is refused before anything changes.
fn refuse_unreachable(setup: &Setup, ctx: &Ctx) -> Result<()> {
    let down: Vec<String> = ctx
        .unreachable
        .iter()
        .filter(|(n, _)| !setup.mha.server(n).is_some_and(|s| s.ignore_fail))
        .map(|(n, why)| format!("{n} ({why})"))
        .collect();
    if down.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "cannot reach {}; an online switch needs every host (MHA checks every replica, and no host \
         may be made writable without proving the others read-only); fix it, or set ignore_fail \
         for that block",
        down.join(", ")
    ))
}

/// Ends the session keeper when dropped, unless `keep` was called (the
/// stop phase hands it over to start only when it succeeded). Should this
/// process die instead, the keeper's tether closes and it ends by itself.
pub struct KeeperGuard(Option<(crate::cluster::KeeperRef, keeper::Tether)>);

impl KeeperGuard {
    pub fn keep(mut self) {
        if let Some((_, tether)) = self.0.take() {
            tether.hand_over();
        }
    }
}

impl Drop for KeeperGuard {
    fn drop(&mut self) {
        if let Some((k, _)) = &self.0 {
            keeper::stop(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine;
    use crate::exit::{code_for, Code};
    use crate::grants::{Account, Selection, Snapshot};
    use crate::report::PlannedStep;
    use crate::state::journal::Entry;
    use crate::state::StateDir;
    use crate::testing::{self, FakeExec, Log};

    const GRANT: &str = "GRANT SELECT, INSERT ON `appdb`.* TO `app`@`%`";

    fn snapshot() -> Snapshot {
        Snapshot {
            account: Account::new("app", "%"),
            grants: vec![
                "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*A'".into(),
                GRANT.into(),
            ],
            locked: false,
            default_roles: Vec::new(),
        }
    }

    /// db1 the writable old master, db2 the read_only new one; db1 fails
    /// statements containing any of `failing`.
    fn fixture(name: &str, failing: &[&str]) -> (Ctx, Log, Vec<Box<dyn Step>>, Journal) {
        fixture_with(name, failing, |_| {}, None)
    }

    /// The fixture, db1's fake changed by `tweak` and (when given) the
    /// grace period set.
    fn fixture_with(
        name: &str,
        failing: &[&str],
        tweak: impl FnOnce(&mut FakeExec),
        grace: Option<std::time::Duration>,
    ) -> (Ctx, Log, Vec<Box<dyn Step>>, Journal) {
        let log = Log::default();
        let dir = crate::state::tests::temp_dir(&format!("stop-{name}"));
        let state = StateDir::open(&dir, "app1").unwrap();
        let path = state.journal();
        let mut db1 = FakeExec::new("db1", &log);
        db1.answers.insert("watermark".into(), "id\n100\n".into());
        // the grants as the block reads them again, unchanged
        db1.answers.insert(
            "grants:0".into(),
            format!("Grants for app@%\n{}\n{GRANT}\n", snapshot().grants[0]),
        );
        db1.answers.insert(
            "after:0".into(),
            format!("Grants for app@%\n{}\n{GRANT}\n", snapshot().grants[0]),
        );
        db1.failing = failing.iter().map(|f| f.to_string()).collect();
        let p = path.clone();
        db1.on_script = Some(Box::new(move |sql: &str| {
            if sql.contains("\nREVOKE ") {
                let j = std::fs::read_to_string(&p).unwrap();
                assert!(
                    j.contains("\"kind\":\"grants\"")
                        && j.contains("GRANT SELECT, INSERT ON `appdb`"),
                    "grants must be in the journal before the revoke: {j}"
                );
            }
        }));
        tweak(&mut db1);
        let db2 = FakeExec::new("db2", &log);
        let mut hosts = vec![
            testing::host("db1", db1, false),
            testing::host("db2", db2, true),
        ];
        if let Some(g) = grace {
            hosts[0].spec.settings.grace_period = g;
        }
        let mut ctx = Ctx::new(hosts, Report::new("test", "stop"));
        ctx.app.accounts = vec![snapshot().account];
        ctx.app.snapshots = vec![snapshot()];
        let m = Masters {
            orig: "db1".into(),
            new: "db2".into(),
        };
        let sel = Selection {
            admin_user: "mha".into(),
            ..Selection::default()
        };
        let steps = plan(&ctx, &m, "mha", sel).unwrap();
        let journal = Journal::create(
            &state,
            Entry::Begin {
                id: "t".into(),
                kind: crate::state::journal::Kind::Online,
                orig: "db1".into(),
                new: "db2".into(),
                at: "now".into(),
                pid: 1,
            },
        )
        .unwrap();
        (ctx, log, steps, journal)
    }

    fn policy() -> Policy {
        Policy {
            on_failure: OnFailure::RollBack,
            journal: JournalUse::Required,
            undo_timeout: std::time::Duration::from_secs(1),
        }
    }

    fn kinds(j: &Journal) -> Vec<String> {
        j.entries()
            .iter()
            .map(|e| match e {
                Entry::Begin { .. } => "begin".to_string(),
                Entry::Intent { step, .. } => format!("intent {step}"),
                Entry::Done { step, .. } => format!("done {step}"),
                Entry::Undone { step, .. } => format!("undone {step}"),
                Entry::Note { key, .. } => format!("note {key}"),
                Entry::Phase { phase } => format!("phase {phase}"),
                Entry::End { .. } => "end".into(),
            })
            .collect()
    }

    const SESSIONS: &str = "id\tuser\thost\tdb\tdb_null\tcommand\ttime\tstate\tidle\n";

    /// A stop with one application session open at the block (`idle` or
    /// in a transaction), gone once killed, run after its dry run; returns
    /// the plan and the context after the run.
    fn run_with_one_session(name: &str, idle: bool) -> (Vec<PlannedStep>, Ctx) {
        let (mut ctx, _log, mut steps, mut journal) = fixture_with(
            name,
            &[],
            |db1| {
                let open = format!(
                    "{SESSIONS}50\tapp\t10.0.0.9:4000\tappdb\t0\tSleep\t3\t\t{}\n",
                    u8::from(idle)
                );
                db1.answers.insert("sessions".into(), open);
                db1.after_kill.insert("sessions".into(), SESSIONS.into());
            },
            Some(std::time::Duration::from_millis(120)),
        );
        ctx.show_sent = true;
        let planned = engine::plan(&mut steps, &mut ctx).unwrap();
        engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap();
        (planned, ctx)
    }

    /// Every statement a step of `ctx`'s run sent.
    fn sent(ctx: &Ctx, step: &str) -> Vec<String> {
        let s = ctx.report.steps.iter().find(|s| s.step == step).unwrap();
        s.sent
            .iter()
            .flat_map(|x| x.statements.clone())
            .collect::<Vec<_>>()
    }

    fn digest() -> crate::grants::Digest {
        crate::grants::Digest {
            expr: "CONCAT_WS(' ', 'x')".into(),
            value: "user:1:2".into(),
        }
    }

    fn journaled_digest(j: &Journal) -> Option<crate::grants::Digest> {
        match j.undo_of(StepId::BlockAccounts) {
            Some(crate::steps::Undo::Grants { digest, .. }) => digest.clone(),
            u => panic!("no grants undo: {u:?}"),
        }
    }

    #[test]
    fn with_a_digest_the_block_proves_the_grants_in_one_statement_and_reads_none_again() {
        let (mut ctx, _log, mut steps, mut journal) = fixture("digest", &[]);
        ctx.app.digest = Some(digest());
        ctx.show_sent = true;
        engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap();
        let block = sent(&ctx, "block-accounts");
        let guard = block.iter().position(|s| s.contains("@mha_helper_guard"));
        let revoke = block.iter().position(|s| s.starts_with("REVOKE "));
        assert!(guard.is_some() && guard < revoke, "{block:?}");
        // the proven snapshot's privileges only, not REVOKE ALL
        assert!(
            block.contains(&"REVOKE SELECT, INSERT ON `appdb`.* FROM `app`@`%`;".to_string()),
            "{block:?}"
        );
        assert!(
            !block.iter().any(|s| s.starts_with("SHOW GRANTS")),
            "{block:?}"
        );
        assert_eq!(journaled_digest(&journal), Some(digest()));
    }

    #[test]
    fn a_failed_digest_guard_reruns_the_block_with_every_grant_read_again_first() {
        let (mut ctx, log, mut steps, mut journal) = fixture("guard", &["@mha_helper_guard"]);
        ctx.app.digest = Some(digest());
        engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap();
        let db1: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with("db1:") && s.contains("\nREVOKE "))
            .cloned()
            .collect();
        assert_eq!(db1.len(), 2, "the block ran twice: {db1:?}");
        assert!(db1[0].contains("@mha_helper_guard"), "{}", db1[0]);
        let again = &db1[1];
        assert!(!again.contains("@mha_helper_guard"), "{again}");
        // read again, the grants are taken with REVOKE ALL
        assert!(
            again.find("SHOW GRANTS FOR") < again.find("REVOKE ALL"),
            "{again}"
        );
        assert!(
            kinds(&journal).contains(&"done block-accounts".to_string()),
            "{:?}",
            kinds(&journal)
        );
        // no digest was read with the grants: the restore reads them all back
        assert_eq!(journaled_digest(&journal), None);
    }

    #[test]
    fn an_idle_session_is_ended_at_once_and_the_drain_does_not_poll() {
        let (planned, ctx) = run_with_one_session("idle", true);
        for (p, s) in planned.iter().zip(&ctx.report.steps) {
            crate::listing::conforms(&p.scripts, &s.sent)
                .unwrap_or_else(|e| panic!("{}: {e}", p.step));
        }
        let drain = sent(&ctx, "drain-sessions");
        assert!(
            drain.contains(&"KILL CONNECTION 50;".to_string()),
            "{drain:?}"
        );
        let step = ctx.report.steps.iter().find(|s| s.step == "drain-sessions");
        let detail = step.and_then(|s| s.detail.clone()).unwrap_or_default();
        assert!(
            detail.contains("(1 idle, 0 with work in flight); 1 ended while idle")
                && detail.contains("after 0 poll(s)"),
            "{detail}"
        );
        assert!(!sent(&ctx, "kill-sessions")
            .iter()
            .any(|l| l.contains("KILL")));
        assert_eq!(
            ctx.report.sessions_at_block,
            Some(crate::report::SessionsAtBlock { idle: 1, busy: 0 })
        );
        assert_eq!(ctx.report.killed_sessions.len(), 1);
        assert!(ctx.report.killed_sessions[0].idle);
    }

    #[test]
    fn the_dry_run_lists_exactly_what_each_step_then_sends() {
        // the session is in a transaction: polled, then killed at the end
        let (planned, ctx) = run_with_one_session("plan-sent", false);
        assert_eq!(planned.len(), ctx.report.steps.len());
        for (p, s) in planned.iter().zip(&ctx.report.steps) {
            assert_eq!(p.step, s.step);
            assert!(!s.sent.is_empty(), "{} sent nothing", s.step);
            crate::listing::conforms(&p.scripts, &s.sent)
                .unwrap_or_else(|e| panic!("{}: {e}", p.step));
        }
        // the repeated parts were really exercised: polls, then the kill
        let drain = sent(&ctx, "drain-sessions");
        assert!(drain.iter().any(|l| l.contains("PROCESSLIST")));
        assert!(!drain.iter().any(|l| l.contains("KILL")), "{drain:?}");
        assert!(sent(&ctx, "kill-sessions").contains(&"KILL USER 'app';".to_string()));
        assert_eq!(
            ctx.report.sessions_at_block,
            Some(crate::report::SessionsAtBlock { idle: 0, busy: 1 })
        );
        // and a plan that differs in one statement does not pass
        let mut wrong = planned[0].scripts.clone();
        wrong[0].statements.last_mut().unwrap().sql.push(' ');
        assert!(crate::listing::conforms(&wrong, &ctx.report.steps[0].sent).is_err());
    }

    #[test]
    fn every_undo_is_journaled_before_its_change_and_the_steps_run_in_order() {
        let (mut ctx, log, mut steps, mut journal) = fixture("ok", &[]);
        engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap();
        assert_eq!(
            kinds(&journal),
            [
                "begin",
                "intent new-master-read-only",
                "done new-master-read-only",
                "intent block-accounts",
                "note block_started_ms",
                "done block-accounts",
                "done drain-sessions",
                "done kill-sessions",
                "intent old-master-read-only",
                "done old-master-read-only",
            ]
        );
        let log = log.lock().unwrap();
        assert!(log[0].starts_with("db2: ") && log[0].contains("SET GLOBAL read_only = 1"));
        assert!(log[1].starts_with("db1: ") && log[1].contains("SET SESSION sql_log_bin = 0"));
        assert!(log[1].contains("REVOKE ALL PRIVILEGES, GRANT OPTION FROM `app`@`%`"));
        assert!(log[2].starts_with("db1: ") && log[2].contains("SET GLOBAL read_only = 1"));
        assert_eq!(
            log.len(),
            3,
            "no drain polls or kills without sessions: {log:#?}"
        );
    }

    #[test]
    fn a_failure_rolls_back_every_change_in_reverse_order() {
        let (mut ctx, log, mut steps, mut journal) = fixture("fail", &["SET GLOBAL read_only = 1"]);
        let err = engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap_err();
        let msg = crate::exit::message(&err);
        assert!(
            msg.contains("step old-master-read-only on db1 failed"),
            "{msg}"
        );
        assert!(msg.contains("rolled back: 3 change(s) undone"), "{msg}");
        assert_eq!(code_for(&err), Code::Failed);
        let log = log.lock().unwrap();
        let undo: Vec<&String> = log.iter().skip(3).collect();
        // db1 is made writable again only once db2 reads read-only (db1's
        // binary log position is read at the same time, in parallel).
        let proof = undo.iter().position(|s| {
            s.starts_with("db2: ")
                && s.contains("SELECT @@GLOBAL.read_only")
                && !s.contains("SET GLOBAL")
        });
        let position = undo.iter().position(|s| {
            s.starts_with("db1: ") && s.contains("SHOW MASTER STATUS") && !s.contains("SET GLOBAL")
        });
        let open = undo
            .iter()
            .position(|s| s.starts_with("db1: ") && s.contains("SET GLOBAL read_only = 0"));
        assert_eq!(open, Some(2), "{undo:#?}");
        assert!(
            proof.is_some_and(|p| p < 2) && position.is_some_and(|p| p < 2),
            "{undo:#?}"
        );
        assert!(
            undo[3].starts_with("db1: ") && undo[3].contains(GRANT),
            "{undo:#?}"
        );
        assert!(undo[3].contains("SET SESSION sql_log_bin = 0"));
        assert!(
            undo[4].starts_with("db2: ") && undo[4].contains("SET GLOBAL read_only = 1"),
            "{undo:#?}"
        );
        assert!(journal.pending_undos().is_empty());
    }

    #[test]
    fn an_undo_that_fails_too_asks_for_recover_and_stays_in_the_journal() {
        let (mut ctx, _log, mut steps, mut journal) = fixture(
            "undo-fails",
            &["SET GLOBAL read_only = 1", "GRANT SELECT, INSERT"],
        );
        let err = engine::run(&mut steps, &mut ctx, &mut journal, policy()).unwrap_err();
        assert_eq!(code_for(&err), Code::NeedsRecover);
        assert!(crate::exit::message(&err).contains("ROLLBACK INCOMPLETE"));
        let pending: Vec<String> = journal
            .pending_undos()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(pending, vec!["block-accounts"], "the grants are still owed");
    }
}
