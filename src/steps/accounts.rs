//! Steps on the application's accounts: [`BlockAccounts`] on the old
//! master (its undo gives everything back), and [`RestoreGrants`], which
//! gives them back once the switch is done.

use crate::step_id::StepId;
use std::time::Duration;

use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::config::helper::BlockMethod;
use crate::grants::{self, Selection, Snapshot};
use crate::listing::Planned;
use crate::mysql::Script;
use crate::ops::{self, read_only::unix_ms, sessions};
use crate::state::journal::{note, Journal};

/// Take the application accounts' rights away (per `method`).
///
/// The grants are read again in the block's own script, just before the
/// first revoke: if they changed since the preflight snapshot that was
/// journaled, the journal gets the grants as they were at the block
/// (durably, at once), so a GRANT made in between is given back too.
pub struct BlockAccounts {
    host: String,
    method: BlockMethod,
    selection: Selection,
    stmts: Vec<String>,
    /// MySQL keeps default roles outside SHOW GRANTS: snapshot them too.
    mysql_roles: bool,
}

impl BlockAccounts {
    pub fn new(host: &str, method: BlockMethod, selection: Selection) -> BlockAccounts {
        BlockAccounts {
            host: host.to_string(),
            method,
            selection,
            stmts: Vec::new(),
            mysql_roles: false,
        }
    }

    fn script(&self, ctx: &Ctx, timeout: Duration) -> Script {
        let mut s = Script::new(timeout).without_binlog();
        // The server's clock before the reads and before the first block
        // statement: the write outage starts at the second.
        s.query("t0", "SELECT UNIX_TIMESTAMP(NOW(6)) AS t");
        if self.method != BlockMethod::ReadOnlyOnly {
            grants::add_snapshot_queries(&mut s, &ctx.app.accounts, self.mysql_roles);
        }
        s.query("t1", "SELECT UNIX_TIMESTAMP(NOW(6)) AS t");
        for st in &self.stmts {
            s.exec("block accounts", st);
        }
        sessions::add_watermark(&mut s, "watermark");
        sessions::add_query(
            &mut s,
            "sessions",
            &ctx.app.accounts,
            &self.selection.admin_user,
        );
        s
    }
}

impl Step for BlockAccounts {
    fn id(&self) -> StepId {
        StepId::BlockAccounts
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        match self.method {
            BlockMethod::Revoke => {
                "read the grants again, then revoke them from the application accounts".into()
            }
            BlockMethod::AccountLock => "lock the application accounts".into(),
            BlockMethod::ReadOnlyOnly => {
                "leave accounts as they are (block_method = read_only_only)".into()
            }
        }
    }

    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        if ctx.app.snapshots.is_empty() && ctx.app.accounts.is_empty() {
            let loaded = ops::accounts::load(ctx.host(&self.host)?, &self.selection)?;
            ctx.app.accounts = loaded.accounts;
            ctx.app.snapshots = loaded.snapshots;
        }
        let info = ctx.host(&self.host)?.info()?;
        let flavor = info.flavor;
        self.mysql_roles = ops::accounts::mysql_roles(info);
        let mut s = Script::new(Duration::from_secs(1));
        grants::add_block(&mut s, self.method, flavor, &ctx.app.snapshots);
        self.stmts = s.body();
        if self.method == BlockMethod::ReadOnlyOnly {
            return Ok(None);
        }
        Ok(Some(Undo::Grants {
            host: self.host.clone(),
            method: self.method,
            snapshots: ctx.app.snapshots.clone(),
        }))
    }

    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        vec![Planned::once(&self.host, &self.script(ctx, t))]
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let timeout = ctx.host(&self.host)?.spec.settings.step_timeout;
        let script = self.script(ctx, timeout);
        let sent = unix_ms();
        let r = ctx.host(&self.host)?.run(&script)?;
        let server_t = |name: &str| {
            r.set(name)
                .records()
                .next()
                .and_then(|x| x.get("t").and_then(|t| t.parse::<f64>().ok()))
        };
        let reads_ms = match (server_t("t0"), server_t("t1")) {
            (Some(a), Some(b)) if b >= a => ((b - a) * 1000.0) as u64,
            _ => 0,
        };
        let mut applied = Applied {
            lazy_notes: vec![(note::BLOCK_STARTED_MS.into(), (sent + reads_ms).into())],
            ..Applied::default()
        };
        ctx.app.watermark = sessions::watermark(&r, "watermark");
        ctx.app.remaining = sessions::parse(&r, "sessions");
        if self.method != BlockMethod::ReadOnlyOnly {
            let at_block = grants::parse_snapshots(&r, &ctx.app.accounts)?;
            if at_block != ctx.app.snapshots {
                let changed: Vec<String> = at_block
                    .iter()
                    .zip(&ctx.app.snapshots)
                    .filter(|(a, b)| a != b)
                    .map(|(a, _)| a.account.label())
                    .collect();
                ctx.report.warn(format!(
                    "{}: grants of {} changed between the preflight and the block; the journal now \
                     holds them as they were at the block",
                    self.host,
                    changed.join(", ")
                ));
                applied.revised_undo = Some(Undo::Grants {
                    host: self.host.clone(),
                    method: self.method,
                    snapshots: at_block.clone(),
                });
                ctx.app.snapshots = at_block;
            }
            ctx.report.accounts_changed = ctx
                .app
                .snapshots
                .iter()
                .filter(|s| self.method == BlockMethod::Revoke || !s.locked)
                .map(|s| format!("{} ({:?})", s.account.label(), self.method))
                .collect();
        }
        applied.detail = Some(format!(
            "{} account(s), {} application session(s) open",
            ctx.report.accounts_changed.len(),
            ctx.app.remaining.len()
        ));
        Ok(applied)
    }
}

/// Give the application accounts back what the block took, exactly as
/// saved, and read the grants back. Nothing to undo: taking them away again
/// is never wanted. Marks the block step undone in the journal.
pub struct RestoreGrants {
    host: String,
    method: BlockMethod,
    snapshots: Vec<Snapshot>,
    /// Accounts restored, after apply.
    pub restored: Vec<String>,
}

impl RestoreGrants {
    pub fn new(host: &str, method: BlockMethod, snapshots: Vec<Snapshot>) -> RestoreGrants {
        RestoreGrants {
            host: host.to_string(),
            method,
            snapshots,
            restored: Vec::new(),
        }
    }
}

impl Step for RestoreGrants {
    fn id(&self) -> StepId {
        StepId::RestoreGrants
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        format!(
            "give {} application account(s) back exactly what they had",
            self.snapshots.len()
        )
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let info = ctx.find(&self.host).and_then(|h| h.info.as_ref());
        let t = super::step_timeout(ctx, &self.host);
        ops::accounts::restore_plan(&self.host, info, self.method, &self.snapshots, t)
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let t = h.spec.settings.step_timeout;
        self.restored = ops::accounts::restore(h, self.method, &self.snapshots, t)?;
        ctx.report.accounts_changed = self
            .restored
            .iter()
            .map(|a| format!("{a} (restored)"))
            .collect();
        Ok(Applied {
            detail: Some(format!("{} account(s)", self.restored.len())),
            undid: Some((StepId::BlockAccounts.to_string(), self.host.clone())),
            ..Applied::default()
        })
    }
}
