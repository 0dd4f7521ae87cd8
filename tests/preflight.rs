//! The online stop's preflight refuses, with nothing changed and a reason,
//! every situation where blocking would be unsafe; the dry run shows the
//! plan and changes nothing; a second start is harmless.

mod common;

use std::time::Duration;

use common::*;
use mha_helper::listing::{conforms, Planned, Sent};

/// Run stop and insist it refuses with `reason`, leaving `before` intact.
fn assert_refused(lab: &Lab, before: &State, reason: &str) {
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stop should refuse:\n{}",
        both(&o)
    );
    assert!(
        stderr(&o).contains(reason),
        "expected '{reason}':\n{}",
        both(&o)
    );
    assert!(
        !stderr(&o).contains("block-accounts:"),
        "nothing may be blocked:\n{}",
        both(&o)
    );
    assert_eq!(&lab.state(), before, "a refused stop changed the cluster");
    assert!(!lab.journal().exists(), "a refused stop left a journal");
}

#[test]
fn an_idle_open_transaction_on_the_old_master_is_refused() {
    let lab = Lab::lock();
    let before = lab.state();
    let mut held = lab.app_session(
        "app",
        "db1",
        "BEGIN; INSERT INTO t1 (val) VALUES ('open'); SELECT SLEEP(30)",
    );
    // the transaction must be older than long_transaction_limit (2 s)
    std::thread::sleep(Duration::from_secs(3));
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    let _ = held.kill();
    let _ = held.wait();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("open longer than long_transaction_limit"),
        "{}",
        both(&o)
    );
    assert_eq!(lab.state(), before);
}

#[test]
fn a_metadata_lock_wait_on_the_old_master_is_refused() {
    let lab = Lab::lock();
    let before = lab.state();
    // root holds a table lock; an ALTER then waits for the metadata lock
    let mut lock = std::process::Command::new(repo().join("scripts/lab"))
        .args([
            "mysql",
            "db1",
            "LOCK TABLES appdb.t1 READ; SELECT SLEEP(30)",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut alter = std::process::Command::new(repo().join("scripts/lab"))
        .args([
            "mysql",
            "db1",
            "SET SESSION lock_wait_timeout = 30; ALTER TABLE appdb.t1 ADD COLUMN x INT",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        lab.value("db1", "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE '%metadata lock%'") != "0"
    }));
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    // end the waiting ALTER on the server before releasing the lock
    let alter_id = lab.value(
        "db1",
        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'ALTER TABLE appdb.t1%'",
    );
    lab.mysql("db1", &format!("KILL {alter_id}"));
    let _ = alter.kill();
    let _ = lock.kill();
    let _ = alter.wait();
    let _ = lock.wait();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("waiting for metadata locks"),
        "{}",
        both(&o)
    );
    assert!(
        !stderr(&o).contains("block-accounts:"),
        "nothing may be blocked:\n{}",
        both(&o)
    );
    assert_eq!(lab.state(), before, "a refused stop changed the cluster");
}

#[test]
fn an_application_account_that_writes_through_read_only_is_refused_when_only_read_only_would_block_it(
) {
    let lab = Lab::lock();
    // READ_ONLY ADMIN on MariaDB, CONNECTION_ADMIN on MySQL
    let bypass = lab.bypass_privilege();
    lab.mysql(
        "db1",
        &format!(
            "CREATE USER 'admin_app'@'%' IDENTIFIED BY 'x'; GRANT {bypass}, INSERT ON *.* TO 'admin_app'@'%'"
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.set_helper_conf("[default]\nblock_method = read_only_only\n");
    let before = lab.state();
    assert_refused(
        &lab,
        &before,
        &format!("'admin_app'@'%' hold SUPER/{bypass}"),
    );
    // with revoke they are blocked like any other account: a warning only
    lab.set_helper_conf("[default]\nblock_method = revoke\n");
    let o = lab.online_hook("stop", "db1", "db2", &["--dry-run"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("read_only alone would not stop them"),
        "{}",
        both(&o)
    );
}

#[test]
fn a_new_master_that_does_not_replicate_is_refused() {
    let lab = Lab::lock();
    lab.stop_replica("db2");
    let before = lab.state();
    assert_refused(&lab, &before, "db2: replication from db1 is not running");
}

#[test]
fn an_unfinished_switch_in_the_journal_is_refused() {
    let lab = Lab::lock();
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "kill@after:block-accounts")],
    );
    assert_ne!(o.status.code(), Some(0));
    // a stop for another pair of masters must not start over the leftover
    let o = lab.online_hook("stop", "db1", "db3", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("an unfinished switch db1 -> db2"),
        "{}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("run `mha-helper recover"),
        "{}",
        both(&o)
    );
    assert_eq!(lab.recover().status.code(), Some(0));
}

#[test]
fn dry_run_prints_every_statement_per_host_and_changes_nothing() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.online_hook("stop", "db1", "db2", &["--dry-run"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stderr(&o);
    let revoke = format!(
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `app`@`%`, `app`@`{}.%`,",
        lab.var("MHALAB_NET")
    );
    for want in [
        "plan new-master-read-only   on db2",
        // MySQL: super_read_only (it sets read_only too)
        lab.sql_for(
            "SET GLOBAL read_only = 1;",
            "SET GLOBAL super_read_only = 1;",
        ),
        "plan block-accounts         on db1",
        "SET SESSION sql_log_bin = 0;",
        // MySQL names a role with its host
        lab.sql_for(
            "REVOKE `app_writer` FROM `roleuser`@`%`;",
            "REVOKE `app_writer`@`%` FROM `roleuser`@`%`;",
        ),
        &revoke,
        "plan kill-sessions          on db1",
        "[cannot be undone]",
        "dry-run: nothing changed",
    ] {
        assert!(text.contains(want), "dry run lacks '{want}':\n{text}");
    }
    assert_eq!(lab.state(), before);
}

/// The steps of a report: id, host, status, and what each sent.
fn steps_sent(o: &std::process::Output) -> Vec<(String, String, String, Vec<Sent>)> {
    let v: serde_json::Value = serde_json::from_str(&stdout(o)).expect("a JSON report");
    v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let sent = serde_json::from_value(s["sent"].clone()).unwrap_or_default();
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("step"), text("host"), text("status"), sent)
        })
        .collect()
}

/// The plan of a dry run's report: id, host and the scripts of each step.
fn steps_planned(o: &std::process::Output) -> Vec<(String, String, Vec<Planned>)> {
    let v: serde_json::Value = serde_json::from_str(&stdout(o)).expect("a JSON report");
    v["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|s| {
            let scripts = serde_json::from_value(s["scripts"].clone()).expect("scripts");
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("step"), text("host"), scripts)
        })
        .collect()
}

/// Run `phase` of the online hook as a dry run, then for real showing what
/// it sent: every step must have sent, statement for statement, what the
/// dry run listed. Returns what each step sent.
fn dry_run_then_real(lab: &Lab, phase: &str) -> Vec<(String, Vec<Sent>)> {
    let dry = lab.online_hook(phase, "db1", "db2", &["--dry-run", "--format=json"], &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", both(&dry));
    let planned = steps_planned(&dry);
    let real = lab.online_hook(phase, "db1", "db2", &["--show-sent", "--format=json"], &[]);
    assert_eq!(real.status.code(), Some(0), "{}", both(&real));
    let done = steps_sent(&real);
    let ids = |v: Vec<(&String, &String)>| format!("{v:?}");
    assert_eq!(
        ids(planned.iter().map(|p| (&p.0, &p.1)).collect()),
        ids(done.iter().map(|d| (&d.0, &d.1)).collect()),
        "{phase}: the steps run are not the steps planned"
    );
    for ((step, host, scripts), (_, _, status, sent)) in planned.iter().zip(&done) {
        assert_eq!(status, "done", "{phase}: {step} on {host}");
        assert!(!sent.is_empty(), "{phase}: {step} on {host} sent nothing");
        if let Err(e) = conforms(scripts, sent) {
            panic!("{phase}: {step} on {host}: the dry run is not what was sent: {e}");
        }
    }
    done.into_iter().map(|d| (d.0, d.3)).collect()
}

#[test]
fn a_dry_run_lists_statement_for_statement_what_stop_and_start_then_send() {
    let lab = Lab::lock();
    lab.set_helper_conf("[default]\ngrace_period = 1\n");
    // An application session busy past the grace period: the drain polls,
    // the kill kills it. And an idle one, which the drain ends at once.
    let mut session = lab.app_session("app", "db1", "SELECT SLEEP(60)");
    let idle = lab.app_session_held("app", "db1", "SELECT 1;");
    std::thread::sleep(Duration::from_millis(500));
    let stop = dry_run_then_real(&lab, "stop");
    let lines = |step: &str| -> Vec<String> {
        stop.iter()
            .filter(|(s, _)| s == step)
            .flat_map(|(_, sent)| sent.iter().flat_map(|x| x.statements.clone()))
            .collect()
    };
    assert!(
        lines("drain-sessions")
            .iter()
            .any(|l| l.contains("PROCESSLIST")),
        "the drain never polled"
    );
    assert!(
        lines("drain-sessions")
            .iter()
            .any(|l| l.starts_with("KILL CONNECTION ")),
        "the drain ended no idle session: {:?}",
        lines("drain-sessions")
    );
    let _ = idle.wait_with_output();
    assert!(
        lines("kill-sessions")
            .iter()
            .any(|l| l.starts_with("KILL ")),
        "the kill killed nothing: {:?}",
        lines("kill-sessions")
    );
    let start = dry_run_then_real(&lab, "start");
    assert!(
        start.iter().any(|(s, _)| s == "restore-grants"),
        "{start:?}"
    );
    let _ = session.kill();
    let _ = session.wait();
}

#[test]
fn start_run_twice_after_a_switch_changes_nothing_more() {
    let lab = Lab::lock();
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let after = lab.settled_state();
    let again = lab.online_hook("start", "db1", "db2", &[], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", both(&again));
    assert!(
        stderr(&again).contains("no journal of a stop for db1 -> db2"),
        "{}",
        both(&again)
    );
    assert_eq!(lab.settled_state(), after);
}

#[test]
fn a_read_only_bypass_held_through_a_role_is_refused_with_read_only_only() {
    let lab = Lab::lock();
    // roleuser's default role app_writer now also bypasses read_only.
    let bypass = lab.bypass_privilege();
    lab.mysql("db1", &format!("GRANT {bypass} ON *.* TO app_writer"));
    std::thread::sleep(Duration::from_millis(300));
    lab.set_helper_conf("[default]\nblock_method = read_only_only\n");
    let before = lab.state();
    assert_refused(
        &lab,
        &before,
        &format!("'roleuser'@'%' hold SUPER/{bypass} (directly or through a role)"),
    );
}

#[test]
fn a_grant_made_between_preflight_and_block_is_journaled_and_given_back() {
    let lab = Lab::lock();
    let dir = lab.fault_dir("grant");
    let d = dir.display().to_string();
    let child = lab.online_hook_spawn(
        "stop",
        "db1",
        "db2",
        &[
            ("MHA_HELPER_FAULT", "wait@before:block-accounts"),
            ("MHA_HELPER_FAULT_DIR", &d),
        ],
    );
    let gate = wait_point(&dir, "before:block-accounts", Duration::from_secs(30));
    // A DBA grants the application more while the switch is under way (not
    // binlogged, as on a master only).
    lab.mysql(
        "db1",
        "SET SESSION sql_log_bin = 0; GRANT SELECT ON appdb.writes TO 'app'@'%'",
    );
    let with_grant = lab.state();
    std::fs::remove_file(gate).unwrap();
    let o = finish(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("changed between the preflight and the block"),
        "{}",
        both(&o)
    );
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(
        lab.settled_state(),
        with_grant,
        "the grant made in between was not given back"
    );
}
