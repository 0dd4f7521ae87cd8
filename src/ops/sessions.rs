//! The application's sessions on a host: list them, kill them, and prove
//! the fence holds.
//!
//! Never touched: our own session, replication threads (`Binlog Dump`,
//! `Binlog Dump GTID`), `system user`, `event_scheduler` and the MHA
//! account, because only sessions of application users are selected.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::Host;
use crate::grants::{self, Account};
use crate::mysql::{Flavor, Results, Script};
use crate::quote::sql_string;
use crate::report::Session;

/// Add a query named `name` listing application sessions.
pub fn add_query(script: &mut Script, name: &str, accounts: &[Account], admin_user: &str) {
    script.query(
        name,
        &format!(
            "SELECT ID AS id, USER AS user, HOST AS host, DB AS db, DB IS NULL AS db_null, \
             COMMAND AS command, TIME AS time, STATE AS state \
             FROM information_schema.PROCESSLIST \
             WHERE USER IN {} AND ID <> CONNECTION_ID() AND USER <> {} \
             AND USER NOT IN ('system user', 'event_scheduler') \
             AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon') ORDER BY ID",
            grants::user_list(accounts),
            sql_string(admin_user)
        ),
    );
}

/// The query that gives the highest connection id now (result set `name`).
pub fn add_watermark(script: &mut Script, name: &str) {
    script.query(
        name,
        "SELECT MAX(ID) AS id FROM information_schema.PROCESSLIST",
    );
}

pub fn watermark(r: &Results, name: &str) -> u64 {
    r.set(name)
        .records()
        .next()
        .map(|r| r.num("id") as u64)
        .unwrap_or(0)
}

pub fn parse(r: &Results, name: &str) -> Vec<Session> {
    r.set(name)
        .records()
        .map(|rec| Session {
            id: rec.num("id") as u64,
            user: rec.text("user"),
            host: rec.text("host"),
            db: (!rec.flag("db_null")).then(|| rec.text("db")),
            command: rec.text("command"),
            time: rec.num("time"),
            state: rec.get("state").map(str::to_string),
        })
        .collect()
}

/// The application sessions on `host` now.
pub fn list(host: &mut Host, accounts: &[Account], admin: &str) -> Result<Vec<Session>> {
    let mut s = Script::new(host.spec.settings.step_timeout);
    add_query(&mut s, "sessions", accounts, admin);
    Ok(parse(&host.run(&s)?, "sessions"))
}

/// MariaDB kills by user name (no race with sessions ending on their own);
/// MySQL, which has no `KILL USER`, by id.
pub fn kill_statements(flavor: Flavor, accounts: &[Account], left: &[Session]) -> Vec<String> {
    match flavor {
        Flavor::MariaDb => {
            let mut users: Vec<&str> = left.iter().map(|s| s.user.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            users
                .into_iter()
                .filter(|u| accounts.iter().any(|a| a.user == *u))
                .map(|u| format!("KILL USER {}", sql_string(u)))
                .collect()
        }
        Flavor::MySql => left
            .iter()
            .map(|s| format!("KILL CONNECTION {}", s.id))
            .collect(),
    }
}

/// Kill `left` (up to a few rounds while sessions remain). Returns the
/// sessions killed and those still there.
pub fn kill(
    host: &mut Host,
    accounts: &[Account],
    admin: &str,
    mut left: Vec<Session>,
) -> Result<(Vec<Session>, Vec<Session>)> {
    let mut killed = Vec::new();
    for _attempt in 0..5 {
        if left.is_empty() {
            break;
        }
        let flavor = host.info()?.flavor;
        let mut s = Script::new(host.spec.settings.step_timeout);
        for k in kill_statements(flavor, accounts, &left) {
            s.exec("kill session", &k);
        }
        add_query(&mut s, "sessions", accounts, admin);
        let still = match host.run(&s) {
            Ok(r) => parse(&r, "sessions"),
            Err(e) => {
                // A session that ended by itself between poll and KILL
                // gives "Unknown thread id" (1094): look again.
                let benign = e
                    .downcast_ref::<crate::mysql::Error>()
                    .is_some_and(|m| m.kind == crate::mysql::ErrorKind::Statement { code: 1094 });
                if !benign {
                    return Err(e);
                }
                list(host, accounts, admin)?
            }
        };
        killed.extend(
            left.into_iter()
                .filter(|l| !still.iter().any(|s| s.id == l.id)),
        );
        left = still;
    }
    Ok((killed, left))
}

/// The queries [`check_fence`] reads.
pub fn fence_script(accounts: &[Account], admin: &str, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("ro", crate::ops::read_only::READ);
    add_query(&mut s, "sessions", accounts, admin);
    s
}

/// Application sessions in `r`'s result set `sessions` that were there
/// before the block (id up to `watermark`).
pub fn pre_block(r: &Results, watermark: u64) -> Vec<Session> {
    parse(r, "sessions")
        .into_iter()
        .filter(|s| s.id <= watermark)
        .collect()
}

/// The fence holds when read_only reads 1 (result set `ro`) and no
/// application session from before the block (id up to `watermark`) is
/// left (result set `sessions`). Returns the number of newer sessions:
/// they logged in without write rights.
pub fn check_fence(host: &str, r: &Results, watermark: u64) -> Result<usize> {
    let ro = crate::ops::read_only::read_back(r, "ro").unwrap_or(false);
    let sessions = parse(r, "sessions");
    let old: Vec<&Session> = sessions.iter().filter(|s| s.id <= watermark).collect();
    if !ro {
        bail!("{host}: read_only is off after it was set");
    }
    if !old.is_empty() {
        bail!(
            "{host}: {} application session(s) from before the block are still connected (ids {:?})",
            old.len(),
            old.iter().map(|s| s.id).collect::<Vec<_>>()
        );
    }
    Ok(sessions.len())
}
