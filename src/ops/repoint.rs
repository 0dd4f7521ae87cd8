//! Pointing a host at the new master after a switch, as MHA does for each
//! replica (and for the old master with `--orig_master_is_new_slave`):
//! what is left to do when MHA died after the new master was opened.
//!
//! Only with a proof that the host has nothing the new master lacks, and
//! that it starts reading the new master's binary log exactly where its own
//! data ends:
//!
//! * MySQL with GTID on both: the host's replication is stopped, then
//!   `GTID_SUBTRACT(host's gtid_executed, new master's)` must be empty;
//!   auto-positioning then fetches whatever it still lacks.
//! * MariaDB, by binary log file and position (MHA cannot use MariaDB's
//!   GTID): the new master's position when it was opened (the journal's
//!   `binlog-at-writable`) is where the old master's last transaction
//!   ends in its log. A replica of the old master first waits until it has
//!   executed the old master's whole binary log (read-only since the fence,
//!   so it no longer moves); then its `gtid_current_pos` must equal
//!   `BINLOG_GTID_POS` of that position on the new master. MariaDB tracks
//!   GTIDs whatever the replication mode, so the equality proves the two
//!   positions hold the same transactions.
//! * MySQL without GTID: nothing proves it, so nothing is changed; the
//!   error says exactly what a person would run after checking it.
//!
//! A host whose proof fails gets its replication threads started again
//! (as they were) and is named with what it has that the new master lacks.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::Host;
use crate::exit::Refused;
use crate::listing::{at_run, Planned};
use crate::mysql::dialect::Dialect;
use crate::mysql::{Flavor, Script, ServerInfo};
use crate::quote::sql_string;

/// The new master as replicas must reach it: MHA's address and port of its
/// server block, and the replication account of the MHA configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSource {
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// Where in the new master's binary log a repointed host starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    /// GTID auto-positioning (MySQL).
    Auto,
    /// A file and position.
    Position { file: String, pos: u64 },
}

/// `file:pos` as the journal and `binlog_position` write it.
pub fn parse_position(text: &str) -> Option<(String, u64)> {
    let (file, pos) = text.rsplit_once(':')?;
    Some((file.to_string(), pos.parse().ok()?))
}

/// The statement that points a host of dialect `d` at `src` (sent), and
/// the same with the password hidden (shown).
pub fn change_sql(d: Dialect, src: &NewSource, from: &StartAt) -> (String, String) {
    let w = d.source_word();
    let head = |password: &str| {
        format!(
            "{} {w}_HOST = {}, {w}_PORT = {}, {w}_USER = {}, {w}_PASSWORD = {password}",
            d.change_source(),
            sql_string(&src.ip),
            src.port,
            sql_string(&src.user),
        )
    };
    let mut tail = match from {
        StartAt::Auto => format!(", {w}_AUTO_POSITION = 1"),
        StartAt::Position { file, pos } => {
            format!(", {w}_LOG_FILE = {}, {w}_LOG_POS = {pos}", sql_string(file))
        }
    };
    if d.flavor == Flavor::MariaDb {
        tail.push_str(", MASTER_USE_GTID = no");
    }
    if d.needs_public_key() {
        tail.push_str(&format!(", GET_{w}_PUBLIC_KEY = 1"));
    }
    (
        format!("{}{tail}", head(&sql_string(&src.password))),
        format!("{}{tail}", head("'<repl_password>'")),
    )
}

/// What one host needs: the new master, where the new master's log stood
/// when it was opened (for file/position), and the old master (whose
/// binary log end a replica of it must reach first).
#[derive(Debug, Clone)]
pub struct Repoint {
    pub host: String,
    pub src: NewSource,
    pub opened_at: Option<(String, u64)>,
    pub orig: String,
}

/// What the host's replication looks like before: whom it follows, and
/// whether its threads run.
fn before(info: &ServerInfo) -> (Option<String>, bool) {
    match &info.replica {
        Some(r) => (Some(r.master_host.clone()), r.healthy()),
        None => (None, false),
    }
}

/// Repoint `r.host` (one of `hosts`) at the new master; returns what was
/// done. A refusal (`Refused`) when the proof fails: the host is then as
/// it was.
pub fn repoint(hosts: &mut [Host], r: &Repoint, timeout: Duration) -> Result<String> {
    let (target, others) = super::read_only::split(hosts, &r.host)?;
    let mut new = None;
    let mut orig = None;
    for h in others {
        if h.name() == r.src.name {
            new = Some(h);
        } else if h.name() == r.orig {
            orig = Some(h);
        }
    }
    let new = new.ok_or_else(|| anyhow!("{}: no open connection", r.src.name))?;
    let info = target.refresh_info()?.clone();
    let new_info = new.refresh_info()?.clone();
    let (source, running) = before(&info);
    if on_new(source.as_deref(), r) {
        start(target, &info, timeout)?;
        return Ok(format!(
            "already pointed at {}; replication threads started",
            r.src.name
        ));
    }
    let from = match (info.flavor, new_info.flavor) {
        (Flavor::MySql, Flavor::MySql) if info.gtid_mode && new_info.gtid_mode => {
            prove_by_gtid_set(target, new, &info, running, timeout)?;
            StartAt::Auto
        }
        (Flavor::MariaDb, Flavor::MariaDb) => {
            let (file, pos) = r.opened_at.clone().ok_or_else(|| {
                anyhow!(
                    "{}: the journal has no binary log position of {} when it was opened; \
                     without it the place to start from cannot be proven",
                    r.host,
                    r.src.name
                )
            })?;
            let follows_orig = follows(source.as_deref(), orig.as_deref());
            prove_by_gtid_pos(
                target,
                new,
                orig.filter(|_| follows_orig),
                &info,
                (&file, pos),
                running,
                timeout,
            )?;
            StartAt::Position { file, pos }
        }
        _ => {
            let d = info.dialect();
            let (_, shown) = change_sql(
                d,
                &r.src,
                &StartAt::Position {
                    file: r
                        .opened_at
                        .as_ref()
                        .map_or("<file>".into(), |p| p.0.clone()),
                    pos: r.opened_at.as_ref().map_or(0, |p| p.1),
                },
            );
            return Err(anyhow!(
                "{host}: replicates by file and position without GTID, so where it stands in \
                 {new}'s binary log cannot be proven; after checking that {host} executed all of \
                 {orig}'s binary log (SELECT {wait}(<{orig}'s file>, <position>)), run on \
                 {host}: {stop}; {shown}; {startq}",
                host = r.host,
                new = r.src.name,
                orig = r.orig,
                wait = d.pos_wait(),
                stop = d.stop_replica(),
                startq = d.start_replica(),
            )
            .context(Refused));
        }
    };
    target
        .run_with(&change_script(&info, &r.src, &from, timeout), timeout)
        .with_context(|| format!("{}: pointing it at {}", r.host, r.src.name))?;
    running_within(target, timeout)?;
    Ok(match from {
        StartAt::Auto => format!("replicates from {} (GTID auto-position)", r.src.name),
        StartAt::Position { file, pos } => {
            format!("replicates from {} at {file}:{pos}", r.src.name)
        }
    })
}

/// Whether a replica of `source` already follows the new master.
fn on_new(source: Option<&str>, r: &Repoint) -> bool {
    source.is_some_and(|s| s == r.src.ip || s == r.src.name)
}

/// Whether a replica of `source` follows the old master `orig`.
fn follows(source: Option<&str>, orig: Option<&Host>) -> bool {
    source.is_some()
        && orig
            .is_some_and(|o| source == Some(o.spec.server.ip.as_str()) || source == Some(o.name()))
}

/// Start the replication threads again and wait until both run.
fn start(target: &mut Host, info: &ServerInfo, timeout: Duration) -> Result<()> {
    target.run_with(&start_script(info, timeout), timeout)?;
    running_within(target, timeout)
}

fn start_script(info: &ServerInfo, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.exec("start replication", info.dialect().start_replica());
    s
}

/// Point the host at the new master and start its replication.
fn change_script(info: &ServerInfo, src: &NewSource, from: &StartAt, timeout: Duration) -> Script {
    let (sent, shown) = change_sql(info.dialect(), src, from);
    let mut s = Script::new(timeout);
    s.exec_secret("repoint", &sent, &shown);
    s.exec("start replication", info.dialect().start_replica());
    s
}

/// The new master's executed GTID set.
fn gtid_script(timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("gtid", "SELECT @@GLOBAL.gtid_executed AS gtid");
    s
}

/// Stop the host's replication, then what it executed that `new_set` lacks.
fn errant_script(info: &ServerInfo, new_set: &str, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    if info.replica.is_some() {
        s.exec("stop replication", info.dialect().stop_replica());
    }
    s.query(
        "errant",
        &format!(
            "SELECT GTID_SUBTRACT(@@GLOBAL.gtid_executed, {}) AS errant",
            sql_string(new_set)
        ),
    );
    s
}

/// The GTID position at `file:pos` of the new master's binary log.
fn opened_at_script(file: &str, pos: u64, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query(
        "at",
        &format!("SELECT BINLOG_GTID_POS({}, {pos}) AS at", sql_string(file)),
    );
    s
}

/// The old master's binary log end.
fn end_script(orig: &ServerInfo, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    super::read_only::add_binlog_position(&mut s, orig, "end");
    s
}

/// Wait until the host executed the old master's log up to `end` (file,
/// position) when it is a replica of it, stop its replication, read its
/// GTID position.
fn stop_and_pos_script(info: &ServerInfo, end: Option<(&str, &str)>, timeout: Duration) -> Script {
    let d = info.dialect();
    let mut s = Script::new(timeout);
    if let Some((file, pos)) = end {
        let wait = (crate::mysql::server_limit(timeout).as_secs() / 2).max(1);
        // NULL (replication not running) or -1 (timed out) stop the
        // script: a scalar subquery of two rows is an error.
        s.query(
            "caught-up",
            &format!(
                "SELECT IF({}({}, {pos}, {wait}) >= 0, 1, (SELECT 1 UNION ALL SELECT 2)) AS caught_up",
                d.pos_wait(),
                sql_string(file),
            ),
        );
    }
    if info.replica.is_some() {
        s.exec("stop replication", d.stop_replica());
    }
    s.query("pos", "SELECT @@GLOBAL.gtid_current_pos AS pos");
    s
}

/// Put a host whose proof failed back as it was: threads running again
/// when they ran before.
fn restore(target: &mut Host, info: &ServerInfo, running: bool, timeout: Duration) {
    if running {
        if let Err(e) = start(target, info, timeout) {
            log::error!(
                "{}: starting its replication again failed: {e:#}",
                target.name()
            );
        }
    }
}

/// MySQL: stop the host's replication, then it must have executed nothing
/// the new master has not.
fn prove_by_gtid_set(
    target: &mut Host,
    new: &mut Host,
    info: &ServerInfo,
    running: bool,
    timeout: Duration,
) -> Result<()> {
    let r = new.run_with(&gtid_script(timeout), timeout)?;
    let new_set = crate::mysql::server::gtid_set(
        &r.set("gtid")
            .records()
            .next()
            .map(|x| x.text("gtid"))
            .unwrap_or_default(),
    );
    let r = target.run_with(&errant_script(info, &new_set, timeout), timeout)?;
    let errant = crate::mysql::server::gtid_set(
        &r.set("errant")
            .records()
            .next()
            .map(|x| x.text("errant"))
            .unwrap_or_default(),
    );
    if errant.is_empty() {
        return Ok(());
    }
    restore(target, info, running, timeout);
    Err(anyhow!(
        "{host}: has transactions {new} does not have ({errant}); repointing it would lose or \
         duplicate them: inspect them on {host} (SELECT GTID_SUBTRACT(@@GLOBAL.gtid_executed, \
         '<{new}'s gtid_executed>'), then mysqlbinlog --include-gtids) and settle them by hand",
        host = target.name(),
        new = new.name(),
    )
    .context(Refused))
}

/// MariaDB: a replica of the old master first executes all of the old
/// master's binary log; then, replication stopped, its GTID position must
/// be the new master's at `opened`.
fn prove_by_gtid_pos(
    target: &mut Host,
    new: &mut Host,
    orig: Option<&mut Host>,
    info: &ServerInfo,
    (file, pos): (&str, u64),
    running: bool,
    timeout: Duration,
) -> Result<()> {
    let r = new.run_with(&opened_at_script(file, pos, timeout), timeout)?;
    let expected = r
        .set("at")
        .records()
        .next()
        .and_then(|x| x.get("at").map(String::from))
        .filter(|v| v != "NULL")
        .ok_or_else(|| {
            anyhow!(
                "{}: {file}:{pos} (where it was opened) is no longer in its binary log",
                new.name()
            )
        })?;
    let end = match orig {
        Some(o) => {
            let oi = o.info()?.clone();
            let at = o.run_with(&end_script(&oi, timeout), timeout)?;
            let end = super::read_only::binlog_position(&at, "end")
                .and_then(|p| parse_position(&p))
                .ok_or_else(|| anyhow!("{}: no binary log position", o.name()))?;
            Some((end.0, end.1.to_string()))
        }
        None => None,
    };
    let end = end.as_ref().map(|(f, p)| (f.as_str(), p.as_str()));
    let s = stop_and_pos_script(info, end, timeout);
    let r = match target.run_with(&s, timeout) {
        Err(e) if crate::mysql::failed_at(&e, "caught-up") => {
            return Err(anyhow!(
                "{}: did not execute the old master's whole binary log in time (is its \
                 replication running?); nothing was changed",
                target.name()
            )
            .context(Refused))
        }
        r => r?,
    };
    let have = r
        .set("pos")
        .records()
        .next()
        .map(|x| x.text("pos"))
        .unwrap_or_default();
    if same_gtid_pos(&have, &expected) {
        return Ok(());
    }
    restore(target, info, running, timeout);
    Err(anyhow!(
        "{host}: its GTID position {have} is not {new}'s at {file}:{pos} ({expected}), so it \
         cannot start there; compare the two by hand before repointing it",
        host = target.name(),
        new = new.name(),
    )
    .context(Refused))
}

/// Two MariaDB GTID positions (`domain-server-seq` lists) hold the same
/// entries, in any order.
pub fn same_gtid_pos(a: &str, b: &str) -> bool {
    fn set(s: &str) -> Vec<&str> {
        let mut v: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .collect();
        v.sort_unstable();
        v
    }
    set(a) == set(b)
}

/// Wait until both replication threads run (the IO thread connects in the
/// background), failing with the replica's own error if one appears.
fn running_within(target: &mut Host, timeout: Duration) -> Result<()> {
    let until = Instant::now() + timeout.min(Duration::from_secs(30));
    loop {
        let info = target.refresh_info()?.clone();
        let Some(rep) = info.replica else {
            bail!(
                "{}: no replication configured after repointing",
                target.name()
            );
        };
        if rep.healthy() {
            return Ok(());
        }
        if !rep.last_error.is_empty() || Instant::now() >= until {
            bail!(
                "{}: replication does not run (IO {}, SQL {}){}",
                target.name(),
                rep.io_running,
                rep.sql_running,
                if rep.last_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", rep.last_error)
                }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What [`repoint`] sends, for a plan: the path the hosts' state as read
/// now takes (values read on the way are placeholders).
pub fn plan(hosts: &[Host], r: &Repoint, timeout: Duration) -> Vec<Planned> {
    let find = |n: &str| hosts.iter().find(|h| h.name() == n);
    let (Some(target), Some(new)) = (find(&r.host), find(&r.src.name)) else {
        return Vec::new();
    };
    let mut v = target.refresh_plan(None);
    v.extend(new.refresh_plan(None));
    let (Some(info), Some(new_info)) = (target.info.as_ref(), new.info.as_ref()) else {
        return v;
    };
    let (source, running) = before(info);
    let polls = "every 100 ms until both replication threads run (up to 30 s)";
    if on_new(source.as_deref(), r) {
        v.push(Planned::once(&r.host, &start_script(info, timeout)));
        v.extend(target.refresh_plan(None));
        v.extend(target.refresh_plan(Some(polls)));
        return v;
    }
    let from = match (info.flavor, new_info.flavor) {
        (Flavor::MySql, Flavor::MySql) if info.gtid_mode && new_info.gtid_mode => {
            v.push(Planned::once(&r.src.name, &gtid_script(timeout)));
            let set = at_run(&format!("gtid_executed of {}", r.src.name));
            v.push(Planned::once(&r.host, &errant_script(info, &set, timeout)));
            StartAt::Auto
        }
        (Flavor::MariaDb, Flavor::MariaDb) => {
            let Some((file, pos)) = r.opened_at.clone() else {
                return v;
            };
            v.push(Planned::once(
                &r.src.name,
                &opened_at_script(&file, pos, timeout),
            ));
            let orig = find(&r.orig).filter(|o| follows(source.as_deref(), Some(o)));
            let (end_file, end_pos) = (at_run("its file"), at_run("its position"));
            let end = match orig.and_then(|o| o.info.as_ref().map(|i| (o, i))) {
                Some((o, oi)) => {
                    v.push(Planned::once(o.name(), &end_script(oi, timeout)));
                    Some((end_file.as_str(), end_pos.as_str()))
                }
                None => None,
            };
            v.push(Planned::once(
                &r.host,
                &stop_and_pos_script(info, end, timeout),
            ));
            StartAt::Position { file, pos }
        }
        _ => return v,
    };
    if running {
        let again = "only if the proof fails: its threads started again, as they were";
        v.push(Planned::repeated(
            &r.host,
            &start_script(info, timeout),
            again,
        ));
        v.extend(target.refresh_plan(Some(polls)));
    }
    v.push(Planned::once(
        &r.host,
        &change_script(info, &r.src, &from, timeout),
    ));
    v.extend(target.refresh_plan(None));
    v.extend(target.refresh_plan(Some(polls)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> NewSource {
        NewSource {
            name: "db2".into(),
            ip: "198.51.100.12".into(),
            port: 3306,
            user: "repl".into(),
            password: "p'w".into(),
        }
    }

    #[test]
    fn mysql_repoints_by_auto_position_and_asks_for_the_public_key() {
        let d = Dialect {
            flavor: Flavor::MySql,
            version: (9, 7, 0),
        };
        let (sent, shown) = change_sql(d, &src(), &StartAt::Auto);
        assert_eq!(
            sent,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '198.51.100.12', SOURCE_PORT = 3306, \
             SOURCE_USER = 'repl', SOURCE_PASSWORD = 'p\\'w', SOURCE_AUTO_POSITION = 1, \
             GET_SOURCE_PUBLIC_KEY = 1"
        );
        assert!(shown.contains("SOURCE_PASSWORD = '<repl_password>'") && !shown.contains("p\\'w"));
    }

    #[test]
    fn mariadb_repoints_by_file_and_position_without_gtid() {
        let d = Dialect {
            flavor: Flavor::MariaDb,
            version: (10, 11, 6),
        };
        let from = StartAt::Position {
            file: "mysql-bin.000002".into(),
            pos: 1234,
        };
        let (sent, _) = change_sql(d, &src(), &from);
        assert_eq!(
            sent,
            "CHANGE MASTER TO MASTER_HOST = '198.51.100.12', MASTER_PORT = 3306, MASTER_USER = \
             'repl', MASTER_PASSWORD = 'p\\'w', MASTER_LOG_FILE = 'mysql-bin.000002', \
             MASTER_LOG_POS = 1234, MASTER_USE_GTID = no"
        );
    }

    #[test]
    fn gtid_positions_compare_as_sets_and_positions_parse() {
        assert!(same_gtid_pos("0-1-100,1-2-5", "1-2-5, 0-1-100"));
        assert!(!same_gtid_pos("0-1-100", "0-1-101"));
        assert!(!same_gtid_pos("", "0-1-1"));
        assert_eq!(
            parse_position("mysql-bin.000003:4567"),
            Some(("mysql-bin.000003".into(), 4567))
        );
        assert_eq!(parse_position("nonsense"), None);
    }
}
