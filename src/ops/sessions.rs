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
use crate::listing::{at_run, Planned};
use crate::mysql::{Flavor, Results, Script};
use crate::quote::sql_string;
use crate::report::Session;

/// Add a query named `name` listing application sessions.
pub fn add_query(script: &mut Script, name: &str, accounts: &[Account], admin_user: &str) {
    script.query(
        name,
        &format!(
            "SELECT ID AS id, USER AS user, HOST AS host, DB AS db, DB IS NULL AS db_null, \
             COMMAND AS command, TIME AS time, STATE AS state, \
             COMMAND = 'Sleep' AND ID NOT IN \
             (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX \
             WHERE trx_mysql_thread_id IS NOT NULL) AS idle \
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
            idle: rec.flag("idle"),
        })
        .collect()
}

/// The script [`list`] sends.
pub fn list_script(accounts: &[Account], admin: &str, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    add_query(&mut s, "sessions", accounts, admin);
    s
}

/// The application sessions on `host` now.
pub fn list(host: &mut Host, accounts: &[Account], admin: &str) -> Result<Vec<Session>> {
    let s = list_script(accounts, admin, host.spec.settings.step_timeout);
    Ok(parse(&host.run(&s)?, "sessions"))
}

/// The statement that kills `who`: MariaDB kills by user name (no race
/// with sessions ending on their own); MySQL, which has no `KILL USER`, by
/// connection id.
pub fn kill_statement(flavor: Flavor, who: &str) -> String {
    match flavor {
        Flavor::MariaDb => format!("KILL USER {}", sql_string(who)),
        Flavor::MySql => format!("KILL CONNECTION {who}"),
    }
}

/// The kill statements for the sessions `left` (see [`kill_statement`]).
pub fn kill_statements(flavor: Flavor, accounts: &[Account], left: &[Session]) -> Vec<String> {
    let who: Vec<String> = match flavor {
        Flavor::MariaDb => {
            let mut users: Vec<&str> = left.iter().map(|s| s.user.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            users
                .into_iter()
                .filter(|u| accounts.iter().any(|a| a.user == *u))
                .map(str::to_string)
                .collect()
        }
        Flavor::MySql => left.iter().map(|s| s.id.to_string()).collect(),
    };
    who.iter().map(|w| kill_statement(flavor, w)).collect()
}

/// The script [`end_idle`] sends: a kill by id for each of `idle` (the
/// session, not every session of its user), then the sessions listed again.
pub fn end_idle_script(
    accounts: &[Account],
    admin: &str,
    idle: &[String],
    timeout: Duration,
) -> Script {
    let mut s = Script::new(timeout);
    for id in idle {
        s.exec("end idle session", &format!("KILL CONNECTION {id}"));
    }
    add_query(&mut s, "sessions", accounts, admin);
    s
}

/// End the sessions `idle` (running no statement, holding no open
/// transaction: nothing of theirs is in flight) in one round trip. Returns
/// those ended and the application's sessions as they are now. A session
/// that began a statement since it was listed is ended all the same, as it
/// would be at the grace period's end; one that left by itself in between
/// ("Unknown thread id") only costs a second listing.
pub fn end_idle(
    host: &mut Host,
    accounts: &[Account],
    admin: &str,
    idle: Vec<Session>,
) -> Result<(Vec<Session>, Vec<Session>)> {
    let ids: Vec<String> = idle.iter().map(|s| s.id.to_string()).collect();
    let s = end_idle_script(accounts, admin, &ids, host.spec.settings.step_timeout);
    let now = match host.run(&s) {
        Ok(r) => parse(&r, "sessions"),
        Err(e) if unknown_thread(&e) => list(host, accounts, admin)?,
        Err(e) => return Err(e),
    };
    let ended = idle
        .into_iter()
        .filter(|i| !now.iter().any(|s| s.id == i.id && s.idle))
        .collect();
    Ok((ended, now))
}

/// "Unknown thread id" (1094): the session ended by itself before its KILL.
fn unknown_thread(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::mysql::Error>()
        .is_some_and(|m| m.kind == crate::mysql::ErrorKind::Statement { code: 1094 })
}

/// How many rounds [`kill`] makes at most while sessions remain.
pub const KILL_ROUNDS: usize = 5;

/// One round of [`kill`]: the kills, then the sessions listed again.
fn kill_script(
    flavor: Flavor,
    accounts: &[Account],
    admin: &str,
    left: &[Session],
    timeout: Duration,
) -> Script {
    let mut s = Script::new(timeout);
    for k in kill_statements(flavor, accounts, left) {
        s.exec("kill session", &k);
    }
    add_query(&mut s, "sessions", accounts, admin);
    s
}

/// What [`kill`] sends to `host`, for a plan: each round `when`, a kill per
/// session left (which are known only then); and the list alone after a
/// session ended by itself before its kill.
pub fn kill_plan(
    host: &str,
    flavor: Flavor,
    accounts: &[Account],
    admin: &str,
    timeout: Duration,
    when: &str,
) -> Vec<Planned> {
    let (who, each) = match flavor {
        Flavor::MariaDb => (
            at_run("user of a session left"),
            "per application user with a session left",
        ),
        Flavor::MySql => (at_run("id of a session left"), "per session left"),
    };
    let mut s = Script::new(timeout);
    s.exec("kill session", &kill_statement(flavor, &who));
    add_query(&mut s, "sessions", accounts, admin);
    vec![
        Planned::repeated(host, &s, when).each(&who, each),
        Planned::repeated(
            host,
            &list_script(accounts, admin, timeout),
            "listed again if a session ended by itself before its KILL",
        ),
    ]
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
    for _round in 0..KILL_ROUNDS {
        if left.is_empty() {
            break;
        }
        let flavor = host.info()?.flavor;
        let s = kill_script(
            flavor,
            accounts,
            admin,
            &left,
            host.spec.settings.step_timeout,
        );
        let still = match host.run(&s) {
            Ok(r) => parse(&r, "sessions"),
            // A session that ended by itself between poll and KILL: look
            // again.
            Err(e) if unknown_thread(&e) => list(host, accounts, admin)?,
            Err(e) => return Err(e),
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
