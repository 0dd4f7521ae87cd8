//! The small engine that drives every change mha-helper makes: first every
//! step reads what it needs (`prepare`, nothing changed yet, so a refusal
//! there leaves the cluster untouched); then for each step in order, its
//! undo is journaled (fsynced) and the change applied. On a failure the
//! policy decides: roll back (run the recorded undos in reverse, each with
//! its own fresh timeout), or go on with the remaining steps and report
//! (phases that run after MHA has moved the master, and recover). A refusal
//! (`exit::Refused`: the step would have broken a safety rule) always stops
//! at once.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::exit::{is_refusal, NeedsRecover};
use crate::fault;
use crate::report::PlannedStep;
use crate::state::journal::{Entry, Journal};
use crate::steps::{apply_undo, Ctx, Step, Undo};

/// What to do when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Undo everything done so far, in reverse.
    RollBack,
    /// Go on with the other steps; report every failure at the end.
    Continue,
}

/// Whether a step may change a host when its undo could not be journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalUse {
    /// No: the change is not made (before MHA switches: nothing is lost by
    /// not switching).
    Required,
    /// Yes, with an error in the log (after MHA switched, not acting is
    /// worse: MHA goes on either way).
    BestEffort,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub on_failure: OnFailure,
    pub journal: JournalUse,
    pub undo_timeout: Duration,
}

fn is_unstopped_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::mysql::Error>()
            .is_some_and(|m| m.kind == crate::mysql::ErrorKind::Timeout { gone: false })
    })
}

/// Run `steps` under `policy`.
pub fn run(
    steps: &mut [Box<dyn Step>],
    ctx: &mut Ctx,
    journal: &mut Journal,
    policy: Policy,
) -> Result<()> {
    let mut undos = Vec::with_capacity(steps.len());
    for step in steps.iter_mut() {
        let undo = step.prepare(ctx).map_err(|e| {
            e.context(format!(
                "step {} on {} cannot run; nothing was changed",
                step.id(),
                step.host()
            ))
        })?;
        undos.push(undo);
    }
    let mut recorded: Vec<(String, Undo)> = Vec::new();
    let mut failures: Vec<anyhow::Error> = Vec::new();
    for (step, undo) in steps.iter_mut().zip(undos) {
        let (id, host) = (step.id().as_str(), step.host().to_string());
        fault::set_step(id);
        log::info!("{host}: {id}: {}", step.what());
        let started = Instant::now();
        let outcome = run_one(step.as_mut(), undo, ctx, journal, policy, &mut recorded);
        fault::set_step("");
        let ms = started.elapsed().as_millis() as u64;
        let e = match outcome {
            Ok(detail) => {
                if let Some(d) = &detail {
                    log::info!("{host}: {id}: done in {ms} ms: {d}");
                }
                ctx.report.step(id, &host, "done", ms, detail);
                continue;
            }
            Err(e) => e.context(format!("step {id} on {host} failed")),
        };
        log::error!("{e:#}");
        ctx.report
            .step(id, &host, "failed", ms, Some(crate::exit::message(&e)));
        if is_unstopped_timeout(&e) {
            return Err(e.context(NeedsRecover).context(format!(
                "NOT ROLLED BACK: the timed-out statement on {host} could not be proven stopped, \
                 and undoing now could race with it; run `mha-helper recover` once {host} answers"
            )));
        }
        if is_refusal(&e) || policy.on_failure == OnFailure::RollBack {
            let undo = rollback(recorded, ctx, journal, policy.undo_timeout);
            return Err(match undo {
                Ok(0) => e,
                Ok(n) => e.context(format!(
                    "rolled back: {n} change(s) undone; the cluster is as it was before"
                )),
                Err(u) => e.context(NeedsRecover).context(format!(
                    "ROLLBACK INCOMPLETE: {u:#}; run `mha-helper recover` once the hosts answer"
                )),
            });
        }
        failures.push(e);
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(anyhow!(
            "{}",
            failures
                .iter()
                .map(crate::exit::message)
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

fn run_one(
    step: &mut dyn Step,
    undo: Option<Undo>,
    ctx: &mut Ctx,
    journal: &mut Journal,
    policy: Policy,
    recorded: &mut Vec<(String, Undo)>,
) -> Result<Option<String>> {
    let id = step.id().as_str();
    let host = step.host().to_string();
    if let Some(undo) = undo {
        let written = journal.append(Entry::Intent {
            step: id.to_string(),
            host: host.clone(),
            undo: undo.clone(),
        });
        match (written, policy.journal) {
            (Ok(()), _) => {}
            (Err(e), JournalUse::Required) => {
                return Err(e.context(format!(
                    "the undo of {id} could not be journaled, so {host} was not changed"
                )))
            }
            (Err(e), JournalUse::BestEffort) => log::error!(
                "{host}: {id}: {e:#}; changing the host anyway (MHA has switched; recover will read \
                 the cluster itself)"
            ),
        }
        recorded.push((id.to_string(), undo));
    }
    fault::point(&format!("before:{id}"))?;
    let detail = step.apply(ctx, journal)?;
    fault::point(&format!("after:{id}"))?;
    if let Err(e) = journal.append_lazy(Entry::Done {
        step: id.to_string(),
        host,
    }) {
        log::warn!("{e:#}");
    }
    Ok(detail)
}

/// Run `undos` in reverse, each with a fresh timeout; journal each one that
/// worked. Goes on past failures (of undos and of journal writes) and
/// returns how many ran, or an error listing every failure.
pub fn rollback(
    undos: Vec<(String, Undo)>,
    ctx: &mut Ctx,
    journal: &mut Journal,
    timeout: Duration,
) -> Result<usize> {
    let mut failures = Vec::new();
    let mut unrecorded = Vec::new();
    let mut done = 0;
    for (step, undo) in undos.into_iter().rev() {
        let host = undo.host().to_string();
        log::warn!("{host}: undo {step}: {}", undo.describe());
        let started = Instant::now();
        let ms = || started.elapsed().as_millis() as u64;
        // Each undo with its own host's undo_timeout.
        let timeout = ctx
            .find(&host)
            .map_or(timeout, |h| h.spec.settings.undo_timeout);
        match apply_undo(&undo, ctx, timeout) {
            Ok(()) => {
                if let Err(e) = journal.undone(&step, &host) {
                    log::error!("{e:#}");
                    unrecorded.push(step.clone());
                }
                ctx.report
                    .step(&format!("undo {step}"), &host, "undone", ms(), None);
                done += 1;
            }
            Err(e) => {
                log::error!("{host}: undo {step} failed: {e:#}");
                ctx.report.step(
                    &format!("undo {step}"),
                    &host,
                    "failed",
                    ms(),
                    Some(format!("{e:#}")),
                );
                failures.push(format!("undo of {step} on {host}: {e:#}"));
            }
        }
    }
    if !unrecorded.is_empty() {
        ctx.report.warn(format!(
            "the journal could not record that {} was undone; a later recover repeats it (harmless)",
            unrecorded.join(", ")
        ));
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
