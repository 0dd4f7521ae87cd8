//! Faults a switch meets in the field, tried for real in the lab: a phase
//! killed at the worst moment must leave nothing behind that blocks the
//! next switch, and a switch interrupted after the new master opened must
//! be reported as it is and finished.

mod common;

use std::time::Duration;

use common::*;

/// `stop` killed -9 just after it started its session keeper (which took
/// over the lock), before it wrote any journal: the keeper must not outlive
/// it, and the next switch must run at once.
#[test]
fn a_stop_killed_before_its_journal_leaves_no_keeper_and_the_next_switch_runs_at_once() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "kill@after:keeper-spawned")],
    );
    assert_eq!(o.status.code(), None, "stop was not killed: {}", both(&o));
    assert!(!exists(&lab.journal().display().to_string()), "a journal");
    assert!(
        wait_for(Duration::from_secs(2), || lab.keeper_processes().is_empty()),
        "the session keeper outlived the stop that started it: {:?}",
        lab.keeper_processes()
    );
    assert_eq!(lab.state(), before, "nothing was changed");
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    let s = lab.switchover("db2", &[]);
    assert_eq!(s.status.code(), Some(0), "{}", both(&s));
}

/// `start` killed -9 after it closed its journal, before it ended the
/// keeper: the keeper, handed over by stop, holds the lock with no switch
/// left to serve. `check` names it as an orphan and ends it; and a switch
/// finding one ends it itself rather than telling the operator to wait.
#[test]
fn a_keeper_orphaned_by_a_start_killed_at_its_end_is_ended_by_check_and_by_the_next_switch() {
    let lab = Lab::lock();
    let orphan = || {
        let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        let keepers = lab.keeper_processes();
        assert_eq!(keepers.len(), 1, "stop left {keepers:?}");
        let o = lab.online_hook(
            "start",
            "db1",
            "db2",
            &[],
            &[("MHA_HELPER_FAULT", "kill@after:start-closed")],
        );
        assert_eq!(o.status.code(), None, "start was not killed: {}", both(&o));
        assert!(!exists(&lab.journal().display().to_string()));
        assert_eq!(lab.keeper_processes(), keepers, "the keeper is not left");
        // MHA was not involved: db2 replicates from db1 as before; give db1
        // its role back so that MHA can switch again.
        lab.mysql(
            "db2",
            lab.sql_for("SET GLOBAL read_only = 1", "SET GLOBAL super_read_only = 1"),
        );
        lab.mysql("db1", "SET GLOBAL read_only = 0");
        keepers[0]
    };
    let pid = orphan();
    let c = lab.check(&[]);
    assert!(
        both(&c).contains(&format!("session keeper pid {pid}")) && both(&c).contains("ended it"),
        "{}",
        both(&c)
    );
    assert!(lab.keeper_processes().is_empty());
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));

    let pid = orphan();
    let s = lab.switchover("db2", &[]);
    assert_eq!(s.status.code(), Some(0), "{}", both(&s));
    assert!(
        stderr(&s).contains(&format!("ended the orphaned session keeper pid {pid}")),
        "{}",
        both(&s)
    );
    assert!(lab.keeper_processes().is_empty());
}
