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

use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};

use crate::cluster::{self, Host};
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::{Code, NeedsRecover, Refused};
use crate::online::{emit, keeper_of, start, Masters};
use crate::report::Report;
use crate::setup::{ConfigPaths, Setup};
use crate::ssh::keeper;
use crate::state::journal::Journal;
use crate::state::lock::{self, AppLock, Busy};
use crate::state::StateDir;
use crate::steps::read_only::{MakeWritable, SetReadOnly};
use crate::steps::replication::RestartReplication;
use crate::steps::vip::MoveVip;
use crate::steps::{Ctx, RunUndo, Step};
use decide::{Decision, Facts, HostFacts, Kind};

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
    let started = Instant::now();
    crate::fault::set_phase("recover");
    let setup = paths.load()?;
    let state = setup.state()?;
    let mut report = Report::new("recover", "recover");
    let Some(journal) = Journal::open(&state)? else {
        if let Some(done) = keeper::end_if_orphaned(&state)? {
            report.warn(done);
        }
        report.outcome = format!(
            "nothing to recover: no open journal at {}",
            state.journal().display()
        );
        emit(&report, opts.json);
        return Ok(Code::Ok);
    };
    let (orig, new) = journal
        .masters()
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .ok_or_else(|| {
            anyhow!(
                "journal {} has no beginning record",
                journal.path().display()
            )
        })?;
    report.orig_master = Some(orig.clone());
    report.new_master = Some(new.clone());
    report.journal = Some(journal.path().display().to_string());
    let _lock = take_lock(&setup, &state, &journal, opts.force)?;
    // The switch's session keeper is of no use any more.
    if let Some(k) = keeper_of(&journal) {
        keeper::stop(&k);
    }
    // Re-read under the lock: the switch may have ended meanwhile.
    let Some(mut journal) = Journal::open(&state)? else {
        report.outcome = "nothing to recover: the switch ended meanwhile".into();
        emit(&report, opts.json);
        return Ok(Code::Ok);
    };
    if opts.abandon {
        let closed = journal.close(&state, "abandoned")?;
        report.outcome = format!(
            "journal closed without touching any host; it is kept at {} (its saved grants are there)",
            closed.display()
        );
        report.journal = Some(closed.display().to_string());
        emit(&report, opts.json);
        return Ok(Code::Ok);
    }
    let specs = setup.specs(&[])?;
    let undo_timeout = specs
        .first()
        .map(|s| s.settings.undo_timeout)
        .unwrap_or(Duration::from_secs(30));
    let (hosts, unreachable) = cluster::connect_split(specs);
    let mut ctx = Ctx::new(hosts, report);
    ctx.unreachable = unreachable;
    let resolve = |h: &str| {
        setup
            .mha
            .server(h)
            .map(|s| s.hostname.clone())
            .unwrap_or_else(|| h.to_string())
    };
    let mha = (
        mha_state_file(&setup, &journal, "complete"),
        mha_state_file(&setup, &journal, "error"),
    );
    let facts = gather(&journal, &mut ctx, &orig, &new, &resolve, mha);
    let (decision, why) = decide::decide(&facts);
    log::info!("recover: {why}");
    ctx.report.warnings.push(format!("decision: {why}"));
    let mut steps: Vec<Box<dyn Step>> = match &decision {
        Decision::Refuse => {
            ctx.report.outcome = format!("refused, nothing changed: {why}");
            emit(&ctx.report, opts.json);
            return Err(anyhow!("{why}").context(NeedsRecover));
        }
        Decision::Close => Vec::new(),
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
        Decision::Complete => completion(&ctx, &journal, facts.kind, &orig, &new),
    };
    let undone = journal.pending_undos().len();
    let policy = Policy {
        on_failure: OnFailure::Continue,
        journal: JournalUse::Required,
        undo_timeout,
    };
    let result = engine::run(&mut steps, &mut ctx, &mut journal, policy);
    ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.collect_stats();
    if let Err(e) = result {
        ctx.report.outcome = "incomplete; journal kept, run recover again".into();
        emit(&ctx.report, opts.json);
        return Err(e.context(NeedsRecover));
    }
    let (outcome, closing) = match decision {
        Decision::Undo { .. } => (
            format!(
                "rolled back: {} change(s) undone; {orig} is the master as before",
                undone
            ),
            "rolled-back",
        ),
        Decision::Complete => (
            format!("completed: {new} writable, grants restored"),
            "completed",
        ),
        _ => ("journal closed".to_string(), "closed"),
    };
    ctx.report.outcome = outcome;
    ctx.report.journal = Some(journal.close(&state, closing)?.display().to_string());
    emit(&ctx.report, opts.json);
    Ok(Code::Ok)
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
    resolve: &dyn Fn(&str) -> String,
    mha: (bool, bool),
) -> Facts {
    let mut refs: Vec<&mut Host> = ctx.hosts.iter_mut().collect();
    let read = cluster::parallel(&mut refs, |h| {
        let info = h.refresh_info()?.clone();
        let mut s = crate::mysql::Script::new(h.spec.settings.step_timeout);
        crate::ops::read_only::add_binlog_position(&mut s, &info, "binlog");
        let r = h.run(&s)?;
        Ok((info, crate::ops::read_only::binlog_position(&r, "binlog")))
    });
    let mut hosts: Vec<HostFacts> = Vec::new();
    for (h, r) in ctx.hosts.iter().zip(read) {
        hosts.push(match r {
            Ok((info, binlog)) => HostFacts {
                name: h.spec.name.clone(),
                down: None,
                read_only: info.read_only,
                source: info.replica.as_ref().map(|rep| resolve(&rep.master_host)),
                replicating: info.replica.as_ref().is_some_and(|r| r.healthy()),
                binlog,
            },
            Err(e) => HostFacts {
                name: h.spec.name.clone(),
                down: Some(crate::exit::message(&e)),
                read_only: false,
                source: None,
                replicating: false,
                binlog: None,
            },
        });
    }
    for (n, why) in &ctx.unreachable {
        hosts.push(HostFacts {
            name: n.clone(),
            down: Some(why.clone()),
            read_only: false,
            source: None,
            replicating: false,
            binlog: None,
        });
    }
    let kind = match journal.kind() {
        Some("failover") => Kind::Failover,
        Some("fence") => Kind::Fence,
        _ => Kind::Online,
    };
    Facts {
        kind,
        orig: orig.to_string(),
        new: new.to_string(),
        hosts,
        new_binlog_at_writable: journal
            .note_value(&MakeWritable::note_key(new))
            .and_then(|v| v.as_str().map(String::from)),
        new_made_writable: journal.undo_of("new-master-writable").is_some(),
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
            let mut steps: Vec<Box<dyn Step>> = Vec::new();
            if let Some(o) = ctx.find(orig) {
                if o.info.as_ref().is_some_and(|i| !i.read_only) {
                    steps.push(Box::new(SetReadOnly::new(
                        "fence-old-master",
                        orig,
                        o.spec.settings.super_read_only,
                    )));
                }
            }
            let owed = start::Owed::from_journal(Some(journal), &m);
            steps.extend(start::plan(ctx, &m, &owed));
            steps
        }
        _ => {
            let mut steps: Vec<Box<dyn Step>> =
                vec![Box::new(MakeWritable::new("new-master-writable", new, &[]))];
            if ctx
                .find(new)
                .is_some_and(|h| h.spec.settings.writer_vip.is_some())
            {
                steps.push(Box::new(MoveVip::new("vip-arrive-new-master", new, true)));
            }
            steps
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                kind: "online".into(),
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
        assert_eq!(d, Decision::Complete, "{why}");
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
