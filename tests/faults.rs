//! Faults a switch meets in the field, tried for real in the lab: a phase
//! killed at the worst moment must leave nothing behind that blocks the
//! next switch, and a switch interrupted after the new master opened must
//! be reported as it is and finished.

mod common;

use std::process::Output;
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
    assert!(
        wait_for(Duration::from_secs(2), || lab.keeper_processes().is_empty()),
        "{:?}",
        lab.keeper_processes()
    );
}

/// A row written through the application account on `host`; true if the
/// server took it.
fn app_write(lab: &Lab, host: &str, val: &str) -> bool {
    lab.app_sql(
        "app",
        host,
        &format!("INSERT INTO appdb.t1 (val) VALUES ('{val}')"),
    )
    .is_ok()
}

fn rows(lab: &Lab, host: &str, val: &str) -> String {
    lab.value(
        host,
        &format!("SELECT COUNT(*) FROM appdb.t1 WHERE val = '{val}'"),
    )
}

/// `mha-helper switchover` whose start hook, once done (db2 open, grants
/// given back), waits at a fault point: the test then interrupts the
/// switch with `interrupt` and lets the hook go. Returns the switchover's
/// output, after an application write on the open db2.
fn switchover_interrupted_after_the_open(lab: &Lab, interrupt: &dyn Fn(&Lab, u32)) -> Output {
    let dir = lab.fault_dir("after-open");
    let d = dir.display().to_string();
    let child = lab.switchover_spawn(
        "db2",
        &[
            ("MHA_HELPER_FAULT", "start/wait@after:start-closed"),
            ("MHA_HELPER_FAULT_DIR", &d),
        ],
    );
    let pid = child.id();
    let wait = wait_point(&dir, "after:start-closed", Duration::from_secs(60));
    // db2 is open and takes a write before MHA repointed anyone
    assert!(
        app_write(lab, "db2", "after-open"),
        "db2 did not take writes"
    );
    interrupt(lab, pid);
    std::fs::remove_file(&wait).unwrap();
    finish(child, Duration::from_secs(120))
}

/// The end every forward-finished switch must reach: db2 the master, db1
/// and db3 following it with the write db2 took, grants as before, nothing
/// left to recover, and the next switch possible at once.
fn assert_finished_forward(lab: &Lab, o: &Output, grants_before: &State) {
    assert_eq!(o.status.code(), Some(0), "{}", both(o));
    let out = stdout(o);
    assert!(out.contains("switched db1 -> db2"), "{out}");
    assert!(out.contains("finished by mha-helper"), "{out}");
    assert!(out.contains("repointed to db2: db3, db1"), "{out}");
    assert!(
        out.contains("db3: read-only, replicates from db2 (both threads running)"),
        "{out}"
    );
    lab.assert_settled_on("db2");
    assert!(wait_for(Duration::from_secs(10), || HOSTS
        .iter()
        .all(|h| rows(lab, h, "after-open") == "1")));
    let after = lab.state();
    for (b, a) in grants_before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants changed on {}", b.host);
    }
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(stderr(&r).contains("nothing to recover"), "{}", both(&r));
    let back = lab.switchover("db1", &[]);
    assert_eq!(back.status.code(), Some(0), "{}", both(&back));
    lab.assert_settled_on("db1");
}

/// MHA killed -9 after our start had opened db2 and given the grants back,
/// while it was about to repoint db3 and db1: the switchover says the
/// master changed and who follows whom, and finishes the repoint.
#[test]
fn mha_killed_after_the_new_master_opened_is_finished_forward_and_reported_as_it_is() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = switchover_interrupted_after_the_open(&lab, &|lab, _| {
        let pids = lab.mha_switch_pids();
        assert!(!pids.is_empty(), "no masterha_master_switch running");
        for p in pids {
            // SAFETY: MHA processes this test's switchover started.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
    });
    assert!(
        stdout(&o).contains("MHA ended with killed by signal 9"),
        "{}",
        both(&o)
    );
    assert_finished_forward(&lab, &o, &before);
}

/// The operator's Ctrl-C (SIGINT to the whole foreground process group:
/// mha-helper, MHA and the hook) once db2 is open and taking writes: the
/// switch cannot go back without losing them, so it is finished.
#[test]
fn ctrl_c_after_the_new_master_opened_finishes_the_switch() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = switchover_interrupted_after_the_open(&lab, &|_, pgid| {
        // SAFETY: the process group of the switchover this test started.
        unsafe { libc::kill(-(pgid as i32), libc::SIGINT) };
    });
    assert!(stdout(&o).contains("MHA was interrupted"), "{}", both(&o));
    assert_finished_forward(&lab, &o, &before);
}

/// The operator's Ctrl-C while application writes are blocked on db1,
/// before db2 was opened: everything is undone, db1 is the master as
/// before, and the command says the switchover failed (exit 1).
#[test]
fn ctrl_c_before_the_new_master_opened_rolls_the_switch_back() {
    let lab = Lab::lock();
    let before = lab.state();
    let dir = lab.fault_dir("before-open");
    let d = dir.display().to_string();
    let child = lab.switchover_spawn(
        "db2",
        &[
            ("MHA_HELPER_FAULT", "stop/wait@after:drain-sessions"),
            ("MHA_HELPER_FAULT_DIR", &d),
        ],
    );
    let wait = wait_point(&dir, "after:drain-sessions", Duration::from_secs(60));
    assert!(
        !app_write(&lab, "db1", "blocked"),
        "db1 took a write while blocked"
    );
    // SAFETY: the process group of the switchover this test started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let _ = std::fs::remove_file(&wait);
    let o = finish(child, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o)
            .contains("mha-helper undid every change it had made: db1 is the master as before"),
        "{}",
        both(&o)
    );
    assert_eq!(lab.settled_state(), before);
    assert!(app_write(&lab, "db1", "after-rollback"));
    let s = lab.switchover("db2", &[]);
    assert_eq!(s.status.code(), Some(0), "{}", both(&s));
}
