//! read_only and super_read_only: set, put back, read back to be sure, and
//! the proof that makes a host writable safe.
//!
//! super_read_only is used where the server has it (MySQL 5.7+) unless the
//! helper setting says `off`; MariaDB has only read_only. No host is made
//! writable until every other host of the cluster that answers has been
//! read read-only just before, in parallel: [`make_writable`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::{self, Host};
use crate::config::helper::SuperReadOnly;
use crate::exit::Refused;
use crate::listing::{at_run, Planned, Sent};
use crate::mysql::{Script, ServerInfo};

/// Opens a server for writes. On MySQL, turning read_only off also turns
/// super_read_only off, so this one statement is right for every flavour and
/// needs no knowledge of the server.
pub const WRITABLE: &str = "SET GLOBAL read_only = 0";

/// The query [`read_back`] reads.
pub const READ: &str = "SELECT @@GLOBAL.read_only AS read_only";

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The statements that turn read-only on or off on `info`'s server.
pub fn statements(
    host: &str,
    info: &ServerInfo,
    on: bool,
    mode: SuperReadOnly,
) -> Result<Vec<String>> {
    let has_super = info.super_read_only.is_some();
    if !on {
        return Ok(vec![WRITABLE.into()]);
    }
    if mode == SuperReadOnly::On && !has_super {
        bail!(
            "{host}: super_read_only = on, but {} has no super_read_only; use auto or off",
            info.label()
        );
    }
    if has_super && mode != SuperReadOnly::Off {
        Ok(vec!["SET GLOBAL super_read_only = 1".into()])
    } else {
        Ok(vec!["SET GLOBAL read_only = 1".into()])
    }
}

/// Statements that put back a saved state.
pub fn restore_statements(read_only: bool, super_read_only: Option<bool>) -> Vec<String> {
    match (read_only, super_read_only) {
        (_, Some(true)) => vec!["SET GLOBAL super_read_only = 1".into()],
        (false, _) => vec![WRITABLE.into()],
        (true, Some(false)) => vec![
            "SET GLOBAL super_read_only = 0".into(),
            "SET GLOBAL read_only = 1".into(),
        ],
        (true, None) => vec!["SET GLOBAL read_only = 1".into()],
    }
}

/// read_only as the result set `name` (of [`READ`]) says.
pub fn read_back(r: &crate::mysql::Results, name: &str) -> Option<bool> {
    r.set(name).records().next().map(|r| r.flag("read_only"))
}

/// `@@GLOBAL.read_only` of `host` now, and with `gtid` (MySQL with GTID
/// on) `@@GLOBAL.gtid_executed` read with it: asked of the client kept
/// running on the host when the transport keeps one (fast), else by a
/// script.
pub fn now(host: &mut Host, timeout: Duration, gtid: bool) -> Result<(bool, Option<String>)> {
    let question = crate::mysql::read_only_question(gtid);
    host.record(Sent::of(host.name(), vec![question.to_string()]));
    match crate::mysql::ask_read_only(host.conn.as_mut(), &host.spec.access, timeout, gtid) {
        Ok(r) => return Ok(r),
        Err(e) => log::debug!(
            "{}: no kept client ({e:#}); asking with a script",
            host.name()
        ),
    }
    let r = host.run_with(&now_script(gtid, timeout), timeout)?;
    let ro = read_back(&r, "ro")
        .ok_or_else(|| anyhow!("{}: read_only did not read back", host.name()))?;
    let set = gtid.then(|| {
        r.set("gtid")
            .records()
            .next()
            .map(|x| crate::mysql::server::gtid_set(&x.text("gtid")))
            .unwrap_or_default()
    });
    Ok((ro, set))
}

/// The script [`now`] sends when the host keeps no client to ask.
fn now_script(gtid: bool, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("ro", READ);
    if gtid {
        s.query("gtid", "SELECT @@GLOBAL.gtid_executed AS gtid");
    }
    s
}

/// Whether the proof reads `h`'s executed GTID set with its read_only.
fn asks_gtid(h: &Host, required: &[String]) -> bool {
    required.iter().any(|r| r == h.name()) && h.info.as_ref().is_some_and(|i| i.gtid_mode)
}

/// Run `stmts`, then read read_only back and insist it is `expect`.
pub fn run_and_verify(
    host: &mut Host,
    stmts: &[String],
    expect: bool,
    timeout: Duration,
) -> Result<()> {
    let r = host.run_with(&verify_script(stmts, timeout), timeout)?;
    let now = read_back(&r, "check");
    if now != Some(expect) {
        bail!(
            "{}: read_only reads {:?} after setting it to {}",
            host.name(),
            now,
            u8::from(expect)
        );
    }
    if let Some(info) = host.info.as_mut() {
        info.read_only = expect;
    }
    Ok(())
}

/// The script [`run_and_verify`] sends.
fn verify_script(stmts: &[String], timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    for st in stmts {
        s.exec("set read_only", st);
    }
    s.query("check", READ);
    s
}

/// What [`restore`] sends to `host`, for a plan.
pub fn restore_plan(
    host: &str,
    read_only: bool,
    super_read_only: Option<bool>,
    timeout: Duration,
) -> Vec<Planned> {
    let stmts = restore_statements(read_only, super_read_only);
    vec![Planned::once(host, &verify_script(&stmts, timeout))]
}

/// Put back a saved read-only state that is read-only (a writable one goes
/// through [`make_writable`]).
pub fn restore(
    host: &mut Host,
    read_only: bool,
    super_read_only: Option<bool>,
    timeout: Duration,
) -> Result<()> {
    let stmts = restore_statements(read_only, super_read_only);
    run_and_verify(
        host,
        &stmts,
        read_only || super_read_only == Some(true),
        timeout,
    )
}

/// What the proof before a host is made writable found.
#[derive(Debug, Clone, Default)]
pub struct Proof {
    /// Hosts read read-only just now.
    pub read_only: Vec<String>,
    /// Hosts that did not answer (and were allowed not to).
    pub unreachable: Vec<String>,
    /// The `gtid_executed` of each required host with GTID on, read in the
    /// same question as its read_only: what it committed before its fence.
    pub gtid_executed: Vec<(String, String)>,
}

impl Proof {
    pub fn describe(&self) -> String {
        let mut s = if self.read_only.is_empty() {
            "no other host to check".to_string()
        } else {
            format!("{} read-only", self.read_only.join(", "))
        };
        if !self.unreachable.is_empty() {
            s.push_str(&format!("; {} not reachable", self.unreachable.join(", ")));
        }
        s
    }
}

/// Read every host of `others` (in parallel) and insist each is read-only.
/// `unreachable` are hosts of the cluster with no connection; a name in
/// `required` must have been reachable. Errors are marked [`Refused`]:
/// nothing has been changed, and making a host writable now could give two
/// writable hosts.
pub fn prove_read_only(
    others: &mut [&mut Host],
    unreachable: &[String],
    required: &[String],
    timeout: Duration,
) -> Result<Proof> {
    if let Some(r) = required.iter().find(|r| unreachable.contains(r)) {
        return Err(anyhow!(
            "{r} does not answer, so it cannot be proven read-only; refusing to make another \
             host writable (two writable masters are worse than none): bring {r} back, or fence \
             it by hand, then run `mha-helper recover`"
        )
        .context(Refused));
    }
    let results = cluster::parallel(others, |h| {
        let gtid = asks_gtid(h, required);
        now(h, timeout, gtid)
    });
    let mut proof = Proof {
        unreachable: unreachable.to_vec(),
        ..Proof::default()
    };
    let mut writable = Vec::new();
    let mut failed = Vec::new();
    for (h, r) in others.iter().zip(results) {
        match r {
            Ok((true, set)) => {
                proof.read_only.push(h.name().to_string());
                if let Some(set) = set.filter(|s| !s.is_empty()) {
                    proof.gtid_executed.push((h.name().to_string(), set));
                }
            }
            Ok((false, _)) => writable.push(h.name().to_string()),
            // No server listening there: it cannot take writes.
            Err(e) if crate::mysql::server_down(&e) && !required.iter().any(|r| r == h.name()) => {
                proof
                    .unreachable
                    .push(format!("{} (mysqld down)", h.name()))
            }
            Err(e) => failed.push(format!("{}: {e:#}", h.name())),
        }
    }
    if !writable.is_empty() {
        return Err(anyhow!(
            "{} {} writable (read_only=0); refusing to make another host writable: two writable \
             masters are never made. Find out why (an unfinished switch? a manual change?), set \
             read_only=1 there if it is not the master, then retry",
            writable.join(", "),
            if writable.len() == 1 { "is" } else { "are" }
        )
        .context(Refused));
    }
    if !failed.is_empty() {
        return Err(anyhow!(
            "cannot read read_only on {}; refusing to make another host writable",
            failed.join("; ")
        )
        .context(Refused));
    }
    Ok(proof)
}

/// The binary log position statement for `info`'s server.
pub fn add_binlog_position(s: &mut Script, info: &ServerInfo, name: &str) {
    s.query(name, info.dialect().binlog_status());
}

/// `file:pos` of the first row of a binary log status result set.
pub fn binlog_position(r: &crate::mysql::Results, name: &str) -> Option<String> {
    let rec = r.set(name).records().next()?;
    Some(format!("{}:{}", rec.text("File"), rec.text("Position")))
}

/// What [`make_writable`] did.
pub struct Writable {
    /// When it became writable (unix ms).
    pub at: u64,
    pub proof: Proof,
    /// Its binary log position just before (`file:pos`), when known and
    /// it was read-only until then (an already writable host's writes did
    /// not start there).
    pub binlog: Option<String>,
}

/// What [`ready`] found: every other host proven read-only, and where the
/// target's binary log stood while it was still read-only.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    pub proof: Proof,
    /// The target's binary log position (`file:pos`), read with read_only
    /// on, before anything opened it; None when it was writable already or
    /// logs nothing. Journaled before the target is opened, it is where a
    /// replica of the old master starts in the target's log even when the
    /// process dies before it records the position of the opening itself.
    pub before: Option<String>,
}

/// Prove every other host read-only and, in parallel, read the target's
/// server kind (when not known yet) and its binary log position while it
/// is read-only. Changes nothing.
pub fn ready(
    target: &mut Host,
    others: &mut [&mut Host],
    unreachable: &[String],
    required: &[String],
    timeout: Duration,
) -> Result<Ready> {
    let name = target.name().to_string();
    let (proof, before) = std::thread::scope(|s| {
        let before = s.spawn(|| position_while_read_only(target, timeout));
        let proof = prove_read_only(others, unreachable, required, timeout);
        (proof, before.join())
    });
    let proof = proof?;
    let before = before.map_err(|_| anyhow!("{name}: thread panicked"))??;
    Ok(Ready { proof, before })
}

/// The target's binary log position, if it reads read-only with it.
fn position_while_read_only(target: &mut Host, timeout: Duration) -> Result<Option<String>> {
    if target.info.is_none() {
        target.refresh_info()?;
    }
    let info = target.info()?.clone();
    let r = target
        .run_with(&position_script(&info, timeout), timeout)
        .with_context(|| format!("{}: reading its binary log position", target.name()))?;
    Ok((read_back(&r, "ro") == Some(true))
        .then(|| binlog_position(&r, "binlog"))
        .flatten())
}

/// The script [`position_while_read_only`] sends.
fn position_script(info: &ServerInfo, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("ro", READ);
    add_binlog_position(&mut s, info, "binlog");
    s
}

/// [`ready`], then [`open`].
pub fn make_writable(
    target: &mut Host,
    others: &mut [&mut Host],
    unreachable: &[String],
    required: &[String],
    timeout: Duration,
) -> Result<Writable> {
    let r = ready(target, others, unreachable, required, timeout)?;
    open(target, r.proof, timeout)
}

/// Open the target, every other host proven read-only by `proof`: record
/// its binary log position, turn read_only off and read it back, in one
/// round trip. Where GTID is on, the same script first waits (briefly)
/// until the target has executed every transaction a required host (the
/// fenced old master of a switch) had committed, and stops before the
/// `SET` if not: lag figures say nothing about a transaction the new
/// master never got.
pub fn open(target: &mut Host, proof: Proof, timeout: Duration) -> Result<Writable> {
    let info = target.info()?.clone();
    let catch_up: Vec<&(String, String)> = if info.gtid_mode {
        proof.gtid_executed.iter().collect()
    } else {
        Vec::new()
    };
    let wait = catch_up_wait(timeout);
    let sets: Vec<&str> = catch_up.iter().map(|(_, set)| set.as_str()).collect();
    let s = writable_script(&info, &sets, timeout);
    let r = match target.run_with(&s, timeout) {
        Err(e) if crate::mysql::failed_at(&e, CATCH_UP) => {
            return Err(lacks(target, &catch_up, wait, timeout).context(Refused));
        }
        r => r.with_context(|| format!("{}: turning read_only off", target.name()))?,
    };
    let at = unix_ms();
    if read_back(&r, "ro") != Some(false) {
        bail!(
            "{}: read_only is still on after turning it off",
            target.name()
        );
    }
    if let Some(info) = target.info.as_mut() {
        info.read_only = false;
    }
    Ok(Writable {
        at,
        // Where its writes start: only when this made it writable.
        binlog: (read_back(&r, "was") == Some(true))
            .then(|| binlog_position(&r, "binlog"))
            .flatten(),
        proof,
    })
}

/// The script that opens the target: wait for each of `sets` to be
/// executed there, read read_only and the binary log position, turn
/// read_only off and read it back.
fn writable_script(info: &ServerInfo, sets: &[&str], timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    let wait = catch_up_wait(timeout);
    for set in sets {
        s.query(CATCH_UP, &catch_up_sql(set, wait));
    }
    s.query("was", READ);
    add_binlog_position(&mut s, info, "binlog");
    s.exec("read_only off", WRITABLE);
    s.query("ro", READ);
    s
}

/// How long the catch-up waits, in a script allowed `timeout`.
fn catch_up_wait(timeout: Duration) -> u64 {
    (crate::mysql::server_limit(timeout).as_secs() / 2).max(1)
}

/// What [`make_writable`] sends, for a plan: to every other host of
/// `hosts` the read-only question (a script if it keeps no client to ask),
/// then to `target` its server kind if not known yet, its binary log
/// position with its read_only, and the script that opens it, with a
/// catch-up wait per fenced host whose executed GTID set
/// the proof reads (known only then), and the read of what it lacks if it
/// has not caught up.
pub fn writable_plan(
    hosts: &[Host],
    target: &str,
    required: &[String],
    timeout: Duration,
) -> Vec<Planned> {
    let mut v = Vec::new();
    for h in hosts.iter().filter(|h| h.name() != target) {
        let gtid = asks_gtid(h, required);
        let question = crate::mysql::read_only_question(gtid).to_string();
        v.push(Planned::of(h.name(), vec![question]));
        v.push(Planned::repeated(
            h.name(),
            &now_script(gtid, timeout),
            "only if the host keeps no client to ask",
        ));
    }
    let Some(t) = hosts.iter().find(|h| h.name() == target) else {
        return v;
    };
    let Some(info) = t.info.as_ref() else {
        let mut s = Script::new(t.spec.settings.step_timeout);
        ServerInfo::add_queries(&mut s, false);
        v.push(Planned::repeated(
            target,
            &s,
            "its server kind, not read yet",
        ));
        return v;
    };
    v.push(Planned::once(target, &position_script(info, timeout)));
    let sources: Vec<String> = hosts
        .iter()
        .filter(|h| info.gtid_mode && h.name() != target && asks_gtid(h, required))
        .map(|h| at_run(&format!("gtid_executed read from {}", h.name())))
        .collect();
    let sets: Vec<&str> = sources.iter().map(String::as_str).collect();
    let mut open = Planned::once(target, &writable_script(info, &sets, timeout));
    for s in &sources {
        open = open.each(s, "if that set is not empty");
    }
    v.push(open);
    if !sets.is_empty() {
        v.push(Planned::repeated(
            target,
            &lacks_script(&sets, timeout),
            "only if it has not caught up in time: what it lacks",
        ));
    }
    v
}

/// The label of the catch-up query.
const CATCH_UP: &str = "catch-up";

/// A query that waits up to `wait_s` for `set` to be executed here and
/// fails (so the script stops) if it is not: `WAIT_FOR_EXECUTED_GTID_SET`
/// answers 0 once it is, and a scalar subquery of two rows is an error.
pub fn catch_up_sql(set: &str, wait_s: u64) -> String {
    format!(
        "SELECT IF(WAIT_FOR_EXECUTED_GTID_SET({}, {wait_s}) = 0, 1, \
         (SELECT 1 UNION ALL SELECT 2)) AS caught_up",
        crate::quote::sql_string(set)
    )
}

/// The refusal when the target lacks transactions of a fenced host, naming
/// them (asked again, now that the wait is over).
fn lacks(
    target: &mut Host,
    sources: &[&(String, String)],
    wait: u64,
    timeout: Duration,
) -> anyhow::Error {
    let sets: Vec<&str> = sources.iter().map(|(_, set)| set.as_str()).collect();
    let s = lacks_script(&sets, timeout);
    let missing: Vec<String> = match target.run_with(&s, timeout) {
        Ok(r) => sources
            .iter()
            .enumerate()
            .filter_map(|(i, (host, _))| {
                let m = r
                    .set(&format!("missing:{i}"))
                    .records()
                    .next()?
                    .text("missing");
                (!m.is_empty()).then(|| format!("{host}'s {m}"))
            })
            .collect(),
        Err(e) => vec![format!("(cannot tell which: {})", crate::exit::message(&e))],
    };
    anyhow!(
        "{}: has not executed every transaction {} committed before its fence, even after \
         waiting {wait} s (missing: {}); it stays read-only. Let replication catch up (or find \
         where those transactions went), then run `mha-helper recover`",
        target.name(),
        sources
            .iter()
            .map(|(h, _)| h.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        missing.join("; ")
    )
}

/// The script that asks which transactions of each of `sets` the target
/// has not executed.
fn lacks_script(sets: &[&str], timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    for (i, set) in sets.iter().enumerate() {
        s.query(
            &format!("missing:{i}"),
            &format!(
                "SELECT GTID_SUBTRACT({}, @@GLOBAL.gtid_executed) AS missing",
                crate::quote::sql_string(set)
            ),
        );
    }
    s
}

/// Split `hosts` into the one named `name` and all the others.
pub fn split<'a>(hosts: &'a mut [Host], name: &str) -> Result<(&'a mut Host, Vec<&'a mut Host>)> {
    let mut target = None;
    let mut others = Vec::new();
    for h in hosts.iter_mut() {
        if h.spec.name == name {
            target = Some(h);
        } else {
            others.push(h);
        }
    }
    let target = target.ok_or_else(|| anyhow!("{name}: no open connection to this host"))?;
    Ok((target, others))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::Flavor;

    fn info(super_ro: Option<bool>) -> ServerInfo {
        ServerInfo {
            flavor: if super_ro.is_some() {
                Flavor::MySql
            } else {
                Flavor::MariaDb
            },
            version: "x".into(),
            version_number: (10, 11, 0),
            server_id: 1,
            read_only: false,
            super_read_only: super_ro,
            log_bin: true,
            connection_id: 1,
            current_user: "mha@%".into(),
            replica: None,
            gtid_mode: false,
            gtid_executed: String::new(),
            server_uuid: String::new(),
        }
    }

    #[test]
    fn mariadb_uses_plain_read_only() {
        let i = info(None);
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL read_only = 1"]
        );
        assert_eq!(
            statements("db1", &i, false, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL read_only = 0"]
        );
        assert!(statements("db1", &i, true, SuperReadOnly::On).is_err());
    }

    #[test]
    fn the_catch_up_check_stops_the_script_unless_the_set_is_executed_in_time() {
        let sql = catch_up_sql("888848d4-edea-11f1-9835-ce4d833885b0:1-24", 3);
        assert_eq!(
            sql,
            "SELECT IF(WAIT_FOR_EXECUTED_GTID_SET('888848d4-edea-11f1-9835-ce4d833885b0:1-24', 3) = 0, 1, \
             (SELECT 1 UNION ALL SELECT 2)) AS caught_up"
        );
    }

    #[test]
    fn mysql_uses_super_read_only_unless_off() {
        let i = info(Some(false));
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL super_read_only = 1"]
        );
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Off).unwrap(),
            vec!["SET GLOBAL read_only = 1"]
        );
        // read_only=0 clears super_read_only too on MySQL
        assert_eq!(
            statements("db1", &i, false, SuperReadOnly::Auto).unwrap(),
            vec![WRITABLE]
        );
    }

    #[test]
    fn restore_puts_back_each_saved_combination() {
        assert_eq!(
            restore_statements(true, None),
            vec!["SET GLOBAL read_only = 1"]
        );
        assert_eq!(restore_statements(false, None), vec![WRITABLE]);
        assert_eq!(
            restore_statements(true, Some(true)),
            vec!["SET GLOBAL super_read_only = 1"]
        );
        assert_eq!(restore_statements(false, Some(false)), vec![WRITABLE]);
        assert_eq!(
            restore_statements(true, Some(false)),
            vec!["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 1"]
        );
    }
}
