//! The steps a switch is made of. Each step reads what it needs first
//! (`prepare`, which changes nothing and returns the data to undo it), then
//! changes one host (`apply`). The engine journals the undo between the two.
//! Undos are plain data ([`Undo`]) so that a later process — the `start`
//! phase, or `recover` after a crash — can run them from the journal.

pub mod accounts;
pub mod read_only;
pub mod sessions;
pub mod vip;

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::Host;
use crate::config::helper::BlockMethod;
use crate::grants::{Account, Snapshot};
use crate::journal::Journal;
use crate::report::{Report, Session};

/// How to reverse one change; written to the journal before the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Undo {
    /// Put read_only (and super_read_only, where the server has it) back.
    ReadOnly {
        host: String,
        read_only: bool,
        super_read_only: Option<bool>,
    },
    /// Give the accounts back exactly what they had.
    Grants {
        host: String,
        method: BlockMethod,
        snapshots: Vec<Snapshot>,
    },
    /// Put the writer VIP on (`add`) or take it off the host.
    Vip { host: String, add: bool },
}

impl Undo {
    pub fn host(&self) -> &str {
        match self {
            Undo::ReadOnly { host, .. } | Undo::Grants { host, .. } | Undo::Vip { host, .. } => {
                host
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Undo::ReadOnly {
                read_only,
                super_read_only,
                ..
            } => format!(
                "restore read_only={}{}",
                u8::from(*read_only),
                super_read_only
                    .map(|s| format!(", super_read_only={}", u8::from(s)))
                    .unwrap_or_default()
            ),
            Undo::Grants {
                method, snapshots, ..
            } => format!("restore {} account(s) ({method:?})", snapshots.len()),
            Undo::Vip { add: true, .. } => "put the writer VIP back".into(),
            Undo::Vip { add: false, .. } => "take the writer VIP off".into(),
        }
    }
}

/// What the block step learnt, for the session steps after it.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub accounts: Vec<Account>,
    pub snapshots: Vec<Snapshot>,
    /// The highest connection id on the old master when blocking began:
    /// sessions above it logged in after the block.
    pub watermark: u64,
    /// Application sessions still there when the grace period ended.
    pub remaining: Vec<Session>,
}

/// The hosts of a run, what the steps share, and the report.
pub struct Ctx {
    pub hosts: Vec<Host>,
    pub app: AppState,
    pub report: Report,
}

impl Ctx {
    pub fn new(hosts: Vec<Host>, report: Report) -> Ctx {
        Ctx {
            hosts,
            app: AppState::default(),
            report,
        }
    }

    pub fn host(&mut self, name: &str) -> Result<&mut Host> {
        self.hosts
            .iter_mut()
            .find(|h| h.spec.name == name)
            .ok_or_else(|| anyhow!("{name}: no open connection to this host"))
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

/// One named, undoable change on one host.
pub trait Step {
    /// Short kebab-case id (journal, fault points, report).
    fn id(&self) -> &'static str;
    fn host(&self) -> &str;
    /// One line saying what the step does.
    fn what(&self) -> String;
    /// Read the current state; return how to undo the change (None when
    /// the step changes nothing that can or needs to be undone).
    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>>;
    /// The statements `apply` will run, for the dry run (after prepare).
    fn statements(&self, ctx: &Ctx) -> Vec<String>;
    /// Make the change.
    fn apply(&mut self, ctx: &mut Ctx, journal: &mut Journal) -> Result<Option<String>>;
    /// Whether the change can be reversed (a killed session cannot).
    fn reversible(&self) -> bool {
        true
    }
}

/// Run one undo on its host with its own timeout.
pub fn apply_undo(undo: &Undo, ctx: &mut Ctx, timeout: Duration) -> Result<()> {
    match undo {
        Undo::ReadOnly {
            host,
            read_only,
            super_read_only,
        } => read_only::restore(ctx.host(host)?, *read_only, *super_read_only, timeout),
        Undo::Grants {
            host,
            method,
            snapshots,
        } => accounts::restore(ctx.host(host)?, *method, snapshots, timeout).map(|_| ()),
        Undo::Vip { host, add } => vip::apply(ctx.host(host)?, *add, timeout).map(|_| ()),
    }
}
