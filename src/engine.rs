//! The small engine that drives every change mha-helper makes: first every
//! step reads what it needs (`prepare`, nothing changed yet, so a refusal
//! there leaves the cluster untouched); then for each step in order, its
//! undo is journaled (fsynced), what it reads at the last moment (`stage`)
//! too, and the change applied. On a failure the
//! policy decides: roll back (run the recorded undos in reverse, each with
//! its own fresh timeout), or go on with the remaining steps and report
//! (phases that run after MHA has moved the master, and recover). A refusal
//! (`exit::Refused`: the step would have broken a safety rule) always stops
//! at once.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::exit::{is_refusal, NeedsRecover};
use crate::fault;
use crate::listing::Sent;
use crate::report::PlannedStep;
use crate::state::journal::{Entry, Journal};
use crate::steps::{apply_undo, Applied, Ctx, Step, Undo};

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
        recording(ctx, true);
        let outcome = run_one(step.as_mut(), undo, ctx, journal, policy, &mut recorded);
        let sent = recording(ctx, false);
        fault::set_step("");
        let ms = started.elapsed().as_millis() as u64;
        let e = match outcome {
            Ok(detail) => {
                if let Some(d) = &detail {
                    log::info!("{host}: {id}: done in {ms} ms: {d}");
                }
                ctx.report.step(id, &host, "done", ms, detail);
                attach(ctx, sent);
                continue;
            }
            Err(e) => e.context(format!("step {id} on {host} failed")),
        };
        log::error!("{e:#}");
        ctx.report
            .step(id, &host, "failed", ms, Some(crate::exit::message(&e)));
        attach(ctx, sent);
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

/// Start (`on`) or end recording what the hosts are sent, when the run
/// shows it; returns what was recorded since it started.
fn recording(ctx: &mut Ctx, on: bool) -> Vec<Sent> {
    let show = ctx.show_sent;
    let mut all = Vec::new();
    for h in &mut ctx.hosts {
        all.extend(h.sent.take().unwrap_or_default());
        if on && show {
            h.sent = Some(Vec::new());
        }
    }
    all
}

/// What the step just reported sent.
fn attach(ctx: &mut Ctx, sent: Vec<Sent>) {
    if let Some(last) = ctx.report.steps.last_mut() {
        last.sent = sent;
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
    for (key, value) in step.stage(ctx)? {
        match (journal.note(&key, value), policy.journal) {
            (Ok(()), _) => {}
            (Err(e), JournalUse::Required) => {
                return Err(e.context(format!(
                    "{key} could not be journaled, so {host} was not changed"
                )))
            }
            (Err(e), JournalUse::BestEffort) => {
                log::error!("{host}: {id}: cannot record {key}: {e:#}; changing the host anyway")
            }
        }
    }
    fault::point(&format!("before:{id}"))?;
    let applied = step.apply(ctx, journal)?;
    fault::point(&format!("applied:{id}"))?;
    record(id, &host, &applied, journal, recorded)?;
    fault::point(&format!("after:{id}"))?;
    if let Err(e) = journal.append_lazy(Entry::Done {
        step: id.to_string(),
        host,
    }) {
        log::warn!("{e:#}");
    }
    Ok(applied.detail)
}

/// Journal what step `id` on `host` produced: a revised undo at once (and
/// it is the one a rollback now runs), the notes later phases read
/// (fsynced), those only the report reads (not waited for), the step it
/// reversed. Only a revised undo that cannot be written fails the step:
/// without it a rollback would give back the wrong thing.
fn record(
    id: &str,
    host: &str,
    applied: &Applied,
    journal: &mut Journal,
    recorded: &mut [(String, Undo)],
) -> Result<()> {
    if let Some(undo) = &applied.revised_undo {
        if let Some(r) = recorded.iter_mut().rev().find(|(s, _)| s == id) {
            r.1 = undo.clone();
        }
        journal.append(Entry::Intent {
            step: id.to_string(),
            host: host.to_string(),
            undo: undo.clone(),
        })?;
    }
    for (key, value) in &applied.notes {
        if let Err(e) = journal.note(key, value.clone()) {
            log::error!("{host}: {id}: cannot record {key}: {e:#}");
        }
    }
    for (key, value) in &applied.lazy_notes {
        if let Err(e) = journal.note_lazy(key, value.clone()) {
            log::warn!("{e:#}");
        }
    }
    if let Some((step, on)) = &applied.undid {
        if let Err(e) = journal.undone(step, on) {
            log::warn!("{e:#}");
        }
    }
    Ok(())
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
            scripts: step.scripts(ctx),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use crate::state::journal::Kind;
    use crate::step_id::StepId;
    use crate::testing::{self, FakeExec, Log};

    /// A step scripted by the test: it sets read_only on its host through
    /// SQL the fake host logs, may revise its undo, and may fail.
    struct Scripted {
        id: StepId,
        host: String,
        fail: bool,
        refuse: bool,
        revise: Option<Undo>,
        /// `stage` returns a note (`Some(true)`) or fails (`Some(false)`).
        stage: Option<bool>,
    }

    impl Scripted {
        fn new(id: StepId, host: &str) -> Scripted {
            Scripted {
                id,
                host: host.into(),
                fail: false,
                refuse: false,
                revise: None,
                stage: None,
            }
        }

        fn script(&self) -> crate::mysql::Script {
            let mut s = crate::mysql::Script::new(Duration::from_secs(1));
            s.exec("step", &format!("DO '{}'", self.id));
            s
        }
    }

    impl Step for Scripted {
        fn id(&self) -> StepId {
            self.id
        }
        fn host(&self) -> &str {
            &self.host
        }
        fn what(&self) -> String {
            "a scripted step".into()
        }
        fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
            Ok(Some(Undo::ReadOnly {
                host: self.host.clone(),
                read_only: true,
                super_read_only: None,
            }))
        }
        fn scripts(&self, _ctx: &Ctx) -> Vec<crate::listing::Planned> {
            vec![crate::listing::Planned::once(&self.host, &self.script())]
        }
        fn stage(&mut self, _ctx: &mut Ctx) -> Result<Vec<(String, serde_json::Value)>> {
            match self.stage {
                None => Ok(Vec::new()),
                Some(true) => Ok(vec![(format!("staged:{}", self.host), "read".into())]),
                Some(false) => anyhow::bail!("cannot read what the change needs"),
            }
        }
        fn apply(&mut self, ctx: &mut Ctx, journal: &Journal) -> Result<Applied> {
            if self.stage.is_some()
                && journal
                    .note_value(&format!("staged:{}", self.host))
                    .is_none()
            {
                anyhow::bail!("applied before its staged note was journaled");
            }
            if self.refuse {
                return Err(anyhow!("not proven").context(crate::exit::Refused));
            }
            if self.fail {
                anyhow::bail!("scripted failure");
            }
            let s = self.script();
            ctx.host(&self.host)?.run(&s)?;
            Ok(Applied {
                revised_undo: self.revise.clone(),
                ..Applied::default()
            })
        }
    }

    fn fixture(name: &str) -> (Ctx, Log, Journal) {
        let log = Log::default();
        let hosts = vec![
            testing::host("db1", FakeExec::new("db1", &log), false),
            testing::host("db2", FakeExec::new("db2", &log), true),
        ];
        let dir = crate::state::tests::temp_dir(&format!("engine-{name}"));
        let state = crate::state::StateDir::open(&dir, "app1").unwrap();
        let journal = Journal::create(
            &state,
            Entry::Begin {
                id: "t".into(),
                kind: Kind::Online,
                orig: "db1".into(),
                new: "db2".into(),
                at: "now".into(),
                pid: 1,
            },
        )
        .unwrap();
        (Ctx::new(hosts, Report::new("test", "test")), log, journal)
    }

    fn policy(on_failure: OnFailure) -> Policy {
        Policy {
            on_failure,
            journal: JournalUse::Required,
            undo_timeout: Duration::from_secs(1),
        }
    }

    fn sent(log: &Log) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .map(|l| {
                let host = &l[..3];
                let what = l
                    .lines()
                    .find(|s| s.starts_with("DO '") || s.starts_with("SET GLOBAL"))
                    .unwrap_or("?");
                format!("{host} {}", what.trim_end_matches(';'))
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        policy: OnFailure,
        /// which of the three steps fails / refuses
        fail: Option<usize>,
        refuse: Option<usize>,
        /// which step's host never answers (its script times out)
        hang: Option<usize>,
        sent: &'static [&'static str],
        undone: usize,
    }

    /// Three steps (db1, db2, db1) under each policy and outcome.
    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "all-done",
                policy: OnFailure::RollBack,
                fail: None,
                refuse: None,
                hang: None,
                sent: &[
                    "db1 DO 'new-master-read-only'",
                    "db2 DO 'block-accounts'",
                    "db1 DO 'kill-sessions'",
                ],
                undone: 0,
            },
            Case {
                name: "rollback",
                policy: OnFailure::RollBack,
                fail: Some(2),
                refuse: None,
                hang: None,
                // the undos in reverse, each restoring read_only=1; the failed
                // step's own undo first: its undo is journaled before it runs,
                // since a step that fails may have changed part of its host
                sent: &[
                    "db1 DO 'new-master-read-only'",
                    "db2 DO 'block-accounts'",
                    "db1 SET GLOBAL read_only = 1",
                    "db2 SET GLOBAL read_only = 1",
                    "db1 SET GLOBAL read_only = 1",
                ],
                undone: 3,
            },
            Case {
                name: "continue",
                policy: OnFailure::Continue,
                fail: Some(1),
                refuse: None,
                hang: None,
                sent: &["db1 DO 'new-master-read-only'", "db1 DO 'kill-sessions'"],
                undone: 0,
            },
            Case {
                name: "refusal",
                policy: OnFailure::Continue,
                fail: None,
                refuse: Some(1),
                hang: None,
                // a refusal stops at once and rolls back, whatever the policy
                sent: &[
                    "db1 DO 'new-master-read-only'",
                    "db2 SET GLOBAL read_only = 1",
                    "db1 SET GLOBAL read_only = 1",
                ],
                undone: 2,
            },
            Case {
                name: "timeout",
                policy: OnFailure::RollBack,
                fail: None,
                refuse: None,
                hang: Some(1),
                // a statement that may still run is never raced by an undo:
                // nothing is rolled back, recover finishes once it is known
                sent: &["db1 DO 'new-master-read-only'", "db2 DO 'block-accounts'"],
                undone: 0,
            },
        ]
    }

    #[test]
    fn each_case_runs_the_steps_it_should_and_undoes_what_it_should() {
        for c in cases() {
            let (mut ctx, log, mut journal) = fixture(c.name);
            if c.hang == Some(1) {
                let mut db2 = FakeExec::new("db2", &log);
                db2.read_only = true;
                db2.hanging = vec!["DO 'block-accounts'".into()];
                ctx.hosts[1].conn = Box::new(db2);
            }
            let mut steps: Vec<Box<dyn Step>> = [
                (StepId::NewMasterReadOnly, "db1"),
                (StepId::BlockAccounts, "db2"),
                (StepId::KillSessions, "db1"),
            ]
            .iter()
            .enumerate()
            .map(|(i, (id, h))| {
                let mut s = Scripted::new(*id, h);
                s.fail = c.fail == Some(i);
                s.refuse = c.refuse == Some(i);
                Box::new(s) as Box<dyn Step>
            })
            .collect();
            let r = run(&mut steps, &mut ctx, &mut journal, policy(c.policy));
            assert_eq!(
                r.is_ok(),
                c.fail.is_none() && c.refuse.is_none() && c.hang.is_none(),
                "{}",
                c.name
            );
            let needs_recover = r
                .as_ref()
                .err()
                .is_some_and(|e| e.downcast_ref::<crate::exit::NeedsRecover>().is_some());
            assert_eq!(needs_recover, c.hang.is_some(), "{}: {r:?}", c.name);
            assert_eq!(sent(&log), c.sent, "{}", c.name);
            let undone = journal
                .entries()
                .iter()
                .filter(|e| matches!(e, Entry::Undone { .. }))
                .count();
            assert_eq!(undone, c.undone, "{}", c.name);
        }
    }

    #[test]
    fn what_each_step_sent_is_recorded_only_when_asked_and_keeps_to_its_plan() {
        for show in [false, true] {
            let (mut ctx, _log, mut journal) = fixture(&format!("sent-{show}"));
            ctx.show_sent = show;
            let mut steps: Vec<Box<dyn Step>> = vec![
                Box::new(Scripted::new(StepId::NewMasterReadOnly, "db1")),
                Box::new(Scripted::new(StepId::BlockAccounts, "db2")),
            ];
            let planned = plan(&mut steps, &mut ctx).unwrap();
            run(
                &mut steps,
                &mut ctx,
                &mut journal,
                policy(OnFailure::RollBack),
            )
            .unwrap();
            assert_eq!(ctx.report.steps.len(), 2);
            for (p, s) in planned.iter().zip(&ctx.report.steps) {
                assert_eq!(s.sent.is_empty(), !show, "{}", s.step);
                if show {
                    assert_eq!(s.sent.len(), 1, "{}", s.step);
                    assert_eq!(s.sent[0].host, p.host);
                    crate::listing::conforms(&p.scripts, &s.sent).unwrap();
                }
            }
            assert!(ctx.hosts.iter().all(|h| h.sent.is_none()), "recording ends");
        }
    }

    /// Run two steps under roll-back, the second failing; its error.
    fn fail_two(
        first: Scripted,
        second: Scripted,
        ctx: &mut Ctx,
        journal: &mut Journal,
    ) -> anyhow::Error {
        let mut steps: Vec<Box<dyn Step>> = vec![Box::new(first), Box::new(second)];
        run(&mut steps, ctx, journal, policy(OnFailure::RollBack)).unwrap_err()
    }

    #[test]
    fn a_staged_note_is_journaled_before_the_change_and_a_failed_stage_changes_nothing() {
        let (mut ctx, log, mut journal) = fixture("staged");
        let mut first = Scripted::new(StepId::NewMasterReadOnly, "db1");
        first.stage = Some(true);
        let mut second = Scripted::new(StepId::BlockAccounts, "db2");
        second.stage = Some(false);
        let e = fail_two(first, second, &mut ctx, &mut journal);
        assert!(
            crate::exit::message(&e).contains("cannot read what the change needs"),
            "{e:#}"
        );
        assert_eq!(
            journal.note_value("staged:db1").and_then(|v| v.as_str()),
            Some("read")
        );
        // db2 was never sent its change; both undos ran, in reverse.
        assert_eq!(
            sent(&log),
            [
                "db1 DO 'new-master-read-only'",
                "db2 SET GLOBAL read_only = 1",
                "db1 SET GLOBAL read_only = 1"
            ]
        );
    }

    #[test]
    fn a_revised_undo_is_journaled_and_is_the_one_a_rollback_runs() {
        let (mut ctx, log, mut journal) = fixture("revised");
        let revised = Undo::ReadOnly {
            host: "db2".into(),
            read_only: true,
            super_read_only: Some(true),
        };
        let mut first = Scripted::new(StepId::BlockAccounts, "db2");
        first.revise = Some(revised.clone());
        let mut second = Scripted::new(StepId::KillSessions, "db1");
        second.fail = true;
        let e = fail_two(first, second, &mut ctx, &mut journal);
        assert!(
            crate::exit::message(&e).contains("rolled back: 2 change"),
            "{e:#}"
        );
        assert_eq!(journal.undo_of(StepId::BlockAccounts), Some(&revised));
        // the failed step's undo, then the revised one (not the one prepared)
        assert_eq!(
            sent(&log),
            [
                "db2 DO 'block-accounts'",
                "db1 SET GLOBAL read_only = 1",
                "db2 SET GLOBAL super_read_only = 1"
            ]
        );
    }
}
