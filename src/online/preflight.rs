//! Read-only checks before the first write of an online switch. Any
//! finding here aborts with nothing changed and says why: replication from
//! the old master to the new one broken or late, another host writable,
//! long or idle-open transactions on the old master, metadata-lock waits,
//! application accounts the chosen block method could not stop, and a
//! writer VIP the SSH user could not move (so the switch never blocks
//! writes only to fail at the VIP).

use anyhow::{bail, Context, Result};

use crate::cluster::{self, Host};
use crate::config::helper::BlockMethod;
use crate::grants::Selection;
use crate::mysql::Script;
use crate::ops;
use crate::quote::sql_string;
use crate::steps::Ctx;

/// Replicas further behind than this are refused (MHA's own limit too).
const MAX_LAG_SECS: u64 = 30;

/// Read every host (in parallel) and check the two masters.
pub fn run(ctx: &mut Ctx, orig: &str, new: &str, selection: &Selection) -> Result<()> {
    {
        let mut refs: Vec<&mut Host> = ctx.hosts.iter_mut().collect();
        for r in cluster::parallel(&mut refs, |h| h.refresh_info().map(|_| ())) {
            r?;
        }
    }
    let writable: Vec<String> = ctx
        .hosts
        .iter()
        .filter(|h| h.spec.name != orig && h.info.as_ref().is_some_and(|i| !i.read_only))
        .map(|h| h.spec.name.clone())
        .collect();
    if !writable.is_empty() {
        bail!(
            "{} writable (read_only=0) besides the master {orig}; a switch must start from one \
             writable host: set read_only=1 there (or run `mha-helper recover` if a switch was \
             interrupted), then retry",
            writable.join(", ")
        );
    }
    let orig_ip = ctx.host(orig)?.spec.server.ip.clone();
    check_new_master(ctx.host(new)?, orig, orig_ip)?;
    match (ctx.find(new), ctx.find(orig)) {
        (Some(n), Some(o)) => check_errant(n, o)?,
        _ => bail!("{new}/{orig}: no open connection"),
    }
    let method = ctx.host(orig)?.spec.settings.block_method;
    check_old_master(ctx.host(orig)?)?;
    check_vip(ctx, orig, new)?;
    let loaded = ops::accounts::load(ctx.host(orig)?, selection)
        .with_context(|| format!("{orig}: reading application accounts"))?;
    if method == BlockMethod::Revoke && !loaded.roles_without_admin.is_empty() {
        bail!(
            "{orig}: the MHA account cannot revoke role(s) {} from application accounts (it needs \
             their ADMIN OPTION); run GRANT <role> TO <mha account> WITH ADMIN OPTION, or use \
             block_method = account_lock",
            loaded.roles_without_admin.join(", ")
        );
    }
    let bypass = ctx.host(orig)?.info()?.dialect().read_only_bypass();
    let privileged = loaded.bypassing_read_only(bypass);
    let bypass = bypass.join("/");
    if !privileged.is_empty() {
        if method == BlockMethod::ReadOnlyOnly {
            bail!(
                "{orig}: application account(s) {} hold {bypass} (directly or through a role), \
                 so read_only would not stop them and block_method = read_only_only cannot block them; \
                 use revoke or account_lock, or add them to exclude_accounts if they are not the \
                 application's",
                privileged.join(", ")
            );
        }
        ctx.report.warn(format!(
            "{orig}: application account(s) {} hold {bypass} (read_only alone would not stop them); \
             block_method {method:?} blocks them",
            privileged.join(", ")
        ));
    }
    log::info!(
        "{orig}: {} application account(s) to block: {}",
        loaded.accounts.len(),
        loaded
            .accounts
            .iter()
            .take(10)
            .map(|a| a.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ctx.app.accounts = loaded.accounts;
    ctx.app.snapshots = loaded.snapshots;
    ctx.app.digest = loaded.digest;
    Ok(())
}

/// With a writer VIP: it is on the old master, and both masters can move
/// it (interface, rights for `ip` and the announcement), proven without
/// changing anything, before the block.
fn check_vip(ctx: &mut Ctx, orig: &str, new: &str) -> Result<()> {
    let mut refs: Vec<&mut Host> = ctx
        .hosts
        .iter_mut()
        .filter(|h| h.spec.name == orig || h.spec.name == new)
        .collect();
    let results = cluster::parallel(&mut refs, |h| {
        let Some(spec) = ops::vip::spec(h)? else {
            return Ok(None);
        };
        let t = h.spec.settings.step_timeout;
        ops::vip::check_rights(h.conn.as_mut(), &spec, t)?;
        Ok(Some(ops::vip::present(h.conn.as_mut(), &spec, t)?))
    });
    for (h, r) in refs.iter().zip(results) {
        let here = r?;
        if h.spec.name == orig && here == Some(false) {
            bail!(
                "{orig}: the writer VIP is not on the master; put it there (or fix writer_vip / \
                 cluster_interface) before switching"
            );
        }
        if h.spec.name == new && here == Some(true) {
            bail!("{new}: already holds the writer VIP while {orig} is the master; take it off {new} first");
        }
    }
    Ok(())
}

/// With GTID on both: the new master must hold no transaction of its own
/// (or of any server but the old master) that the old master lacks, or the
/// old master, repointed to it, would stop on them.
fn check_errant(new: &Host, orig: &Host) -> Result<()> {
    use crate::mysql::gtid::GtidSet;
    let (n, o) = (new.info()?, orig.info()?);
    if !(n.gtid_mode && o.gtid_mode) {
        return Ok(());
    }
    let parse = |h: &Host, s: &str| {
        GtidSet::parse(s).map_err(|e| anyhow::anyhow!("{}: gtid_executed: {e}", h.name()))
    };
    let errant = parse(new, &n.gtid_executed)?
        .minus(&parse(orig, &o.gtid_executed)?)
        .without_source(&o.server_uuid);
    if !errant.is_empty() {
        bail!(
            "{}: has {} transaction(s) {} never had (errant GTIDs {errant}); {} would stop \
             replicating from it. Find out where they came from; inject empty transactions for \
             them on {} if they must stay, then retry",
            new.name(),
            errant.count(),
            orig.name(),
            orig.name(),
            orig.name()
        );
    }
    Ok(())
}

fn check_new_master(h: &mut Host, orig: &str, orig_ip: String) -> Result<()> {
    let name = h.name().to_string();
    let info = h.info()?;
    let Some(rep) = &info.replica else {
        bail!("{name}: is not a replica, so it cannot take over from {orig}; check the MHA config and the replica status there");
    };
    if rep.master_host != orig && rep.master_host != orig_ip {
        bail!(
            "{name}: replicates from {}, not from {orig}; refusing to switch",
            rep.master_host
        );
    }
    if !rep.healthy() {
        bail!(
            "{name}: replication from {orig} is not running (IO {}, SQL {}{}); fix it before switching",
            rep.io_running,
            rep.sql_running,
            if rep.last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {}", rep.last_error)
            }
        );
    }
    match rep.seconds_behind {
        Some(lag) if lag <= MAX_LAG_SECS => Ok(()),
        Some(lag) => {
            bail!("{name}: {lag} s behind {orig} (limit {MAX_LAG_SECS} s); wait for it to catch up")
        }
        None => bail!("{name}: replication lag unknown (Seconds_Behind_Master/Source is NULL)"),
    }
}

/// Transactions open too long (running or idle) and metadata-lock waits.
fn check_old_master(h: &mut Host) -> Result<()> {
    let name = h.name().to_string();
    let limit = h.spec.settings.long_transaction_limit.as_secs();
    let admin = h.spec.access.user.clone();
    let mut s = Script::new(h.spec.settings.step_timeout);
    s.query(
        "trx",
        &format!(
            "SELECT t.trx_mysql_thread_id AS id, p.USER AS user, p.HOST AS host, p.COMMAND AS command, \
             TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) AS age, p.INFO IS NULL AS idle \
             FROM information_schema.INNODB_TRX t \
             LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_started <= NOW() - INTERVAL {limit} SECOND \
             AND t.trx_mysql_thread_id <> CONNECTION_ID() AND IFNULL(p.USER, '') <> {}",
            sql_string(&admin)
        ),
    );
    s.query(
        "mdl",
        "SELECT ID AS id, USER AS user, TIME AS time, STATE AS state FROM information_schema.PROCESSLIST \
         WHERE STATE LIKE 'Waiting for%metadata lock%'",
    );
    let r = h
        .run(&s)
        .with_context(|| format!("{name}: preflight checks"))?;
    let trx: Vec<String> = r
        .set("trx")
        .records()
        .map(|t| {
            format!(
                "id {} ({}@{}) open {} s{}",
                t.text("id"),
                t.text("user"),
                t.text("host"),
                t.text("age"),
                if t.flag("idle") {
                    ", idle in transaction"
                } else {
                    ", running"
                }
            )
        })
        .collect();
    if !trx.is_empty() {
        bail!(
            "{name}: transaction(s) open longer than long_transaction_limit ({limit} s): {}; \
             they would be killed and rolled back — let them finish or end them, then retry",
            trx.join("; ")
        );
    }
    let mdl: Vec<String> = r
        .set("mdl")
        .records()
        .map(|m| {
            format!(
                "id {} ({}) waiting {} s: {}",
                m.text("id"),
                m.text("user"),
                m.text("time"),
                m.text("state")
            )
        })
        .collect();
    if !mdl.is_empty() {
        bail!(
            "{name}: session(s) waiting for metadata locks: {}; a DDL is stuck, resolve it first",
            mdl.join("; ")
        );
    }
    Ok(())
}
