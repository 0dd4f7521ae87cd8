//! Steps on the application's accounts: [`BlockAccounts`] on the old
//! master (its undo gives everything back), and [`RestoreGrants`], which
//! gives them back once the switch is done.

use crate::step_id::StepId;
use std::time::Duration;

use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::config::helper::BlockMethod;
use crate::grants::{self, digest, Digest, Selection, Snapshot};
use crate::listing::Planned;
use crate::mysql::{Flavor, Results, Script};
use crate::ops::{self, read_only::unix_ms, sessions};
use crate::state::journal::{note, Journal};

/// Take the application accounts' rights away (per `method`).
///
/// The snapshot journaled before the block must still be true when the
/// first revoke runs: the block's own script proves it with the grant
/// tables' digest in one statement, which fails the script before any
/// change if the grants changed since. Then (or where there is no digest)
/// the block reads every account's grants again just before its first
/// revoke, and the journal gets the grants as they were at the block
/// (durably, at once), so a GRANT made in between is given back too.
pub struct BlockAccounts {
    host: String,
    method: BlockMethod,
    selection: Selection,
    /// The block's statements where the digest proved the snapshot (only
    /// its privileges are revoked), and where it was read again.
    stmts: Vec<String>,
    stmts_all: Vec<String>,
    /// MySQL keeps default roles outside SHOW GRANTS: snapshot them too.
    mysql_roles: bool,
    flavor: Flavor,
}

/// How the block proves its snapshot is still true.
#[derive(Clone, Copy, PartialEq)]
enum Proof {
    /// One statement comparing the grant tables' digest.
    Digest,
    /// Every account's grants read again inside the block's script.
    ReRead,
}

/// Result set of the digest read with the grants (ReRead).
const DIGEST_AT_BLOCK: &str = "digest_at_block";

impl BlockAccounts {
    pub fn new(host: &str, method: BlockMethod, selection: Selection) -> BlockAccounts {
        BlockAccounts {
            host: host.to_string(),
            method,
            selection,
            stmts: Vec::new(),
            stmts_all: Vec::new(),
            mysql_roles: false,
            flavor: Flavor::MariaDb,
        }
    }

    fn proof(&self, ctx: &Ctx) -> Option<Proof> {
        match (self.method, &ctx.app.digest) {
            (BlockMethod::ReadOnlyOnly, _) => None,
            (_, Some(_)) => Some(Proof::Digest),
            (_, None) => Some(Proof::ReRead),
        }
    }

    fn script(&self, ctx: &Ctx, proof: Option<Proof>, timeout: Duration) -> Script {
        let mut s = Script::new(timeout).without_binlog();
        // The server's clock before the proof and before the first block
        // statement: the write outage starts at the second.
        s.query("t0", "SELECT UNIX_TIMESTAMP(NOW(6)) AS t");
        match (proof, &ctx.app.digest) {
            (Some(Proof::Digest), Some(d)) => digest::add_guard(&mut s, d),
            (Some(_), d) => {
                if let Some(d) = d {
                    digest::add_query(&mut s, DIGEST_AT_BLOCK, &d.expr);
                }
                grants::add_snapshot_queries(
                    &mut s,
                    self.flavor,
                    &ctx.app.accounts,
                    self.mysql_roles,
                );
            }
            (None, _) => {}
        }
        s.query("t1", "SELECT UNIX_TIMESTAMP(NOW(6)) AS t");
        let stmts = match proof {
            Some(Proof::Digest) => &self.stmts,
            _ => &self.stmts_all,
        };
        for st in stmts {
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

    /// Run the block with `proof`; where the digest says the grants
    /// changed (nothing was changed yet), again with the re-read.
    fn run(&self, ctx: &mut Ctx, timeout: Duration) -> Result<(Results, Option<Proof>)> {
        let proof = self.proof(ctx);
        let script = self.script(ctx, proof, timeout);
        match ctx.host(&self.host)?.run(&script) {
            Err(e) if proof == Some(Proof::Digest) && digest::failed_guard(&e) => {
                log::info!(
                    "{}: grants changed since the snapshot; the block reads them again",
                    self.host
                );
                let script = self.script(ctx, Some(Proof::ReRead), timeout);
                Ok((ctx.host(&self.host)?.run(&script)?, Some(Proof::ReRead)))
            }
            r => Ok((r?, proof)),
        }
    }

    /// After a re-read: the journal gets the grants as they were at the
    /// block if they differ from the snapshot.
    fn revise(&self, ctx: &mut Ctx, r: &Results, applied: &mut Applied) -> Result<()> {
        let at_block = grants::parse_snapshots(r, &ctx.app.accounts)?;
        let digest = ctx.app.digest.as_ref().and_then(|d| {
            digest::value(r, DIGEST_AT_BLOCK).map(|value| Digest {
                expr: d.expr.clone(),
                value,
            })
        });
        if at_block == ctx.app.snapshots && digest == ctx.app.digest {
            return Ok(());
        }
        let changed: Vec<String> = at_block
            .iter()
            .zip(&ctx.app.snapshots)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.account.label())
            .collect();
        if !changed.is_empty() {
            ctx.report.warn(format!(
                "{}: grants of {} changed between the preflight and the block; the journal now \
                 holds them as they were at the block",
                self.host,
                changed.join(", ")
            ));
        }
        applied.revised_undo = Some(Undo::Grants {
            host: self.host.clone(),
            method: self.method,
            snapshots: at_block.clone(),
            digest: digest.clone(),
        });
        ctx.app.snapshots = at_block;
        ctx.app.digest = digest;
        Ok(())
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
                "prove the grants unchanged, then revoke them from the application accounts".into()
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
            ctx.app.digest = loaded.digest;
        }
        let info = ctx.host(&self.host)?.info()?;
        let flavor = info.flavor;
        self.flavor = flavor;
        self.mysql_roles = ops::accounts::mysql_roles(info);
        let block = |revoke| {
            let mut s = Script::new(Duration::from_secs(1));
            grants::add_block(&mut s, self.method, revoke, flavor, &ctx.app.snapshots);
            s.body()
        };
        self.stmts = block(grants::Revoke::Snapshot);
        self.stmts_all = block(grants::Revoke::All);
        if self.method == BlockMethod::ReadOnlyOnly {
            return Ok(None);
        }
        Ok(Some(Undo::Grants {
            host: self.host.clone(),
            method: self.method,
            snapshots: ctx.app.snapshots.clone(),
            digest: ctx.app.digest.clone(),
        }))
    }

    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        let proof = self.proof(ctx);
        let mut v = vec![Planned::once(&self.host, &self.script(ctx, proof, t))];
        if proof == Some(Proof::Digest) {
            v.push(Planned::repeated(
                &self.host,
                &self.script(ctx, Some(Proof::ReRead), t),
                "only if the grants changed since the snapshot (the first script then stops \
                 before its first change)",
            ));
        }
        v
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let timeout = ctx.host(&self.host)?.spec.settings.step_timeout;
        let sent = unix_ms();
        let (r, proof) = self.run(ctx, timeout)?;
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
        if proof == Some(Proof::ReRead) {
            self.revise(ctx, &r, &mut applied)?;
        }
        if self.method != BlockMethod::ReadOnlyOnly {
            ctx.report.accounts_changed = ctx
                .app
                .snapshots
                .iter()
                .filter(|s| self.method == BlockMethod::Revoke || !s.locked)
                .map(|s| format!("{} ({:?})", s.account.label(), self.method))
                .collect();
        }
        let proven = match proof {
            Some(Proof::Digest) => ", grants proven unchanged by digest",
            Some(Proof::ReRead) => ", grants read again",
            None => "",
        };
        applied.detail = Some(format!(
            "{} account(s), {} application session(s) open{proven}",
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
    digest: Option<Digest>,
    /// Accounts restored, after apply.
    pub restored: Vec<String>,
}

impl RestoreGrants {
    pub fn new(
        host: &str,
        method: BlockMethod,
        snapshots: Vec<Snapshot>,
        digest: Option<Digest>,
    ) -> RestoreGrants {
        RestoreGrants {
            host: host.to_string(),
            method,
            snapshots,
            digest,
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
        ops::accounts::restore_plan(
            &self.host,
            info,
            self.method,
            &self.snapshots,
            self.digest.as_ref(),
            t,
        )
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let t = h.spec.settings.step_timeout;
        self.restored =
            ops::accounts::restore(h, self.method, &self.snapshots, self.digest.as_ref(), t)?;
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
