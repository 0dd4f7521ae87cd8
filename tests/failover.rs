//! Dead-master failover in the lab with the real MHA: the
//! `master-ip-failover` hook in its four phases, `mha-helper failover`,
//! and masterha_manager failing over by itself.

mod common;

use std::time::Duration;

use common::*;

fn count(lab: &Lab, host: &str) -> u64 {
    lab.value(host, "SELECT COUNT(*) FROM appdb.t1")
        .parse()
        .unwrap()
}

fn insert_rows(lab: &Lab, n: usize, tag: &str) {
    let values: Vec<String> = (0..n).map(|i| format!("('{tag}-{i}')")).collect();
    lab.app_sql(
        "app",
        "db1",
        &format!("INSERT INTO t1 (val) VALUES {}", values.join(",")),
    )
    .unwrap();
}

fn assert_new_master(lab: &Lab, new: &str, other: &str) {
    assert_eq!(
        lab.value(new, "SELECT @@GLOBAL.read_only"),
        "0",
        "{new} must be writable"
    );
    let st = lab.host_state(new);
    assert_eq!(st.replica_of, None, "{new} must not replicate any more");
    let o = lab.host_state(other);
    assert_eq!(
        o.replica_of,
        Some((lab.var(&format!("MHALAB_IP_{new}")), true)),
        "{other} must replicate from {new}"
    );
    lab.app_sql("app", new, "INSERT INTO t1 (val) VALUES ('after failover')")
        .unwrap();
}

#[test]
fn failover_after_the_server_on_db1_is_killed_keeps_every_replicated_transaction() {
    let lab = Lab::lock();
    // check records the application grants that start compares with
    assert_eq!(lab.check(&[]).status.code(), Some(0));
    insert_rows(&lab, 50, "a");
    assert!(wait_for(Duration::from_secs(10), || count(&lab, "db2")
        == 50
        && count(&lab, "db3") == 50));
    // db2 stops applying: what it still needs is only in its relay log
    lab.mysql(
        "db2",
        lab.sql_for("STOP SLAVE SQL_THREAD", "STOP REPLICA SQL_THREAD"),
    );
    insert_rows(&lab, 50, "b");
    assert!(wait_for(Duration::from_secs(10), || count(&lab, "db3") == 100));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&lab, "db2"), 50);
    common::lab(&["kill-mysql", "db1"]);

    let o = lab.failover("db1", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stdout(&o).contains("failed over from db1 to db2"),
        "{}",
        both(&o)
    );
    assert!(
        stdout(&o).contains("replica db3 now replicates from the new master"),
        "{}",
        both(&o)
    );
    assert_eq!(
        count(&lab, "db2"),
        100,
        "every transaction a replica had must be on the new master"
    );
    assert_new_master(&lab, "db2", "db3");

    let log = lab.manager_log();
    assert!(
        log.contains("master-ip-failover stopssh: db1: mysqld does not answer"),
        "{log}"
    );
    assert!(
        log.contains("master-ip-failover start: db2 is writable"),
        "{log}"
    );
    assert!(!log.contains("grants differ"), "{log}");

    // check on the new topology: passes, db1 reported down
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
    let out = stdout(&c);
    assert!(out.contains("master db2"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("db1") && l.contains("down")),
        "{out}"
    );
}

#[test]
fn failover_when_db1_is_unreachable_goes_through_the_stop_phase() {
    let lab = Lab::lock();
    insert_rows(&lab, 10, "c");
    assert!(wait_for(Duration::from_secs(10), || count(&lab, "db2")
        == 10
        && count(&lab, "db3") == 10));
    common::lab(&["link-down", "db1"]);
    // A partition, not a death: db1's server keeps running, and nothing
    // can reach it to fence it, so it stays writable next to the new master.
    lab.allow_two_writable("db1 is cut off but alive; no fencer can reach it");
    let o = lab.failover("db1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let log = lab.manager_log();
    assert!(
        log.contains("master-ip-failover stop: db1 is unreachable"),
        "{log}"
    );
    assert!(log.contains("master-ip-failover start:"), "{log}");
    let new = if stdout(&o).contains("to db2") {
        "db2"
    } else {
        "db3"
    };
    let other = if new == "db2" { "db3" } else { "db2" };
    assert_new_master(&lab, new, other);
    assert_eq!(count(&lab, new), 11);
}

#[test]
fn masterha_manager_fails_over_by_itself_calling_our_hooks() {
    let lab = Lab::lock();
    let mut manager = lab.start_manager();
    let log = lab.manager_log();
    assert!(
        log.contains("master-ip-failover status: ready"),
        "status hook not run at start:\n{log}"
    );
    common::lab(&["kill-mysql", "db1"]);
    let done = wait_for(Duration::from_secs(60), || {
        let l = lab.manager_log();
        l.contains("Master failover to") && l.contains("completed successfully")
    });
    manager.exits_within(Duration::from_secs(20));
    drop(manager);
    let log = lab.manager_log();
    assert!(done, "masterha_manager did not fail over:\n{log}");
    assert!(
        log.contains("master-ip-failover stopssh: db1: mysqld does not answer"),
        "{log}"
    );
    assert!(log.contains("master-ip-failover start:"), "{log}");
    let new = if log.contains("Master failover to db2") {
        "db2"
    } else {
        "db3"
    };
    let other = if new == "db2" { "db3" } else { "db2" };
    assert_new_master(&lab, new, other);
}

#[test]
fn masterha_check_repl_runs_our_status_phase_and_passes() {
    let lab = Lab::lock();
    let conf = format!("--conf={}", lab.app_cnf());
    let o = lab_raw(&["exec", "mgr", "masterha_check_repl", &conf]);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("master-ip-failover status: ready"), "{text}");
    assert!(text.contains("MySQL Replication Health is OK."), "{text}");
}

#[test]
fn masterha_check_repl_fails_with_our_message_when_the_helper_config_is_broken() {
    let lab = Lab::lock();
    lab.set_helper_conf("[default]\nblock_method = bogus\n");
    let conf = format!("--conf={}", lab.app_cnf());
    let o = lab_raw(&["exec", "mgr", "masterha_check_repl", &conf]);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains(
            "helper.cnf:3: block_method = 'bogus': expected revoke, account_lock or read_only_only"
        ),
        "{text}"
    );
    assert!(
        text.contains("MySQL Replication Health is NOT OK!"),
        "{text}"
    );
}

#[test]
fn stopssh_sets_read_only_on_a_master_whose_mysqld_still_answers() {
    let lab = Lab::lock();
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "0");
    let o = lab.stopssh("db1");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("mysqld still answered; set read-only"),
        "{}",
        both(&o)
    );
    assert_eq!(
        lab.value("db1", "SELECT @@GLOBAL.read_only"),
        "1",
        "the half-dead master takes no more writes"
    );
    assert!(lab
        .app_sql("app", "db1", "INSERT INTO t1 (val) VALUES ('fenced?')")
        .is_err());
}

/// The operator's failover commands' MHA output files so far.
fn switch_logs(lab: &Lab) -> usize {
    std::fs::read_dir(lab.journal_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".switch.log"))
        .count()
}

#[test]
fn a_failed_failover_says_why_and_a_missing_workdir_is_named_before_mha_runs() {
    let lab = Lab::lock();
    let before = lab.state();
    // db1 is alive: MHA stops, and its reason is the command's.
    let o = lab.failover("db1", &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON summary");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains("is reachable via MySQL"), "{v:#}");
    let err = stderr(&o);
    let last = err
        .lines()
        .rfind(|l| l.contains(" ERROR "))
        .unwrap_or_default();
    assert!(
        last.contains("failover from db1 failed") && last.contains("is reachable via MySQL"),
        "{err}"
    );
    assert_eq!(
        lab.state(),
        before,
        "a refused failover changed the cluster"
    );

    // manager_workdir missing: refused before MHA runs, naming it.
    let logs = switch_logs(&lab);
    let conf = lab.app_cnf_edited("nowork", |text, _| {
        text.lines()
            .map(|l| match l.starts_with("manager_workdir=") {
                true => "manager_workdir=/nonexistent/mha-work\n".to_string(),
                false => format!("{l}\n"),
            })
            .collect()
    });
    let o = lab.failover_with_conf(&conf, "db1", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let err = stderr(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("manager_workdir /nonexistent/mha-work") && errors[0].contains(&conf),
        "{err}"
    );
    assert_eq!(switch_logs(&lab), logs, "MHA was started");
    assert_eq!(lab.state(), before);
}
