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

use std::time::Instant;

use anyhow::{anyhow, Result};

use super::phase::{emit, phase_lock, HookOptions, Masters, KEEPER_NOTE};
use super::preflight;
use crate::cluster;
use crate::config::helper::BlockMethod;
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{bad_input, Code, NeedsRecover, Refused};
use crate::grants::Selection;
use crate::mha_args::HookArgs;
use crate::ops;
use crate::report::Report;
use crate::setup::Setup;
use crate::ssh::keeper;
use crate::state::journal::{Entry, Journal};
use crate::state::lock::Held;
use crate::steps::accounts::BlockAccounts;
use crate::steps::read_only::SetReadOnly;
use crate::steps::sessions::{DrainSessions, KillSessions, VerifyFence};
use crate::steps::vip::MoveVip;
use crate::steps::{Ctx, Step};

/// The journal note with each host's server kind, as stop read it.
pub const SERVERS_NOTE: &str = "servers";

/// The journal note saying whether the old master is to replicate from the
/// new one after the switch (MHA's `--orig_master_is_new_slave`): what
/// `recover` finishes if MHA dies before doing it.
pub const ORIG_FOLLOWS_NOTE: &str = "orig-follows-new";

/// How long the session keeper waits for `start` before it gives up.
const KEEPER_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

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
        "new-master-read-only",
        &m.new,
        new.spec.settings.super_read_only,
    ));
    let block: Box<dyn Step> = Box::new(BlockAccounts::new(&m.orig, so.block_method, sel));
    let drain: Box<dyn Step> = Box::new(DrainSessions::new(&m.orig, admin, so.grace_period));
    let kill: Box<dyn Step> = Box::new(KillSessions::new(&m.orig, admin));
    let old_ro = SetReadOnly::new("old-master-read-only", &m.orig, so.super_read_only);
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
            "vip-leave-old-master",
            &m.orig,
            false,
        )));
    }
    Ok(steps)
}

pub fn run(setup: &Setup, args: &HookArgs, opts: &HookOptions) -> Result<Code> {
    let started = Instant::now();
    crate::fault::set_phase("stop");
    let m = Masters::from_args(setup, args)?;
    let mut report = Report::new("master-ip-online-change", "stop");
    report.orig_master = Some(m.orig.clone());
    report.new_master = Some(m.new.clone());
    let state = setup.state()?;
    let existing = Journal::open(&state)?;
    let (mut lock, _) = phase_lock(&state, "master-ip-online-change stop", existing.as_ref())?;

    if let Some(j) = existing {
        if j.masters() == Some((m.orig.as_str(), m.new.as_str()))
            && j.reached("stop-complete")
            && !j.reached("start-begun")
        {
            log::info!(
                "stop already completed for {} -> {} (journal {}); nothing to do",
                m.orig,
                m.new,
                j.path().display()
            );
            report.outcome = "already-stopped".into();
            report.journal = Some(j.path().display().to_string());
            emit(&report, opts.json);
            return Ok(Code::Ok);
        }
        return Err(anyhow!(
            "an unfinished switch {} is recorded in {}; run `mha-helper recover --conf {}` first",
            j.masters()
                .map(|(o, n)| format!("{o} -> {n}"))
                .unwrap_or_default(),
            j.path().display(),
            setup.app_path().display()
        )
        .context(Refused));
    }

    let mut specs = m.cluster_specs(setup, args)?;
    let orig_spec = specs
        .iter()
        .find(|s| s.name == m.orig)
        .ok_or_else(|| bad_input(anyhow!("{}: no server block", m.orig)))?;
    let sel = ops::accounts::selection(setup, orig_spec);
    let admin = orig_spec.access.user.clone();
    let undo_timeout = orig_spec.settings.undo_timeout;
    let id = crate::state::journal::switch_id();
    lock.set_switch(&id);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let keeper = if opts.dry_run {
        None
    } else {
        let hosts: Vec<&str> = names.iter().map(String::as_str).collect();
        // The keeper takes over our lock only when it is ours to hand on.
        let lock_fd = match lock.held() {
            Held::Own => lock.raw_fd(),
            _ => None,
        };
        match keeper::spawn(&keeper::Spawn {
            conf_args: opts.paths.as_args(),
            socket: &state.keeper_socket(),
            log: &state.keeper_log(),
            hosts: &hosts,
            idle: KEEPER_IDLE,
            switch: &id,
            lock_fd,
        }) {
            Ok(k) => Some(k),
            Err(e) => {
                log::debug!("no session keeper ({e:#}); connecting directly");
                None
            }
        }
    };
    crate::fault::point("after:keeper-spawned")?;
    let (keeper, guard) = match keeper {
        Some((k, tether)) => (Some(k.clone()), KeeperGuard(Some((k, tether)))),
        None => (None, KeeperGuard(None)),
    };
    for s in &mut specs {
        s.target.keeper = keeper.clone();
    }
    let (hosts, unreachable) = cluster::connect_split(specs);
    let mut ctx = Ctx::new(hosts, report);
    ctx.unreachable = unreachable;
    refuse_unreachable(setup, &ctx)?;
    preflight::run(&mut ctx, &m.orig, &m.new, &sel)?;
    if keeper.is_some() {
        // Start the clients start's read-only proof asks (before the block,
        // so that inside the outage the proof costs a round trip, not a
        // client start and a login).
        let mut others: Vec<&mut crate::cluster::Host> = ctx
            .hosts
            .iter_mut()
            .filter(|h| h.spec.name != m.new)
            .collect();
        let t = std::time::Duration::from_secs(5);
        cluster::parallel(&mut others, |h| ops::read_only::now(h, t, false));
    }
    let mut steps = plan(&ctx, &m, &admin, sel)?;

    if opts.dry_run {
        ctx.report.plan = engine::plan(&mut steps, &mut ctx)?;
        ctx.report.outcome = "dry-run: nothing changed".into();
        ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
        ctx.collect_stats();
        emit(&ctx.report, opts.json);
        return Ok(Code::Ok);
    }

    let mut journal = Journal::create(
        &state,
        Entry::Begin {
            id,
            kind: "online".into(),
            orig: m.orig.clone(),
            new: m.new.clone(),
            at: crate::logger::utc_now(),
            pid: std::process::id(),
        },
    )?;
    ctx.report.journal = Some(journal.path().display().to_string());
    // What kind of server each host runs, so start need not ask again
    // inside the write outage.
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
    let begun = keeper
        .as_ref()
        .map(|k| journal.note(KEEPER_NOTE, serde_json::to_value(k).unwrap_or_default()))
        .unwrap_or(Ok(()))
        .and_then(|_| journal.note_lazy(SERVERS_NOTE, servers.into()))
        .and_then(|_| {
            let follows = args.flag("orig_master_is_new_slave");
            journal.note_lazy(ORIG_FOLLOWS_NOTE, follows.into())
        })
        .and_then(|_| journal.phase("stop-begun"));
    if let Err(e) = begun {
        // Nothing changed yet: put the journal aside and refuse.
        let _ = journal.close(&state, "rolled-back");
        return Err(e.context("nothing was changed"));
    }

    let policy = Policy {
        on_failure: OnFailure::RollBack,
        journal: JournalUse::Required,
        undo_timeout,
    };
    let result = engine::run(&mut steps, &mut ctx, &mut journal, policy);
    ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.collect_stats();
    match result {
        Ok(()) => {
            // Writes are blocked: from here on a journal that cannot be
            // written only costs the report, never the switch (exit 0).
            ctx.report.outcome = "writes blocked on the old master".into();
            ctx.report.peak_rss_kb = crate::report::peak_rss_kb();
            let report = serde_json::to_value(&ctx.report).unwrap_or_default();
            if let Err(e) = journal
                .phase_lazy("stop-complete")
                .and_then(|_| journal.note("stop-report", report))
            {
                log::error!("{e:#}; stop is complete all the same");
            }
            guard.keep();
            emit(&ctx.report, opts.json);
            Ok(Code::Ok)
        }
        Err(e) => {
            let needs_recover = e.downcast_ref::<NeedsRecover>().is_some();
            ctx.report.outcome = if needs_recover {
                "failed; rollback incomplete".into()
            } else {
                "failed; rolled back".into()
            };
            emit(&ctx.report, opts.json);
            if !needs_recover {
                if let Err(c) = journal.close(&state, "rolled-back") {
                    log::error!("{c:#}");
                }
            }
            Err(e)
        }
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
    use crate::exit::{code_for, Code};
    use crate::grants::{Account, Selection, Snapshot};
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
            "create:0".into(),
            "CREATE USER for app@%\nCREATE USER `app`@`%`\n".into(),
        );
        db1.answers.insert(
            "after:0".into(),
            format!("Grants for app@%\n{}\n{GRANT}\n", snapshot().grants[0]),
        );
        db1.failing = failing.iter().map(|f| f.to_string()).collect();
        let p = path.clone();
        db1.on_script = Some(Box::new(move |sql: &str| {
            if sql.contains("REVOKE ALL PRIVILEGES") {
                let j = std::fs::read_to_string(&p).unwrap();
                assert!(
                    j.contains("\"kind\":\"grants\"")
                        && j.contains("GRANT SELECT, INSERT ON `appdb`"),
                    "grants must be in the journal before the revoke: {j}"
                );
            }
        }));
        let db2 = FakeExec::new("db2", &log);
        let hosts = vec![
            testing::host("db1", db1, false),
            testing::host("db2", db2, true),
        ];
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
                kind: "online".into(),
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
        // db1 is made writable again only once db2 reads read-only.
        assert!(
            undo[0].starts_with("db2: ")
                && undo[0].contains("SELECT @@GLOBAL.read_only")
                && !undo[0].contains("SET GLOBAL"),
            "{undo:#?}"
        );
        assert!(
            undo[1].starts_with("db1: ") && undo[1].contains("SET GLOBAL read_only = 0"),
            "{undo:#?}"
        );
        assert!(
            undo[2].starts_with("db1: ") && undo[2].contains(GRANT),
            "{undo:#?}"
        );
        assert!(undo[2].contains("SET SESSION sql_log_bin = 0"));
        assert!(
            undo[3].starts_with("db2: ") && undo[3].contains("SET GLOBAL read_only = 1"),
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
