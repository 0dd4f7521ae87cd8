//! How to reverse one change to one host: plain data, written to the journal
//! before the change is made, so that a later process (`start`, `recover`
//! after a crash) can run it. The steps that make changes (`steps/`) produce
//! these; the host operations (`ops/`) carry them out.

use serde::{Deserialize, Serialize};

use crate::config::helper::BlockMethod;
use crate::grants::{Digest, Snapshot};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Undo {
    /// Put read_only (and super_read_only, where the server has it) back.
    /// Putting `read_only = false` back makes the host writable, which is
    /// only done once every other host is proven read-only.
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
        /// The grant tables' digest the snapshots were taken with: the
        /// restore is proven by it in one query where it comes back equal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Digest>,
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

    /// Whether running it makes its host writable.
    pub fn makes_writable(&self) -> bool {
        matches!(
            self,
            Undo::ReadOnly {
                read_only: false,
                super_read_only: None | Some(false),
                ..
            }
        )
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
