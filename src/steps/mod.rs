//! The steps a switch is made of: thin, journaled adapters over the host
//! operations in `ops/`. Each step reads what it needs first (`prepare`,
//! which changes nothing and returns how to undo the change), then changes
//! one host (`apply`, after `stage` read what must be journaled just
//! before the change). The engine runs every `prepare` before the first
//! `apply`, and journals each undo before its change. Undos are plain data
//! ([`Undo`]) so that a later process — the `start` phase, or `recover`
//! after a crash — can run them from the journal ([`apply_undo`]).

pub mod accounts;
pub mod read_only;
pub mod replication;
pub mod sessions;
pub mod vip;

use crate::step_id::StepId;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::cluster::Host;
use crate::grants::{Account, Digest, Snapshot};
use crate::listing::Planned;
use crate::ops;
use crate::report::{Report, Session};
use crate::state::journal::Journal;
pub use crate::undo::Undo;

/// What the online stop's steps share. Written in this order: preflight
/// fills `accounts` and `snapshots`; the block step sets `watermark` and
/// `remaining`; the drain step updates `remaining`; the kill step empties
/// it; the fence proof reads `watermark`.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub accounts: Vec<Account>,
    pub snapshots: Vec<Snapshot>,
    /// The grant tables' digest the snapshots were taken with.
    pub digest: Option<Digest>,
    /// The highest connection id on the old master when blocking began:
    /// sessions above it logged in after the block.
    pub watermark: u64,
    /// Application sessions still there when the grace period ended.
    pub remaining: Vec<Session>,
}

/// The hosts of a run, what the steps share, and the report.
pub struct Ctx {
    /// Every host of the cluster that answered.
    pub hosts: Vec<Host>,
    /// Hosts of the cluster with no connection: name and why.
    pub unreachable: Vec<(String, String)>,
    pub app: AppState,
    pub report: Report,
    /// Record what each step sends, for the report (`--show-sent`).
    pub show_sent: bool,
}

impl Ctx {
    pub fn new(hosts: Vec<Host>, report: Report) -> Ctx {
        Ctx {
            hosts,
            unreachable: Vec::new(),
            app: AppState::default(),
            report,
            show_sent: false,
        }
    }

    pub fn host(&mut self, name: &str) -> Result<&mut Host> {
        self.hosts
            .iter_mut()
            .find(|h| h.spec.name == name)
            .ok_or_else(|| anyhow!("{name}: no open connection to this host"))
    }

    pub fn find(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    pub fn unreachable_names(&self) -> Vec<String> {
        self.unreachable.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Copy each host's SSH counters into the report.
    pub fn collect_stats(&mut self) {
        for h in &self.hosts {
            if let Some(s) = h.conn.stats() {
                self.report.ssh.insert(h.spec.name.clone(), s);
            }
        }
    }
}

/// What a step's change produced, for the engine to record: only the
/// engine writes the journal.
#[derive(Debug, Default)]
pub struct Applied {
    /// One line for the report.
    pub detail: Option<String>,
    /// The step's undo, revised now the change is made (the block's
    /// snapshot, re-read in its own script): journaled at once, and the
    /// one a rollback runs.
    pub revised_undo: Option<Undo>,
    /// Facts later steps and phases read: journaled and fsynced.
    pub notes: Vec<(String, serde_json::Value)>,
    /// Facts only the report needs: journaled without waiting for the disk.
    pub lazy_notes: Vec<(String, serde_json::Value)>,
    /// An earlier step this one reversed (step, host): journaled as undone.
    pub undid: Option<(String, String)>,
}

impl Applied {
    pub fn detail(d: impl Into<String>) -> Applied {
        Applied {
            detail: Some(d.into()),
            ..Applied::default()
        }
    }
}

/// One named, undoable change on one host.
pub trait Step {
    /// Short kebab-case id (journal, fault points, report).
    fn id(&self) -> StepId;
    fn host(&self) -> &str;
    /// One line saying what the step does.
    fn what(&self) -> String;
    /// Read the current state; return how to undo the change (None when
    /// the step changes nothing that can or needs to be undone). Changes
    /// nothing.
    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>>;
    /// The scripts `apply` will send, per host, built by the functions
    /// `apply` builds them with (after prepare; for the dry run). Values
    /// read only when the step runs are placeholders (`listing::at_run`).
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned>;
    /// Read, at the last moment before the change, what must be on disk
    /// before it is made: the engine journals these notes (fsynced) and
    /// then applies. Changes nothing; by default reads nothing.
    fn stage(&mut self, _ctx: &mut Ctx) -> Result<Vec<(String, serde_json::Value)>> {
        Ok(Vec::new())
    }
    /// Make the change; what it produced is for the engine to record (a
    /// step reads the journal, never writes it).
    fn apply(&mut self, ctx: &mut Ctx, journal: &Journal) -> Result<Applied>;
    /// Whether the change can be reversed (a killed session cannot).
    fn reversible(&self) -> bool {
        true
    }
}

/// The step_timeout of `host` (the default's when it is not connected).
pub fn step_timeout(ctx: &Ctx, host: &str) -> Duration {
    ctx.find(host).map_or_else(
        || crate::config::helper::HostSettings::default().step_timeout,
        |h| h.spec.settings.step_timeout,
    )
}

/// Run one undo on its host with its own timeout. An undo that makes its
/// host writable first proves every other host read-only.
pub fn apply_undo(undo: &Undo, ctx: &mut Ctx, timeout: Duration) -> Result<()> {
    match undo {
        Undo::ReadOnly { host, .. } if undo.makes_writable() => {
            let unreachable = ctx.unreachable_names();
            let (target, mut others) = ops::read_only::split(&mut ctx.hosts, host)?;
            let w = ops::read_only::make_writable(target, &mut others, &unreachable, &[], timeout)?;
            log::info!("{host}: writable again ({})", w.proof.describe());
            Ok(())
        }
        Undo::ReadOnly {
            host,
            read_only,
            super_read_only,
        } => ops::read_only::restore(ctx.host(host)?, *read_only, *super_read_only, timeout),
        Undo::Grants {
            host,
            method,
            snapshots,
            digest,
        } => ops::accounts::restore(
            ctx.host(host)?,
            *method,
            snapshots,
            digest.as_ref(),
            timeout,
        )
        .map(|_| ()),
        Undo::Vip { host, add: true } => {
            let (target, mut others) = ops::read_only::split(&mut ctx.hosts, host)?;
            ops::vip::prove_absent(&mut others, timeout)?;
            ops::vip::apply(target, true, timeout).map(|_| ())
        }
        Undo::Vip { host, add: false } => ops::vip::apply(ctx.host(host)?, false, timeout)
            .with_context(|| format!("{host}: taking the writer VIP off"))
            .map(|_| ()),
    }
}

/// What [`apply_undo`] sends, for a plan.
pub fn undo_scripts(undo: &Undo, ctx: &Ctx, timeout: Duration) -> Vec<Planned> {
    match undo {
        Undo::ReadOnly { host, .. } if undo.makes_writable() => {
            ops::read_only::writable_plan(&ctx.hosts, host, &[], timeout)
        }
        Undo::ReadOnly {
            host,
            read_only,
            super_read_only,
        } => ops::read_only::restore_plan(host, *read_only, *super_read_only, timeout),
        Undo::Grants {
            host,
            method,
            snapshots,
            digest,
        } => {
            let info = ctx.find(host).and_then(|h| h.info.as_ref());
            ops::accounts::restore_plan(host, info, *method, snapshots, digest.as_ref(), timeout)
        }
        Undo::Vip { host, add } => ops::vip::plan(&ctx.hosts, host, *add),
    }
}

/// A journaled undo run as a step of `recover`. It has no undo itself; the
/// journal records the original step undone.
pub struct RunUndo {
    step: String,
    undo: Undo,
    timeout: Duration,
}

impl RunUndo {
    pub fn new(step: &str, undo: Undo, timeout: Duration) -> RunUndo {
        RunUndo {
            step: step.to_string(),
            undo,
            timeout,
        }
    }
}

impl Step for RunUndo {
    fn id(&self) -> StepId {
        StepId::Undo
    }
    fn host(&self) -> &str {
        self.undo.host()
    }
    fn what(&self) -> String {
        format!("undo {}: {}", self.step, self.undo.describe())
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let timeout = ctx
            .find(self.undo.host())
            .map_or(self.timeout, |h| h.spec.settings.undo_timeout);
        undo_scripts(&self.undo, ctx, timeout)
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let timeout = ctx
            .find(self.undo.host())
            .map_or(self.timeout, |h| h.spec.settings.undo_timeout);
        apply_undo(&self.undo, ctx, timeout)?;
        Ok(Applied {
            undid: Some((self.step.clone(), self.undo.host().to_string())),
            ..Applied::default()
        })
    }
}
