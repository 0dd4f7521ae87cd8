//! The lab's writability watchdog (tests/common/watchdog.rs): its rule, and
//! that it really catches two writable hosts and survives restarts.

mod common;

use std::time::Duration;

use common::watchdog::{violations, Reading};
use common::*;

fn r(sent: f64, got: f64, writable: Option<bool>) -> Reading {
    Reading {
        sent,
        got,
        writable,
    }
}

fn hosts(x: Vec<Reading>, y: Vec<Reading>) -> Vec<(String, Vec<Reading>)> {
    vec![("db1".into(), x), ("db2".into(), y)]
}

#[test]
fn a_writable_reading_between_two_writable_readings_of_another_host_is_a_violation() {
    let h = hosts(
        vec![r(0.0, 1.0, Some(true)), r(20.0, 21.0, Some(true))],
        vec![r(10.0, 11.0, Some(true))],
    );
    let v = violations(&h);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("db1 and db2 writable at once"), "{v:?}");
}

#[test]
fn two_writable_hosts_read_at_different_instants_are_not_proof_on_their_own() {
    // db1 goes read-only before db2 is read writable
    let h = hosts(
        vec![r(0.0, 1.0, Some(true)), r(20.0, 21.0, Some(false))],
        vec![r(10.0, 11.0, Some(true)), r(30.0, 31.0, Some(true))],
    );
    assert!(violations(&h).is_empty());
    // an unknown reading breaks the chain (the server may have restarted)
    let h = hosts(
        vec![
            r(0.0, 1.0, Some(true)),
            r(20.0, 21.0, None),
            r(40.0, 41.0, Some(true)),
        ],
        vec![r(30.0, 31.0, Some(true))],
    );
    assert!(violations(&h).is_empty());
    // db2's reading overlaps db1's first one: its instant may lie before it
    let h = hosts(
        vec![r(0.0, 5.0, Some(true)), r(20.0, 21.0, Some(true))],
        vec![r(4.0, 8.0, Some(true))],
    );
    assert!(violations(&h).is_empty());
}

#[test]
fn watchdog_catches_a_replica_made_writable_next_to_the_master() {
    let lab = Lab::lock();
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "0");
    lab.mysql("db2", "SET GLOBAL read_only = 0");
    std::thread::sleep(Duration::from_millis(300));
    lab.mysql("db2", "SET GLOBAL read_only = 1");
    let v = lab.watchdog_violations();
    lab.allow_two_writable("this test makes db2 writable next to db1 on purpose");
    assert!(
        !v.is_empty(),
        "no violation seen: {}",
        lab.watchdog().summary()
    );
    assert!(
        v.iter().any(|l| l.contains("db1") && l.contains("db2")),
        "{v:?}"
    );
    assert!(v.iter().all(|l| !l.contains("db3")), "{v:?}");
}

#[test]
fn watchdog_keeps_sampling_across_a_reset_and_a_killed_master_without_a_false_violation() {
    let mut lab = Lab::lock();
    let w = lab.watchdog();
    assert!(wait_for(Duration::from_secs(5), || w.samples_of("db1") > 5
        && w.samples_of("db2") > 5
        && w.samples_of("db3") > 5));

    common::lab(&["reset"]);
    lab.reset_with_password(&default_mha_password());
    let before_kill = lab.watchdog().readings("db1").len();
    common::lab(&["kill-mysql", "db1"]);
    std::thread::sleep(Duration::from_millis(200));
    common::lab(&["start-mysql", "db1"]);
    std::thread::sleep(Duration::from_millis(300));

    let w = lab.watchdog();
    let db1 = w.readings("db1");
    let after = &db1[before_kill..];
    assert!(
        after.iter().any(|r| r.writable.is_none()),
        "db1 was down, yet every reading was answered: {after:?}"
    );
    assert!(
        after.iter().rev().take(5).all(|r| r.writable == Some(true)),
        "db1 is not read (writable) again after its restart: {after:?}"
    );
    assert!(
        lab.watchdog_violations().is_empty(),
        "{:?}",
        lab.watchdog_violations()
    );
    eprintln!("{}", w.summary());
}

#[test]
fn an_unreadable_host_gives_unknown_readings_and_never_writable_ones() {
    let mut w = common::watchdog::Watchdog::start(&common::lab_script(), &["nowhere".to_string()]);
    // Five tries, however long a loaded machine takes for them.
    let tried = wait_for(Duration::from_secs(20), || w.readings("nowhere").len() >= 5);
    w.stop();
    let r = w.readings("nowhere");
    assert!(tried, "{r:?}");
    assert!(r.iter().all(|r| r.writable.is_none()), "{r:?}");
    assert_eq!(w.samples(), 0);
}
