//! The application's accounts on one host: which they are (one definition
//! for `check`, preflight and stop), their exact grants, and giving them
//! back. Blocking and giving back run in sessions with `sql_log_bin = 0`,
//! so replicas and the new master keep their grants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cluster::{Host, HostSpec};
use crate::config::helper::BlockMethod;
use crate::grants::{self, digest, Account, Digest, Selection, Snapshot};
use crate::listing::Planned;
use crate::mysql::{Flavor, Script, ServerInfo};
use crate::setup::Setup;

/// Who counts as an application account on the host `spec` describes: all
/// accounts but the MHA admin (as MHA logs in there), the replication
/// account, root and the server's own, narrowed by that host's
/// `exclude_accounts` / `include_accounts`.
pub fn selection(setup: &Setup, spec: &HostSpec) -> Selection {
    Selection {
        admin_user: spec.access.user.clone(),
        repl_user: spec
            .server
            .repl_user
            .clone()
            .or_else(|| setup.mha.default.get("repl_user").cloned()),
        exclude: spec.settings.exclude_accounts.clone(),
        include: spec.settings.include_accounts.clone(),
    }
}

/// The application accounts of a host, as they are now.
#[derive(Debug, Clone, Default)]
pub struct AppAccounts {
    pub accounts: Vec<Account>,
    pub snapshots: Vec<Snapshot>,
    /// Roles granted to application accounts that our account cannot
    /// revoke (it lacks their ADMIN OPTION); the revoke would fail.
    pub roles_without_admin: Vec<String>,
    /// The grants of every role the accounts hold, directly or through
    /// other roles, by role name as the server prints it.
    pub role_grants: BTreeMap<String, Vec<String>>,
    /// The grant tables' digest, read before and after the snapshots (None
    /// if it changed meanwhile or the server has no grant tables we know).
    pub digest: Option<Digest>,
}

impl AppAccounts {
    /// Accounts that may write despite read_only (SUPER or the server's
    /// bypass privilege, held directly or through a role).
    pub fn bypassing_read_only(&self, bypass: &[&str]) -> Vec<String> {
        self.snapshots
            .iter()
            .filter(|s| {
                s.bypasses_read_only(bypass)
                    || held_roles(s, &self.role_grants)
                        .iter()
                        .any(|r| grants::lines_bypass_read_only(&self.role_grants[r], bypass))
            })
            .map(|s| s.account.label())
            .collect()
    }
}

/// Every role `s` holds, through any chain of roles.
fn held_roles(s: &Snapshot, role_grants: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = s.roles().into_iter().map(|r| r.role).collect();
    while let Some(r) = todo.pop() {
        if !seen.insert(r.clone()) {
            continue;
        }
        if let Some(lines) = role_grants.get(&r) {
            todo.extend(grants::roles_in(lines));
        }
    }
    seen.retain(|r| role_grants.contains_key(r));
    seen
}

/// Whether the server keeps default roles in `mysql.default_roles` (MySQL
/// 8.0+), outside `SHOW GRANTS`.
pub fn mysql_roles(info: &crate::mysql::ServerInfo) -> bool {
    info.flavor == Flavor::MySql && info.has_roles()
}

/// Read the application accounts of `host`, their snapshots, the grants of
/// the roles they hold and the grant tables' digest.
pub fn load(host: &mut Host, selection: &Selection) -> Result<AppAccounts> {
    let info = host.info()?.clone();
    let mut s = Script::new(host.spec.settings.step_timeout);
    grants::add_account_query(&mut s, info.flavor, info.has_roles());
    digest::add_columns_query(&mut s);
    let r = host.run(&s).context("listing accounts")?;
    let accounts = grants::select(&r, selection);
    let expr = digest::expression(&r, &selection.digest_skip());
    let mut s = Script::new(host.spec.settings.step_timeout);
    if let Some(e) = &expr {
        digest::add_query(&mut s, "digest_before", e);
    }
    grants::add_snapshot_queries(&mut s, info.flavor, &accounts, mysql_roles(&info));
    if let Some(e) = &expr {
        digest::add_query(&mut s, "digest_after", e);
    }
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
    let role_grants = load_role_grants(host, &snapshots)?;
    Ok(AppAccounts {
        accounts,
        snapshots,
        roles_without_admin,
        role_grants,
        digest: steady_digest(&r, expr),
    })
}

/// The digest, if it read the same before and after the snapshots (a
/// change between the two reads could be half in the snapshots).
fn steady_digest(r: &crate::mysql::Results, expr: Option<String>) -> Option<Digest> {
    let before = digest::value(r, "digest_before")?;
    if digest::value(r, "digest_after").as_ref() != Some(&before) {
        log::info!("grants changed while they were read; the block will read them again");
        return None;
    }
    Some(Digest {
        expr: expr?,
        value: before,
    })
}

/// `SHOW GRANTS` of every role the snapshots hold, following roles granted
/// to roles (a few rounds at most; each round is one script).
fn load_role_grants(host: &mut Host, snaps: &[Snapshot]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut todo: BTreeSet<String> = grants::roles_needed(snaps);
    for _round in 0..8 {
        todo.retain(|r| !out.contains_key(r));
        if todo.is_empty() {
            break;
        }
        let names: Vec<String> = todo.iter().cloned().collect();
        let mut s = Script::new(host.spec.settings.step_timeout);
        for (i, role) in names.iter().enumerate() {
            s.query(&format!("role:{i}"), &format!("SHOW GRANTS FOR {role}"));
        }
        let r = host.run(&s).context("reading the grants of roles")?;
        todo.clear();
        for (i, role) in names.into_iter().enumerate() {
            let lines = grants::grant_lines(&r, &format!("role:{i}"));
            todo.extend(grants::roles_in(&lines));
            out.insert(role, lines);
        }
    }
    Ok(out)
}

/// Give the accounts back what `snaps` says and prove it: first all at
/// once (grants shared by many accounts in one statement), proven by the
/// grant tables' digest when there is one (equal to the one the snapshots
/// were taken with: every row is back), else by reading `SHOW GRANTS` of
/// every account; if that fails or reads back differently, account by
/// account with every saved line replayed verbatim, where an account that
/// fails does not stop the others. Every failure is reported at the end.
/// Returns the accounts restored.
///
/// MySQL refuses GRANT under `super_read_only` even to root: where it is
/// on, it is lifted for the restore (`read_only` stays on, so only accounts
/// that write through it could write meanwhile) and set again after, also
/// when the restore fails.
pub fn restore(
    host: &mut Host,
    method: BlockMethod,
    snaps: &[Snapshot],
    digest: Option<&Digest>,
    timeout: Duration,
) -> Result<Vec<String>> {
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = match &host.info {
        Some(i) => i.dialect(),
        None => host.refresh_info()?.dialect(),
    };
    let lifted = if dialect.super_read_only_blocks_grants() {
        lift_super_read_only(host, timeout)?
    } else {
        false
    };
    let restored = restore_grants(host, method, snaps, digest, timeout);
    if lifted {
        if let Err(e) = host.run_with(&set_again_script(timeout), timeout) {
            let put_back = format!(
                "{}: super_read_only was lifted to give grants back and could not be set again \
                 ({}); read_only is still on; run SET GLOBAL super_read_only = 1 there",
                host.name(),
                crate::exit::message(&e)
            );
            return Err(match restored {
                Ok(_) => anyhow::anyhow!(put_back),
                Err(r) => r.context(put_back),
            });
        }
    }
    restored
}

/// What [`restore`] sends to `host`, for a plan.
pub fn restore_plan(
    host: &str,
    info: Option<&ServerInfo>,
    method: BlockMethod,
    snaps: &[Snapshot],
    digest: Option<&Digest>,
    timeout: Duration,
) -> Vec<Planned> {
    if snaps.is_empty() {
        return Vec::new();
    }
    let lifts = info.is_some_and(|i| i.dialect().super_read_only_blocks_grants());
    let mut v = Vec::new();
    if lifts {
        v.push(Planned::once(host, &lift_script(timeout)));
    }
    v.push(Planned::once(
        host,
        &grouped_script(method, snaps, digest, timeout),
    ));
    if digest.is_some() {
        v.push(Planned::repeated(
            host,
            &readback_script(snaps, timeout),
            "only if the digest differs: every account's grants read back",
        ));
    }
    v.push(Planned::repeated(
        host,
        &each_script(method, snaps, timeout),
        "only if the grouped restore fails or reads back differently: account by account, \
         again from the account after each one that fails",
    ));
    if lifts {
        v.push(Planned::repeated(
            host,
            &set_again_script(timeout),
            "only if super_read_only was on",
        ));
    }
    v
}

/// Read super_read_only, then turn it off (a no-op where it was off).
fn lift_script(timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("sro", "SELECT @@GLOBAL.super_read_only AS sro");
    s.exec(
        "lift super_read_only (read_only stays on)",
        "SET GLOBAL super_read_only = 0",
    );
    s
}

fn set_again_script(timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.exec(
        "set super_read_only again",
        "SET GLOBAL super_read_only = 1",
    );
    s
}

/// Every account's grants given back at once, then the digest read (or,
/// without one, every account's grants read back).
fn grouped_script(
    method: BlockMethod,
    snaps: &[Snapshot],
    digest: Option<&Digest>,
    timeout: Duration,
) -> Script {
    let mut s = Script::new(timeout).without_binlog();
    match digest {
        Some(d) => {
            grants::add_give_back(&mut s, method, snaps);
            digest::add_query(&mut s, AFTER_DIGEST, &d.expr);
        }
        None => grants::add_restore(&mut s, method, snaps),
    }
    s
}

/// Result set of the digest read after the grouped restore.
const AFTER_DIGEST: &str = "after_digest";

fn readback_script(snaps: &[Snapshot], timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    grants::add_readback(&mut s, snaps);
    s
}

/// Each account's saved lines replayed verbatim, then read back.
fn each_script(method: BlockMethod, snaps: &[Snapshot], timeout: Duration) -> Script {
    let mut s = Script::new(timeout).without_binlog();
    grants::add_restore_each(&mut s, method, snaps);
    s
}

/// Turn super_read_only off where it is on, in one script; whether it was.
fn lift_super_read_only(host: &mut Host, timeout: Duration) -> Result<bool> {
    let r = host
        .run_with(&lift_script(timeout), timeout)
        .with_context(|| {
            format!(
                "{}: cannot lift super_read_only to give grants back",
                host.name()
            )
        })?;
    let on = r.set("sro").records().next().is_some_and(|x| x.flag("sro"));
    if on {
        log::info!(
            "{}: super_read_only lifted while grants are given back (read_only stays on)",
            host.name()
        );
    }
    Ok(on)
}

fn restore_grants(
    host: &mut Host,
    method: BlockMethod,
    snaps: &[Snapshot],
    digest: Option<&Digest>,
    timeout: Duration,
) -> Result<Vec<String>> {
    let all = || snaps.iter().map(|s| s.account.label()).collect();
    match host.run_with(&grouped_script(method, snaps, digest, timeout), timeout) {
        Ok(r) => {
            let differences = match digest {
                Some(d) if digest::value(&r, AFTER_DIGEST).as_ref() == Some(&d.value) => {
                    log::info!(
                        "{}: {} account(s) given back, proven by the grant tables' digest",
                        host.name(),
                        snaps.len()
                    );
                    return Ok(all());
                }
                Some(_) => {
                    log::info!(
                        "{}: the grant tables' digest differs after the restore (other grants may \
                         have changed meanwhile); reading every account's grants back",
                        host.name()
                    );
                    let r = host.run_with(&readback_script(snaps, timeout), timeout)?;
                    grants::differences(&r, snaps)
                }
                None => grants::differences(&r, snaps),
            };
            if differences.is_empty() {
                return Ok(all());
            }
            log::warn!(
                "{}: grants differ after the grouped restore ({}); replaying account by account",
                host.name(),
                differences.join(" | ")
            );
        }
        Err(e) if is_timeout(&e) => return Err(e),
        Err(e) => log::warn!(
            "{}: grouped restore failed ({}); replaying account by account",
            host.name(),
            crate::exit::message(&e)
        ),
    }
    restore_each(host, method, snaps, timeout)
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::mysql::Error>()
        .is_some_and(|m| matches!(m.kind, crate::mysql::ErrorKind::Timeout { .. }))
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
        match host.run_with(&each_script(method, part, timeout), timeout) {
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

/// Compare the application grants on `host` with `expected` (read only):
/// equal if the grant tables there have `digest` (one query), else account
/// by account. Returns one line per difference; accounts missing there are
/// named.
pub fn compare(
    host: &mut Host,
    expected: &[Snapshot],
    digest: Option<&Digest>,
    timeout: Duration,
) -> Result<Vec<String>> {
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(d) = digest {
        let mut s = Script::new(timeout);
        digest::add_query(&mut s, "digest", &d.expr);
        match host.run_with(&s, timeout) {
            Ok(r) if digest::value(&r, "digest").as_ref() == Some(&d.value) => {
                return Ok(Vec::new())
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(e),
            Err(e) => log::info!(
                "{}: no grants digest ({}); comparing account by account",
                host.name(),
                crate::exit::message(&e)
            ),
        }
    }
    let mut s = Script::new(timeout);
    s.query("users", "SELECT User AS user, Host AS host FROM mysql.user");
    let r = host.run_with(&s, timeout)?;
    let users: Vec<(String, String)> = r
        .set("users")
        .records()
        .map(|u| (u.text("user"), u.text("host")))
        .collect();
    let (present, missing): (Vec<&Snapshot>, Vec<&Snapshot>) = expected
        .iter()
        .partition(|s| users.contains(&(s.account.user.clone(), s.account.host.clone())));
    let mut out: Vec<String> = missing
        .iter()
        .map(|m| format!("application account {} does not exist", m.account.label()))
        .collect();
    if !present.is_empty() {
        let present: Vec<Snapshot> = present.into_iter().cloned().collect();
        let mut s = Script::new(timeout);
        grants::add_readback(&mut s, &present);
        let r = host.run_with(&s, timeout)?;
        out.extend(
            grants::differences(&r, &present)
                .into_iter()
                .map(|d| format!("grants differ: {d}")),
        );
    }
    Ok(out)
}
