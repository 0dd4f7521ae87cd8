//! The switch runner: what every phase that changes hosts — the online
//! hook's stop and start, the failover hook's stopssh and start, the fence
//! — does around its own steps, one method per part: connect to the hosts,
//! begin the journal, show the plan (dry run) or apply it under a policy,
//! report. Each phase's file then reads as its runbook, and a new engine
//! (the native switch) is one more runbook over the same parts.

use std::time::Instant;

use anyhow::Result;

use crate::cluster::{self, HostSpec};
use crate::engine::{self, Policy};
use crate::exit::Code;
use crate::online::phase::HookOptions;
use crate::report::Report;
use crate::setup::Setup;
use crate::state::journal::{Entry, Journal, Kind};
use crate::state::StateDir;
use crate::steps::{Ctx, Step};

/// One run of one phase.
pub struct Runner<'a> {
    pub setup: &'a Setup,
    pub state: StateDir,
    pub started: Instant,
    /// Print the report as JSON (else as log lines).
    pub json: bool,
    /// Put in the report what each step sent.
    pub show_sent: bool,
    /// Where the report goes instead of stdout, when a command asked.
    pub capture: Option<crate::report::Captured>,
}

impl<'a> Runner<'a> {
    /// A run of `phase` (also the phase fault points see).
    pub fn new(setup: &'a Setup, phase: &str, opts: &HookOptions) -> Result<Runner<'a>> {
        crate::fault::set_phase(phase);
        Ok(Runner {
            setup,
            state: setup.state()?,
            started: Instant::now(),
            json: opts.json,
            show_sent: opts.show_sent,
            capture: opts.capture.clone(),
        })
    }

    /// Connect to `specs` in parallel: the hosts that answered, those that
    /// did not (with why), and what the steps will share.
    pub fn connect(&self, specs: Vec<HostSpec>, report: Report) -> Ctx {
        let (hosts, unreachable) = cluster::connect_split(specs);
        let mut ctx = Ctx::new(hosts, report);
        ctx.unreachable = unreachable;
        ctx.show_sent = self.show_sent;
        ctx
    }

    /// Begin the journal of switch `id` (fails when one is open).
    pub fn begin(&self, kind: Kind, id: String, orig: &str, new: &str) -> Result<Journal> {
        Journal::create(
            &self.state,
            Entry::Begin {
                id,
                kind,
                orig: orig.to_string(),
                new: new.to_string(),
                at: crate::logger::utc_now(),
                pid: std::process::id(),
            },
        )
    }

    /// The dry run: every step prepared (reads only), the plan in the
    /// report, nothing changed.
    pub fn dry_run(&self, steps: &mut [Box<dyn Step>], ctx: &mut Ctx) -> Result<Code> {
        ctx.report.plan = engine::plan(steps, ctx)?;
        ctx.report.outcome = "dry-run: nothing changed".into();
        self.stamp(ctx);
        self.emit(&ctx.report);
        Ok(Code::Ok)
    }

    /// Run `steps` under `policy`, journaled in `journal`; the report then
    /// has the run's time and each host's SSH figures.
    pub fn apply(
        &self,
        steps: &mut [Box<dyn Step>],
        ctx: &mut Ctx,
        journal: &mut Journal,
        policy: Policy,
    ) -> Result<()> {
        let result = engine::run(steps, ctx, journal, policy);
        self.stamp(ctx);
        result
    }

    /// The run's time and the hosts' SSH figures into the report.
    pub fn stamp(&self, ctx: &mut Ctx) {
        ctx.report.elapsed_ms = self.started.elapsed().as_millis() as u64;
        ctx.collect_stats();
    }

    /// Print the report as asked (text is also logged, for MHA's log).
    pub fn emit(&self, report: &Report) {
        crate::report::emit_or_keep(report, self.json, self.capture.as_ref());
    }
}
