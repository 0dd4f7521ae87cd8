//! An old master that a failover could not fence (cut off by a network
//! partition, so MHA promotes another host and leaves it writable) is
//! fenced by mha-helper as soon as it answers again, and what it wrote in
//! the meantime is named for a person to reconcile.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn an_old_master_cut_off_during_failover_is_fenced_when_its_link_returns_and_its_late_writes_are_named(
) {
    let lab = Lab::lock();
    lab.allow_two_writable(
        "MHA itself leaves the cut-off db1 writable beside the new master until our fencer reaches it",
    );
    let mut manager = lab.start_manager();
    common::lab(&["link-down", "db1"]);
    let failed_over = wait_for(Duration::from_secs(90), || {
        let l = lab.manager_log();
        l.contains("Master failover to") && l.contains("completed successfully")
    });
    manager.exits_within(Duration::from_secs(20));
    drop(manager);
    let log = lab.manager_log();
    assert!(failed_over, "masterha_manager did not fail over:\n{log}");
    assert!(
        log.contains("master-ip-failover stop: db1 is unreachable"),
        "{log}"
    );
    let new = if log.contains("Master failover to db2") {
        "db2"
    } else {
        "db3"
    };
    // Behind the partition db1 is still a writable master and takes a write.
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "0");
    lab.mysql(
        "db1",
        "INSERT INTO appdb.t1 (val) VALUES ('written in the partition')",
    );

    common::lab(&["link-up", "db1"]);
    let back = Instant::now();
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .value("db1", "SELECT @@GLOBAL.read_only")
            == "1"),
        "db1 was not fenced after its link returned"
    );
    eprintln!(
        "db1 fenced {} ms after its link returned",
        back.elapsed().as_millis()
    );
    assert!(
        lab.app_sql(
            "app",
            "db1",
            "INSERT INTO t1 (val) VALUES ('after the fence')"
        )
        .is_err(),
        "an application write on the fenced db1 went through"
    );
    assert_eq!(
        lab.value(new, "SELECT @@GLOBAL.read_only"),
        "0",
        "{new} stays the master"
    );
    let fence_log = lab.journal_dir().join("mha-helper.app1.fence.log");
    let text = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&fence_log)
            .unwrap_or_default()
            .contains("never reached the new master")
    });
    let flog = std::fs::read_to_string(&fence_log).unwrap_or_default();
    assert!(text, "the fence does not name db1's late writes:\n{flog}");
    assert!(
        flog.contains("db1 wrote binary log events after the failover"),
        "{flog}"
    );
    assert!(!lab
        .journal_dir()
        .join("mha-helper.app1.fence.json")
        .exists());
    // check sees one writable host again, and no pending fence.
    let c = lab.check(&[]);
    assert!(!stdout(&c).contains("TWO WRITABLE HOSTS"), "{}", both(&c));
}

#[test]
fn check_names_two_writable_hosts_as_its_first_failure() {
    let lab = Lab::lock();
    lab.allow_two_writable("this test makes db3 writable on purpose");
    lab.mysql("db3", "SET GLOBAL read_only = 0");
    let c = lab.check(&[]);
    lab.mysql("db3", "SET GLOBAL read_only = 1");
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    let out = stdout(&c);
    assert!(
        out.lines()
            .next()
            .unwrap_or_default()
            .starts_with("FAIL TWO WRITABLE HOSTS: db1, db3"),
        "{out}"
    );
}
