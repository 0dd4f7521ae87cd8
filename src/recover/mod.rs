//! `mha-helper recover`: finish or undo a switch that was interrupted (a
//! crash, a kill, a cut connection, MHA failing after our stop).
//!
//! Runbook: refuse while the switch is alive (the application's lock is
//! held by another mha-helper, MHA's masterha_master_switch or
//! masterha_manager runs for this application, or the process that began
//! the switch still runs) unless `--force`; read every host (role, source,
//! threads, read_only, binary log position) and MHA's state files; decide
//! from those facts (`decide`): undo every recorded change, complete the
//! switch, or refuse and report (exit 3) when the facts conflict or a host
//! does not answer. Every change goes through the engine, each undo or
//! completion step journaled like the switch's own.

pub mod decide;

use crate::state::journal::note;
use crate::step_id::StepId;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};

use crate::cluster;
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{Code, NeedsRecover, Refused};
use crate::online::{keeper_of, start, Masters};
use crate::report::{emit, Report};
use crate::setup::{ConfigPaths, Setup};
use crate::ssh::keeper;
use crate::state::journal::Journal;
use crate::state::lock::{self, AppLock, Busy};
use crate::state::StateDir;
use crate::steps::replication::{DetachNewMaster, RepointReplica, RestartReplication};
use crate::steps::{Ctx, RunUndo, Step};
use decide::{Decision, Facts, Kind};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub json: bool,
    /// Go on although MHA or the switch's process seems alive.
    pub force: bool,
    /// Close the journal without touching any host.
    pub abandon: bool,
}

pub fn run(paths: &ConfigPaths, opts: Options) -> Result<Code> {
    settle(paths, opts).map(|_| Code::Ok)
}

/// What recover did.
#[derive(Debug)]
pub struct Settled {
    /// None: no open journal (or it closed meanwhile, or was abandoned).
    pub decision: Option<Decision>,
    pub report: Report,
}

/// The runbook: open the switch's journal, take the lock, read every
/// host, decide, run the steps of the decision, close the journal.
pub fn settle(paths: &ConfigPaths, opts: Options) -> Result<Settled> {
    let started = Instant::now();
    crate::fault::set_phase("recover");
    let setup = paths.load()?;
    let state = setup.state()?;
    let mut report = Report::new("recover", "recover");
    let Some((mut journal, _lock)) = open_switch(&setup, &state, &mut report, opts)? else {
        emit(&report, opts.json);
        return Ok(Settled {
            decision: None,
            report,
        });
    };
    let (mut ctx, facts, decision) = read_and_decide(&setup, &journal, report, opts.json)?;
    let undos = journal.pending_undos().len();
    let result = apply(&setup, &mut journal, &mut ctx, &facts, &decision);
    ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.collect_stats();
    finish(&state, journal, ctx, (decision, undos), result, opts)
}

/// The open journal, under the lock, or None with the report saying why
/// there is nothing to do (no journal, it closed meanwhile, abandoned).
fn open_switch(
    setup: &Setup,
    state: &StateDir,
    report: &mut Report,
    opts: Options,
) -> Result<Option<(Journal, AppLock)>> {
    let Some(journal) = Journal::open(state)? else {
        if let Some(done) = keeper::end_if_orphaned(state)? {
            report.warn(done);
        }
        report.outcome = format!(
            "nothing to recover: no open journal at {}",
            state.journal().display()
        );
        return Ok(None);
    };
    let (orig, new) = journal.masters().ok_or_else(|| {
        anyhow!(
            "journal {} has no beginning record",
            journal.path().display()
        )
    })?;
    report.orig_master = Some(orig.to_string());
    report.new_master = Some(new.to_string());
    report.journal = Some(journal.path().display().to_string());
    let lock = take_lock(setup, state, &journal, opts.force)?;
    // The switch's session keeper is of no use any more.
    if let Some(k) = keeper_of(&journal) {
        keeper::stop(&k);
    }
    // Re-read under the lock: the switch may have ended meanwhile.
    let Some(journal) = Journal::open(state)? else {
        report.outcome = "nothing to recover: the switch ended meanwhile".into();
        return Ok(None);
    };
    if opts.abandon {
        let closed = journal.close(state, "abandoned")?;
        report.outcome = format!(
            "journal closed without touching any host; it is kept at {} (its saved grants are there)",
            closed.display()
        );
        report.journal = Some(closed.display().to_string());
        return Ok(None);
    }
    Ok(Some((journal, lock)))
}

/// Connect to every host, read what it is now (into the report too) and
/// decide.
fn read_and_decide(
    setup: &Setup,
    journal: &Journal,
    report: Report,
    json: bool,
) -> Result<(Ctx, Facts, Decision)> {
    let (orig, new) = journal.masters().unwrap_or_default();
    let (orig, new) = (orig.to_string(), new.to_string());
    let (hosts, unreachable) = cluster::connect_split(setup.specs(&[])?);
    let mut ctx = Ctx::new(hosts, report);
    ctx.unreachable = unreachable;
    let resolve = crate::topology::resolver(setup);
    let mha = (
        mha_state_file(setup, journal, "complete"),
        mha_state_file(setup, journal, "error"),
    );
    let facts = gather(journal, &mut ctx, &orig, &new, &resolve, mha).with_inferred_new();
    if !facts.new.is_empty() {
        ctx.report.new_master = Some(facts.new.clone());
    }
    ctx.report.cluster = facts.hosts.iter().map(|h| h.describe()).collect();
    let (decision, why) = decide::decide(&facts);
    log::info!("recover: {why}");
    ctx.report.warnings.push(format!("decision: {why}"));
    if decision == Decision::Refuse {
        ctx.report.outcome = format!("refused, nothing changed: {why}");
        emit(&ctx.report, json);
        return Err(anyhow!("{why}").context(NeedsRecover));
    }
    Ok((ctx, facts, decision))
}

/// Run the steps of `decision`, each undo or completion journaled.
fn apply(
    setup: &Setup,
    journal: &mut Journal,
    ctx: &mut Ctx,
    facts: &Facts,
    decision: &Decision,
) -> Result<()> {
    let (orig, new) = (facts.orig.as_str(), facts.new.as_str());
    let undo_timeout = setup
        .specs(&[])?
        .first()
        .map(|s| s.settings.undo_timeout)
        .unwrap_or(Duration::from_secs(30));
    let mut steps: Vec<Box<dyn Step>> = match decision {
        Decision::Refuse | Decision::Close => Vec::new(),
        Decision::Undo { restart } => {
            let mut v: Vec<Box<dyn Step>> = journal
                .pending_undos()
                .into_iter()
                .rev()
                .map(|(s, u)| Box::new(RunUndo::new(&s, u, undo_timeout)) as Box<dyn Step>)
                .collect();
            if let Some(h) = restart {
                v.push(Box::new(RestartReplication::new(h)));
            }
            v
        }
        Decision::Complete { repoint } => {
            let mut v = completion(ctx, journal, facts.kind, orig, new);
            v.extend(repoints(setup, ctx, journal, repoint, orig, new)?);
            v
        }
    };
    let policy = Policy {
        on_failure: OnFailure::Continue,
        journal: JournalUse::Required,
        undo_timeout,
    };
    engine::run(&mut steps, ctx, journal, policy)
}

/// Close the journal with what was done, or keep it when something failed.
fn finish(
    state: &StateDir,
    journal: Journal,
    mut ctx: Ctx,
    (decision, undos): (Decision, usize),
    result: Result<()>,
    opts: Options,
) -> Result<Settled> {
    if let Err(e) = result {
        ctx.report.outcome = "incomplete; journal kept, run recover again".into();
        emit(&ctx.report, opts.json);
        return Err(e.context(NeedsRecover));
    }
    let (orig, new) = (
        ctx.report.orig_master.clone().unwrap_or_default(),
        ctx.report.new_master.clone().unwrap_or_default(),
    );
    let (outcome, closing) = match &decision {
        Decision::Undo { .. } => (
            format!("rolled back: {undos} change(s) undone; {orig} is the master as before"),
            "rolled-back",
        ),
        Decision::Complete { repoint } if !repoint.is_empty() => (
            format!(
                "completed: {new} writable, grants restored, {} repointed to it",
                repoint.join(", ")
            ),
            "completed",
        ),
        Decision::Complete { .. } => (
            format!("completed: {new} writable, grants restored"),
            "completed",
        ),
        _ => ("journal closed".to_string(), "closed"),
    };
    ctx.report.outcome = outcome;
    ctx.report.journal = Some(journal.close(state, closing)?.display().to_string());
    emit(&ctx.report, opts.json);
    Ok(Settled {
        decision: Some(decision),
        report: ctx.report,
    })
}

/// Take the lock, or refuse while the switch is alive. An orphaned session
/// keeper (MHA gone) is told to end, and its lock waited for.
fn take_lock(setup: &Setup, state: &StateDir, journal: &Journal, force: bool) -> Result<AppLock> {
    let alive = |what: String| -> Result<()> {
        if force {
            log::warn!("{what}; going on anyway (--force)");
            Ok(())
        } else {
            Err(anyhow!(
                "{what}; the switch may still be running, so recover changes nothing now: wait for \
                 it to end (or pass --force if you know it is dead)"
            )
            .context(Refused))
        }
    };
    let mha = lock::mha_processes(setup.app_path());
    if let Some((pid, prog)) = mha.first() {
        alive(format!(
            "{prog} (pid {pid}) is running for {}",
            setup.app_path().display()
        ))?;
    }
    if let Some((pid, at)) = journal.begun_by() {
        if pid != std::process::id()
            && lock::alive(pid)
            && lock::cmdline(pid).is_some_and(|c| c.contains("mha-helper"))
            && !lock::is_self_or_ancestor(pid)
        {
            alive(format!(
                "the mha-helper that began this switch (pid {pid}, at {at}) still runs"
            ))?;
        }
    }
    match keeper::acquire(state, "recover") {
        Ok(l) => Ok(l),
        Err(e) => {
            let busy = e.downcast::<Busy>()?;
            let keeper = keeper_of(journal);
            match (&busy.owner, keeper) {
                (Some(o), Some(k)) if o.command == "keeper" && o.pid == k.pid => {
                    log::info!(
                        "the session keeper of this switch (pid {}) holds the lock with MHA gone: ending it",
                        k.pid
                    );
                    keeper::stop(&k);
                    AppLock::acquire_within(state, "recover", Duration::from_secs(10))
                        .context("the session keeper did not let go of the lock")
                }
                _ => Err(anyhow::Error::new(busy).context(Refused)),
            }
        }
    }
}

/// MHA's state file `<workdir>/<app>.failover.<what>` exists and is newer
/// than the journal.
fn mha_state_file(setup: &Setup, journal: &Journal, what: &str) -> bool {
    let Some(workdir) = setup.mha.servers.first().map(|s| s.manager_workdir.clone()) else {
        return false;
    };
    let path = std::path::Path::new(&workdir).join(format!("{}.failover.{what}", setup.mha.app));
    let begun = std::fs::metadata(journal.path())
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= begun)
}

/// Read every host and the journal into the facts `decide` needs.
/// `resolve` turns a replication source (host or address) into an MHA
/// hostname; `mha` is MHA's (failover.complete, failover.error).
fn gather(
    journal: &Journal,
    ctx: &mut Ctx,
    orig: &str,
    new: &str,
    resolve: &(dyn Fn(&str) -> String + Sync),
    mha: (bool, bool),
) -> Facts {
    let hosts = crate::topology::read(&mut ctx.hosts, &ctx.unreachable, resolve);
    let kind = journal.kind().unwrap_or(Kind::Online);
    Facts {
        kind,
        orig: orig.to_string(),
        new: new.to_string(),
        hosts,
        new_binlog_at_writable: note::binlog_opened(new)
            .iter()
            .find_map(|k| journal.note_value(k))
            .and_then(|v| v.as_str().map(String::from)),
        new_made_writable: journal.undo_of(StepId::NewMasterWritable).is_some(),
        orig_follows_new: journal
            .note_value(note::ORIG_FOLLOWS_NEW)
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        mha_complete: mha.0,
        mha_error: mha.1,
    }
}

/// The steps that finish a switch MHA made: the old master read-only
/// (online: it must be proven so anyway), the new master writable after the
/// proof, the VIP, the grants back.
fn completion(
    ctx: &Ctx,
    journal: &Journal,
    kind: Kind,
    orig: &str,
    new: &str,
) -> Vec<Box<dyn Step>> {
    let m = Masters {
        orig: orig.to_string(),
        new: new.to_string(),
    };
    match kind {
        Kind::Online => {
            let mut steps = match ctx.find(orig) {
                // A writable old master is fenced first: it must be proven
                // read-only anyway before the new one opens.
                Some(o) if o.info.as_ref().is_some_and(|i| !i.read_only) => crate::plans::fence(
                    orig,
                    &o.spec.settings,
                    crate::plans::Fence {
                        read_only: Some(StepId::FenceOldMaster),
                        vip: StepId::VipLeaveOldMaster,
                        kill_as: None,
                    },
                ),
                _ => Vec::new(),
            };
            let owed = start::Owed::from_journal(Some(journal), &m);
            steps.extend(start::plan(ctx, &m, &owed));
            steps
        }
        _ => {
            let settings = ctx
                .find(new)
                .map(|h| h.spec.settings.clone())
                .unwrap_or_default();
            crate::plans::open_new_master(new, &settings, &[], (true, None))
        }
    }
}

/// The steps that end the new master's own replication when it still has
/// one (MHA's last step), then point `hosts` at it (`ops::repoint` proves
/// each first).
fn repoints(
    setup: &Setup,
    ctx: &Ctx,
    journal: &Journal,
    hosts: &[String],
    orig: &str,
    new: &str,
) -> Result<Vec<Box<dyn Step>>> {
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    // The new master stops following the old one first, as MHA does
    // before it repoints anyone: never a moment of circular replication.
    if ctx
        .find(new)
        .and_then(|h| h.info.as_ref())
        .is_some_and(|i| i.replica.is_some())
    {
        steps.push(Box::new(DetachNewMaster::new(new)));
    }
    if !hosts.is_empty() {
        let server = setup
            .mha
            .server(new)
            .ok_or_else(|| anyhow!("{new}: no server block"))?;
        let (Some(user), Some(password)) = (&server.repl_user, &server.repl_password) else {
            return Err(anyhow!(
                "{} must be pointed at {new}, but the MHA configuration has no repl_user and \
                 repl_password to do it with: set them in {} and run recover again",
                hosts.join(", "),
                setup.app_path().display()
            )
            .context(NeedsRecover));
        };
        let src = crate::ops::repoint::NewSource {
            name: new.to_string(),
            ip: server.ip.clone(),
            port: server.port,
            user: user.clone(),
            password: password.clone(),
        };
        // Where it was opened; else where it stood, read-only, just before
        // (the process died between the two): the repoint's proof holds
        // either way, as it compares the executed transactions themselves.
        let opened_at = note::binlog_opened(new)
            .iter()
            .find_map(|k| journal.first_note_value(k))
            .and_then(|v| v.as_str())
            .and_then(crate::ops::repoint::parse_position);
        for h in hosts {
            steps.push(Box::new(RepointReplica::new(
                crate::ops::repoint::Repoint {
                    host: h.clone(),
                    src: src.clone(),
                    opened_at: opened_at.clone(),
                    orig: orig.to_string(),
                },
            )));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Host;
    use crate::state::journal::Entry;
    use crate::testing::{self, FakeExec, Log};

    const SERVER: &str =
        "version\tversion_comment\tread_only\tserver_id\tlog_bin\tconnection_id\taccount\n";

    /// A fake MariaDB host: read_only, and the host it replicates from.
    fn fake(name: &str, ro: bool, source: Option<&str>, sql_running: bool, log: &Log) -> Host {
        let mut f = FakeExec::new(name, log);
        f.answers.insert(
            "server".into(),
            format!(
                "{SERVER}10.11.19-MariaDB-log\tDebian\t{}\t1\t1\t9\tmha@%\n",
                u8::from(ro)
            ),
        );
        if let Some(s) = source {
            f.answers.insert(
                "replica".into(),
                format!(
                    "Master_Host\tMaster_Port\tSlave_IO_Running\tSlave_SQL_Running\tSeconds_Behind_Master\tLast_IO_Error\tLast_SQL_Error\tMaster_Log_File\tRead_Master_Log_Pos\n\
                     {s}\t3306\tYes\t{}\t0\t\t\tmysql-bin.000001\t100\n",
                    if sql_running { "Yes" } else { "No" }
                ),
            );
        }
        f.answers.insert(
            "binlog".into(),
            "File\tPosition\nmysql-bin.000001\t100\n".into(),
        );
        testing::host(name, f, ro)
    }

    fn journal(name: &str) -> Journal {
        let d = crate::state::tests::temp_dir(&format!("recover-{name}"));
        let s = StateDir::open(&d, "app1").unwrap();
        Journal::create(
            &s,
            Entry::Begin {
                id: "t".into(),
                kind: crate::state::journal::Kind::Online,
                orig: "db1".into(),
                new: "db2".into(),
                at: "now".into(),
                pid: 1,
            },
        )
        .unwrap()
    }

    fn decision_from_fakes(hosts: Vec<Host>, name: &str) -> (Decision, String) {
        let mut ctx = Ctx::new(hosts, Report::new("recover", "recover"));
        let j = journal(name);
        let ip = |h: &str| match h {
            "198.51.100.11" => "db1".to_string(),
            "198.51.100.12" => "db2".to_string(),
            other => other.to_string(),
        };
        let facts = gather(&j, &mut ctx, "db1", "db2", &ip, (false, false));
        decide::decide(&facts)
    }

    #[test]
    fn fake_hosts_after_stop_read_as_not_switched_with_replication_to_restart() {
        let log = Log::default();
        let hosts = vec![
            fake("db1", true, None, true, &log),
            fake("db2", true, Some("198.51.100.11"), false, &log),
            fake("db3", true, Some("198.51.100.11"), true, &log),
        ];
        let (d, why) = decision_from_fakes(hosts, "after-stop");
        assert_eq!(
            d,
            Decision::Undo {
                restart: Some("db2".into())
            },
            "{why}"
        );
    }

    #[test]
    fn fake_hosts_after_mha_switched_read_as_switched() {
        let log = Log::default();
        let hosts = vec![
            fake("db1", true, Some("198.51.100.12"), true, &log),
            fake("db2", false, None, true, &log),
            fake("db3", true, Some("db2"), true, &log),
        ];
        let (d, why) = decision_from_fakes(hosts, "switched");
        assert_eq!(d, Decision::Complete { repoint: vec![] }, "{why}");
    }

    #[test]
    fn a_fake_host_whose_mysqld_fails_reads_as_down_and_is_refused() {
        let log = Log::default();
        let mut db3 = FakeExec::new("db3", &log);
        db3.failing = vec!["mha-helper:server".into()];
        let hosts = vec![
            fake("db1", true, None, true, &log),
            fake("db2", true, Some("db1"), true, &log),
            testing::host("db3", db3, true),
        ];
        let (d, why) = decision_from_fakes(hosts, "down");
        assert_eq!(d, Decision::Refuse, "{why}");
        assert!(why.contains("db3"), "{why}");
    }
}
