//! Blocking the application accounts on the old master, and giving them
//! back. Everything runs in sessions with `sql_log_bin = 0`, so replicas and
//! the new master keep their grants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::{sessions, Ctx, Step, Undo};
use crate::cluster::Host;
use crate::config::helper::BlockMethod;
use crate::grants::{self, Account, Selection, Snapshot};
use crate::journal::Journal;
use crate::mysql::{Flavor, Script};

/// The application accounts of a host, as they are now.
#[derive(Debug, Clone, Default)]
pub struct AppAccounts {
    pub accounts: Vec<Account>,
    pub snapshots: Vec<Snapshot>,
    /// Roles granted to application accounts that our account cannot
    /// revoke (it lacks their ADMIN OPTION); the revoke would fail.
    pub roles_without_admin: Vec<String>,
}

/// Read the application accounts of `host` and their snapshots (two reads).
pub fn load(host: &mut Host, selection: &Selection) -> Result<AppAccounts> {
    let info = host.info()?.clone();
    let mut s = Script::new(host.spec.settings.step_timeout);
    grants::add_account_query(&mut s, info.flavor, info.has_roles());
    let r = host.run(&s).context("listing accounts")?;
    let accounts = grants::select(&r, selection);
    let mut s = Script::new(host.spec.settings.step_timeout);
    grants::add_snapshot_queries(&mut s, &accounts);
    let mariadb_roles = info.flavor == Flavor::MariaDb && info.has_roles();
    if mariadb_roles {
        grants::add_admin_roles_query(&mut s);
    }
    let r = host.run(&s).context("reading account grants")?;
    let snapshots = grants::parse_snapshots(&r, &accounts)?;
    let roles_without_admin = if mariadb_roles {
        grants::roles_without_admin(&grants::roles_needed(&snapshots), &r)
    } else {
        Vec::new()
    };
    Ok(AppAccounts {
        accounts,
        snapshots,
        roles_without_admin,
    })
}

/// Give the accounts back what `snaps` says and check `SHOW GRANTS` again:
/// first all at once (grants shared by many accounts in one statement);
/// if that fails or reads back differently, account by account with every
/// saved line replayed verbatim, where an account that fails does not stop
/// the others. Every failure is reported at the end. Returns the accounts
/// restored.
pub fn restore(
    host: &mut Host,
    method: BlockMethod,
    snaps: &[Snapshot],
    timeout: Duration,
) -> Result<Vec<String>> {
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = Script::new(timeout).without_binlog();
    grants::add_restore(&mut s, method, snaps);
    match host.run_with(&s, timeout) {
        Ok(r) if grants::differences(&r, snaps).is_empty() => {
            return Ok(snaps.iter().map(|s| s.account.label()).collect());
        }
        Ok(r) => log::warn!(
            "{}: grants differ after the grouped restore ({}); replaying account by account",
            host.name(),
            grants::differences(&r, snaps).join(" | ")
        ),
        Err(e) => log::warn!(
            "{}: grouped restore failed ({}); replaying account by account",
            host.name(),
            crate::exit::message(&e)
        ),
    }
    restore_each(host, method, snaps, timeout)
}

fn restore_each(
    host: &mut Host,
    method: BlockMethod,
    snaps: &[Snapshot],
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let mut restored = Vec::new();
    let mut from = 0;
    while from < snaps.len() {
        let part = &snaps[from..];
        let mut s = Script::new(timeout).without_binlog();
        grants::add_restore_each(&mut s, method, part);
        match host.run_with(&s, timeout) {
            Ok(r) => {
                let diffs = grants::differences(&r, part);
                restored.extend(part.iter().map(|s| s.account.label()));
                failures.extend(diffs);
                break;
            }
            Err(e) => {
                let failed_at = e
                    .downcast_ref::<crate::mysql::Error>()
                    .and_then(|m| m.step.as_deref())
                    .and_then(|step| grants::restore_step_index(step, part));
                match failed_at {
                    Some(k) => {
                        restored.extend(part[..k].iter().map(|s| s.account.label()));
                        failures.push(format!(
                            "{}: {}",
                            part[k].account.label(),
                            crate::exit::message(&e)
                        ));
                        from += k + 1;
                    }
                    None => return Err(e),
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{}: {} account(s) not restored exactly: {}",
            host.name(),
            failures.len(),
            failures.join(" | ")
        );
    }
    Ok(restored)
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Take the application accounts' rights away (per `method`).
pub struct BlockAccounts {
    host: String,
    method: BlockMethod,
    selection: Selection,
    stmts: Vec<String>,
}

impl BlockAccounts {
    pub fn new(host: &str, method: BlockMethod, selection: Selection) -> BlockAccounts {
        BlockAccounts {
            host: host.to_string(),
            method,
            selection,
            stmts: Vec::new(),
        }
    }
}

impl Step for BlockAccounts {
    fn id(&self) -> &'static str {
        "block-accounts"
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        match self.method {
            BlockMethod::Revoke => {
                "save grants, then revoke them from the application accounts".into()
            }
            BlockMethod::AccountLock => "lock the application accounts".into(),
            BlockMethod::ReadOnlyOnly => {
                "leave accounts as they are (block_method = read_only_only)".into()
            }
        }
    }

    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        if ctx.app.snapshots.is_empty() && ctx.app.accounts.is_empty() {
            let loaded = load(ctx.host(&self.host)?, &self.selection)?;
            ctx.app.accounts = loaded.accounts;
            ctx.app.snapshots = loaded.snapshots;
        }
        let flavor = ctx.host(&self.host)?.info()?.flavor;
        let mut s = Script::new(Duration::from_secs(1));
        grants::add_block(&mut s, self.method, flavor, &ctx.app.snapshots);
        self.stmts = s.statements().split_off(2);
        if self.method == BlockMethod::ReadOnlyOnly {
            return Ok(None);
        }
        Ok(Some(Undo::Grants {
            host: self.host.clone(),
            method: self.method,
            snapshots: ctx.app.snapshots.clone(),
        }))
    }

    fn statements(&self, _ctx: &Ctx) -> Vec<String> {
        let mut v = vec!["SET SESSION sql_log_bin = 0;".to_string()];
        v.extend(self.stmts.iter().cloned());
        v
    }

    fn apply(&mut self, ctx: &mut Ctx, journal: &mut Journal) -> Result<Option<String>> {
        journal.note_lazy("block_started_ms", unix_ms().into())?;
        let accounts = ctx.app.accounts.clone();
        let admin = self.selection.admin_user.clone();
        let host = ctx.host(&self.host)?;
        let mut s = Script::new(host.spec.settings.step_timeout).without_binlog();
        for st in &self.stmts {
            s.exec("block accounts", st);
        }
        s.query(
            "watermark",
            "SELECT MAX(ID) AS id FROM information_schema.PROCESSLIST",
        );
        sessions::add_query(&mut s, "sessions", &accounts, &admin);
        let r = host.run(&s)?;
        ctx.app.watermark = r
            .set("watermark")
            .records()
            .next()
            .map(|r| r.num("id") as u64)
            .unwrap_or(0);
        ctx.app.remaining = sessions::parse(&r, "sessions");
        if self.method != BlockMethod::ReadOnlyOnly {
            ctx.report.accounts_changed = ctx
                .app
                .snapshots
                .iter()
                .filter(|s| self.method == BlockMethod::Revoke || !s.locked)
                .map(|s| format!("{} ({:?})", s.account.label(), self.method))
                .collect();
        }
        Ok(Some(format!(
            "{} account(s), {} application session(s) open",
            ctx.report.accounts_changed.len(),
            ctx.app.remaining.len()
        )))
    }
}
