//! The small engine that drives a switch: for each step, in order, read
//! (`prepare`), journal the undo, apply; on the first failure, run the
//! recorded undos in reverse, each with its own fresh timeout, and return
//! an error that names the failed step, its host, and how the rollback went.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::exit::NeedsRecover;
use crate::fault;
use crate::journal::{Entry, Journal};
use crate::report::PlannedStep;
use crate::steps::{apply_undo, Ctx, Step, Undo};

/// Run `steps`; roll back on failure.
pub fn run(
    steps: &mut [Box<dyn Step>],
    ctx: &mut Ctx,
    journal: &mut Journal,
    undo_timeout: Duration,
) -> Result<()> {
    let mut recorded: Vec<(String, Undo)> = Vec::new();
    for step in steps.iter_mut() {
        let (id, host) = (step.id(), step.host().to_string());
        log::info!("{host}: {id}: {}", step.what());
        let started = Instant::now();
        let outcome = run_one(step.as_mut(), ctx, journal, &mut recorded);
        let ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(detail) => {
                if let Some(d) = &detail {
                    log::info!("{host}: {id}: done in {ms} ms: {d}");
                }
                ctx.report.step(id, &host, "done", ms, detail);
            }
            Err(e) => {
                let e = e.context(format!("step {id} on {host} failed"));
                log::error!("{e:#}");
                ctx.report
                    .step(id, &host, "failed", ms, Some(format!("{e:#}")));
                let undo = rollback(recorded, ctx, journal, undo_timeout);
                return Err(match undo {
                    Ok(n) => e.context(format!(
                        "rolled back: {n} change(s) undone; the cluster is as it was before the switch"
                    )),
                    Err(u) => e.context(NeedsRecover).context(format!(
                        "ROLLBACK INCOMPLETE: {u:#}; run `mha-helper recover` once the hosts answer"
                    )),
                });
            }
        }
    }
    Ok(())
}

fn run_one(
    step: &mut dyn Step,
    ctx: &mut Ctx,
    journal: &mut Journal,
    recorded: &mut Vec<(String, Undo)>,
) -> Result<Option<String>> {
    let id = step.id();
    let host = step.host().to_string();
    if let Some(undo) = step.prepare(ctx)? {
        journal.append(Entry::Intent {
            step: id.to_string(),
            host: host.clone(),
            undo: undo.clone(),
        })?;
        recorded.push((id.to_string(), undo));
    }
    fault::point(&format!("before:{id}"))?;
    let detail = step.apply(ctx, journal)?;
    fault::point(&format!("after:{id}"))?;
    journal.append_lazy(Entry::Done {
        step: id.to_string(),
        host,
    })?;
    Ok(detail)
}

/// Run `undos` in reverse, each with a fresh timeout; journal each one that
/// worked. Returns how many ran, or an error listing every one that failed
/// (the others still ran).
pub fn rollback(
    undos: Vec<(String, Undo)>,
    ctx: &mut Ctx,
    journal: &mut Journal,
    timeout: Duration,
) -> Result<usize> {
    let mut failures = Vec::new();
    let mut done = 0;
    for (step, undo) in undos.into_iter().rev() {
        let host = undo.host().to_string();
        log::warn!("{host}: undo {step}: {}", undo.describe());
        let started = Instant::now();
        match apply_undo(&undo, ctx, timeout) {
            Ok(()) => {
                journal.append_lazy(Entry::Undone {
                    step: step.clone(),
                    host: host.clone(),
                })?;
                ctx.report.step(
                    &format!("undo {step}"),
                    &host,
                    "undone",
                    started.elapsed().as_millis() as u64,
                    None,
                );
                done += 1;
            }
            Err(e) => {
                log::error!("{host}: undo {step} failed: {e:#}");
                ctx.report.step(
                    &format!("undo {step}"),
                    &host,
                    "failed",
                    started.elapsed().as_millis() as u64,
                    Some(format!("{e:#}")),
                );
                failures.push(format!("undo of {step} on {host}: {e:#}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// The dry run: prepare every step (reads only) and list what apply would
/// run. Nothing is journaled or changed.
pub fn plan(steps: &mut [Box<dyn Step>], ctx: &mut Ctx) -> Result<Vec<PlannedStep>> {
    let mut out = Vec::new();
    for step in steps.iter_mut() {
        step.prepare(ctx)?;
        out.push(PlannedStep {
            step: step.id().to_string(),
            host: step.host().to_string(),
            what: step.what(),
            reversible: step.reversible(),
            statements: step.statements(ctx),
        });
    }
    Ok(out)
}
