//! `mha-helper recover`: finish or undo a switch that was interrupted (a
//! crash, a kill, a cut connection, MHA failing after our stop), from the
//! journal alone.
//!
//! Which way: if `start` had begun, or the new master no longer replicates
//! from the old one, MHA has switched — complete it (new master writable,
//! grants back on the old master). Otherwise the switch did not happen —
//! undo every recorded change in reverse, and restart replication on the
//! new master if MHA had stopped it.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::cluster::{self, Host};
use crate::engine;
use crate::exit::{Code, NeedsRecover};
use crate::journal::Journal;
use crate::mysql::Script;
use crate::online::start::{complete, Pending};
use crate::online::{emit, Masters};
use crate::report::Report;
use crate::setup::ConfigPaths;
use crate::steps::Ctx;

pub fn run(paths: &ConfigPaths, json: bool) -> Result<Code> {
    let started = Instant::now();
    let setup = paths.load()?;
    let path = setup.journal_path();
    let mut report = Report::new("recover", "recover");
    let Some(mut journal) = Journal::open(&path)? else {
        report.outcome = format!("nothing to recover: no open journal at {}", path.display());
        emit(&report, json);
        return Ok(Code::Ok);
    };
    let (orig, new) = journal
        .masters()
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .ok_or_else(|| anyhow!("journal {} has no beginning record", path.display()))?;
    report.orig_master = Some(orig.clone());
    report.new_master = Some(new.clone());
    report.journal = Some(path.display().to_string());
    let m = Masters {
        orig: orig.clone(),
        new: new.clone(),
    };
    // A keeper left by an interrupted stop is of no use any more.
    crate::keeper::stop(&crate::keeper::socket_path(&path));
    let specs = cluster::specs(&setup.mha, &setup.helper, &[&orig, &new])?;
    let undo_timeout = specs[0].settings.undo_timeout;
    let hosts: Vec<Host> = cluster::connect(specs)
        .into_iter()
        .collect::<Result<_>>()
        .context(NeedsRecover)
        .context("recover needs both masters; retry when they answer")?;
    let mut ctx = Ctx::new(hosts, report);
    let new_info = ctx.host(&new)?.refresh_info()?.clone();
    ctx.host(&orig)?.refresh_info()?;
    let orig_ip = ctx.host(&orig)?.spec.server.ip.clone();
    let still_replica = new_info
        .replica
        .as_ref()
        .is_some_and(|r| r.master_host == orig || r.master_host == orig_ip);

    if journal.reached("start-begun") || !still_replica {
        log::info!(
            "{new} {} : completing the switch {orig} -> {new}",
            if still_replica {
                "still replicates from the old master, but start had begun"
            } else {
                "no longer replicates from the old master"
            }
        );
        if !journal.reached("start-begun") {
            journal.phase("start-begun")?;
        }
        let pending = Pending::from_journal(&journal);
        let errors = complete(&mut ctx.hosts, &m, &pending, &mut ctx.report);
        // The outage of an interrupted switch is not ours to measure here.
        ctx.report.write_block_ms = None;
        ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
        if let Some(e) = errors.into_iter().next() {
            ctx.report.outcome = "completion failed; journal kept".into();
            emit(&ctx.report, json);
            return Err(e.context(NeedsRecover));
        }
        ctx.report.outcome = "completed: new master writable, grants restored".into();
        ctx.report.journal = Some(journal.close("completed")?.display().to_string());
        emit(&ctx.report, json);
        return Ok(Code::Ok);
    }

    log::info!("{new} still replicates from {orig}: the switch did not happen; rolling back");
    let undos = journal.pending_undos();
    let n = engine::rollback(undos, &mut ctx, &mut journal, undo_timeout).context(NeedsRecover)?;
    if let Some(rep) = &new_info.replica {
        if !rep.healthy() {
            let h = ctx.host(&new)?;
            let mut s = Script::new(h.spec.settings.step_timeout);
            s.exec("restart replication", "START SLAVE");
            h.run(&s).context(NeedsRecover)?;
            ctx.report
                .step("restart-replication", &new, "done", 0, None);
        }
    }
    ctx.report.elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.report.outcome =
        format!("rolled back: {n} change(s) undone; {orig} is the master as before");
    ctx.report.journal = Some(journal.close("rolled-back")?.display().to_string());
    emit(&ctx.report, json);
    Ok(Code::Ok)
}
