//! `recover` decides from what the cluster says, not from how far the
//! journal got: each row of its decision table (README "What recover
//! decides") that the lab can stage, after a real stop on the real hosts.

mod common;

use std::time::Duration;

use common::*;

fn stop(lab: &Lab) {
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
}

/// `host` replicates (configured, not started) from `source`.
fn point_at(lab: &Lab, host: &str, source: &str) {
    lab.point_at(host, source);
}

/// Recover refuses with exit 3, says `why`, and changes nothing.
fn assert_refused(lab: &Lab, why: &str) {
    let held = lab.state();
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(3), "{}", both(&r));
    assert!(stderr(&r).contains(why), "expected '{why}':\n{}", both(&r));
    assert!(
        stderr(&r).contains("refused, nothing changed"),
        "{}",
        both(&r)
    );
    assert_eq!(lab.state(), held, "a refusing recover changed the cluster");
    assert!(
        lab.journal().exists(),
        "a refusing recover closed the journal"
    );
}

#[test]
fn switched_by_mha_with_our_start_failed_recover_completes_the_switch() {
    let lab = Lab::lock();
    let before = lab.state();
    // start fails before opening db2: exit 10, MHA opens db2 itself and
    // repoints the replicas; switchover then recovers what start owes.
    let o = lab.switchover(
        "db2",
        &[("MHA_HELPER_FAULT", "start/fail@before:new-master-writable")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("switched: db1, db3 replicate from db2")
            || stderr(&o).contains("switched: db3, db1 replicate from db2"),
        "{}",
        both(&o)
    );
    assert!(
        stdout(&o).contains("mha-helper finished what its hooks had left"),
        "{}",
        both(&o)
    );
    let after = lab.settled_state();
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "0");
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }
}

/// The row the issue of MHA dying after the open asked for: db2 opened by
/// this switch took an application write while nobody followed it yet.
/// Undoing would strand the write; with GTID (MySQL's sets, MariaDB's
/// positions) every other host is provably behind db2, so the switch is
/// finished forward and the write reaches every host.
#[test]
fn a_new_master_this_switch_opened_that_took_writes_is_kept_and_the_switch_finished_forward() {
    let lab = Lab::lock();
    stop(&lab);
    // start opens db2 and then fails (exit 10, journal kept open).
    let o = lab.online_hook(
        "start",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "fail@before:restore-grants")],
    );
    assert_eq!(o.status.code(), Some(10), "{}", both(&o));
    // No MHA: nobody was repointed, yet db2 took an application write.
    lab.app_sql("app", "db2", "INSERT INTO t1 (val) VALUES ('kept')")
        .unwrap();
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(
        stderr(&r).contains("point of no return") && stderr(&r).contains("repointing db3, db1"),
        "{}",
        both(&r)
    );
    lab.assert_settled_on("db2");
    assert!(wait_for(Duration::from_secs(10), || HOSTS.iter().all(
        |h| { lab.value(h, "SELECT COUNT(*) FROM appdb.t1 WHERE val = 'kept'") == "1" }
    )));
}

#[test]
fn a_master_moved_to_a_third_host_is_refused_and_abandon_closes_the_journal_untouched() {
    let lab = Lab::lock();
    stop(&lab);
    point_at(&lab, "db1", "db3");
    point_at(&lab, "db2", "db3");
    lab.detach_replica("db3");
    assert_refused(&lab, "replicate from db3, which is neither db1 nor db2");
    let held = lab.state();
    let a = lab.recover_with(&["--abandon"]);
    assert_eq!(a.status.code(), Some(0), "{}", both(&a));
    assert!(
        stderr(&a).contains("without touching any host"),
        "{}",
        both(&a)
    );
    assert!(!lab.journal().exists());
    assert_eq!(lab.state(), held);
}

#[test]
fn an_old_master_repointed_while_a_replica_still_follows_it_is_refused_as_half_way() {
    let lab = Lab::lock();
    stop(&lab);
    point_at(&lab, "db1", "db2");
    assert_refused(&lab, "MHA stopped half-way");
}

#[test]
fn an_unreachable_old_master_is_refused_then_undone_once_it_answers() {
    let lab = Lab::lock();
    let before = lab.state();
    stop(&lab);
    common::lab(&["link-down", "db1"]);
    let r = lab.recover();
    common::lab(&["link-up", "db1"]);
    assert_eq!(r.status.code(), Some(3), "{}", both(&r));
    assert!(stderr(&r).contains("db1 ("), "{}", both(&r));
    assert!(stderr(&r).contains("not answering"), "{}", both(&r));
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(stderr(&r).contains("not switched"), "{}", both(&r));
    assert_eq!(lab.settled_state(), before);
}

#[test]
fn a_new_master_reset_by_hand_while_the_replicas_follow_the_old_one_is_undone() {
    let lab = Lab::lock();
    let mut before = lab.state();
    stop(&lab);
    lab.detach_replica("db2");
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(stderr(&r).contains("stays detached"), "{}", both(&r));
    // Everything is back but db2's replication, which was reset by hand.
    let mut after = lab.settled_state();
    assert_eq!(after.hosts[1].replica_of, None);
    before.hosts[1].replica_of = None;
    after.hosts[1].replica_of = None;
    assert_eq!(after, before);
}

#[test]
fn a_failover_that_mha_never_finished_is_undone_and_the_old_master_opened_again() {
    let lab = Lab::lock();
    let before = lab.state();
    // stopssh fences a db1 whose mysqld still answers; then MHA stops.
    let o = lab.stopssh("db1");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "1");
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(
        stderr(&r).contains("not switched: MHA never got as far as a new master"),
        "{}",
        both(&r)
    );
    assert!(wait_for(Duration::from_secs(5), || lab.settled_state() == before));
}
