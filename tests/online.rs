//! The online switchover, through the real MHA manager in the lab: the
//! `master-ip-online-change` hook blocks writes, journals, rolls back, and
//! `recover` puts the cluster back after a crash at any step.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn ip(lab: &Lab, h: &str) -> String {
    lab.var(&format!("MHALAB_IP_{h}"))
}

/// The ids of application sessions on `host` whose query matches `like`.
fn session_ids(lab: &Lab, host: &str, like: &str) -> Vec<u64> {
    lab.mysql(
        host,
        &format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER='app' AND INFO LIKE '{like}'"
        ),
    )
    .lines()
    .skip(1)
    .filter_map(|l| l.trim().parse().ok())
    .collect()
}

fn wait_session(lab: &Lab, host: &str, like: &str) -> u64 {
    let mut id = 0;
    assert!(
        wait_for(Duration::from_secs(10), || {
            id = session_ids(lab, host, like).first().copied().unwrap_or(0);
            id > 0
        }),
        "session '{like}' never showed up on {host}"
    );
    id
}

/// The record of `step` in a JSON report.
fn step_of<'a>(report: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == step))
        .unwrap_or_else(|| panic!("no step {step} in the report: {report}"))
}

fn assert_master(state: &State, lab: &Lab, master: &str) {
    for h in &state.hosts {
        if h.host == master {
            assert!(!h.read_only, "{master} should be writable: {h:?}");
            assert_eq!(h.replica_of, None, "{master} should not be a replica");
        } else {
            assert!(h.read_only, "{} should be read_only", h.host);
            assert_eq!(
                h.replica_of,
                Some((ip(lab, master), true)),
                "{} should replicate from {master}",
                h.host
            );
        }
    }
}

fn assert_same_grants(before: &State, after: &State) {
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }
}

#[test]
fn switchover_db1_to_db2_and_back_keeps_every_grant_and_ends_old_sessions() {
    let lab = Lab::lock();
    lab.set_helper_conf("[default]\ngrace_period = 1\n");
    let before = lab.state();
    assert_master(&before, &lab, "db1");

    let session = lab.app_session("app", "db1", "SELECT SLEEP(60)");
    let id = wait_session(&lab, "db1", "SELECT SLEEP(60)%");

    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let out = stdout(&o);
    assert!(out.contains("switched db1 -> db2"), "{out}");
    assert!(out.contains("sessions killed on db1: 1"), "{out}");
    assert!(out.contains(&format!("id={id} ")), "{out}");
    let ended = session.wait_with_output().unwrap();
    assert!(
        !ended.status.success(),
        "the session on db1 should have been killed"
    );

    let after = lab.settled_state();
    assert_master(&after, &lab, "db2");
    assert_same_grants(&before, &after);
    // The application writes on the new master, not on the old one.
    lab.app_sql("app", "db2", "INSERT INTO t1 (val) VALUES ('after switch')")
        .unwrap();
    assert!(lab
        .app_sql("app", "db1", "INSERT INTO t1 (val) VALUES ('old master')")
        .is_err());

    let o = lab.switchover("db1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("switched db2 -> db1"), "{}", both(&o));
    let back = lab.settled_state();
    assert_eq!(
        back, before,
        "the cluster is not as it was before both switches"
    );
}

#[test]
fn after_stop_application_accounts_cannot_write_on_the_old_master_and_recover_undoes_it() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for user in ["app", "roleuser", "o'brien"] {
        let r = lab.app_sql(
            user,
            "db1",
            "INSERT INTO appdb.t1 (val) VALUES ('blocked?')",
        );
        assert!(r.is_err(), "{user} could still write on db1 after stop");
    }
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "1");
    // A second stop is safe: it sees the stop done and changes nothing.
    let again = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", both(&again));
    assert!(stderr(&again).contains("already"), "{}", both(&again));

    // MHA never switched: recover rolls everything back.
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(stderr(&r).contains("rolled back"), "{}", both(&r));
    assert_eq!(lab.settled_state(), before);
    lab.app_sql(
        "app",
        "db1",
        "INSERT INTO appdb.t1 (val) VALUES ('writable again')",
    )
    .unwrap();
}

#[test]
fn failure_during_stop_makes_mha_abort_and_leaves_the_cluster_as_it_was() {
    let lab = Lab::lock();
    let before = lab.state();
    for point in [
        "fail@after:block-accounts",
        "fail@after:old-master-read-only",
    ] {
        let o = lab.switchover("db2", &[("MHA_HELPER_FAULT", point)]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "{point}: switchover should fail\n{}",
            both(&o)
        );
        let text = stderr(&o);
        assert!(text.contains("injected failure"), "{point}: {text}");
        assert!(!text.contains("ROLLBACK INCOMPLETE"), "{point}: {text}");
        let after = lab.settled_state();
        assert_eq!(after, before, "{point}: the cluster changed");
        lab.app_sql(
            "app",
            "db1",
            "INSERT INTO appdb.t1 (val) VALUES ('still master')",
        )
        .unwrap();
    }
}

#[test]
fn kill_9_at_each_mutation_point_then_recover_restores_the_snapshot() {
    let lab = Lab::lock();
    let before = lab.state();
    let points = [
        "before:new-master-read-only",
        "after:new-master-read-only",
        "before:block-accounts",
        "after:block-accounts",
        "after:drain-sessions",
        "after:kill-sessions",
        "before:old-master-read-only",
        "after:old-master-read-only",
    ];
    for p in points {
        let fault = format!("kill@{p}");
        let o = lab.online_hook("stop", "db1", "db2", &[], &[("MHA_HELPER_FAULT", &fault)]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "{p}: the hook should have been killed\n{}",
            both(&o)
        );
        assert!(
            stderr(&o).contains(&format!("fault point {p}")),
            "{p}: {}",
            both(&o)
        );
        let r = lab.recover();
        assert_eq!(
            r.status.code(),
            Some(0),
            "{p}: recover failed\n{}",
            both(&r)
        );
        assert_eq!(
            lab.settled_state(),
            before,
            "{p}: state after recover differs from the snapshot"
        );
    }
}

#[test]
fn start_killed_before_it_opens_the_new_master_makes_mha_abort_and_the_switch_is_undone() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.switchover(
        "db2",
        &[("MHA_HELPER_FAULT", "start/kill@after:start-begun")],
    );
    // MHA sees the start hook die and aborts before it repoints any
    // replica; `switchover` finds the open journal and settles it: the
    // cluster says the switch did not happen, so it is undone.
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("not switched: db2 still replicates from db1"),
        "{}",
        both(&o)
    );
    assert!(
        stdout(&o).contains("db1 is the master as before"),
        "{}",
        both(&o)
    );
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(stderr(&r).contains("nothing to recover"), "{}", both(&r));
    assert_eq!(
        lab.settled_state(),
        before,
        "the cluster is not as it was before the switch"
    );
}

#[test]
fn start_killed_after_it_opened_the_new_master_makes_mha_abort_and_the_switch_is_finished() {
    killed_after_opening_finishes_the_switch("start/kill@after:new-master-writable");
}

#[test]
fn start_killed_before_it_recorded_the_opening_still_lets_the_switch_be_finished() {
    // db2 is open but the journal lacks where its log stood at the opening:
    // the position read just before (read-only, journaled first) serves.
    killed_after_opening_finishes_the_switch("start/kill@applied:new-master-writable");
}

fn killed_after_opening_finishes_the_switch(fault: &str) {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.switchover("db2", &[("MHA_HELPER_FAULT", fault)]);
    // db2 is open: going back could strand what it took; MHA aborted
    // before repointing anyone, so mha-helper finishes the switch.
    assert_eq!(o.status.code(), Some(0), "{fault}: {}", both(&o));
    assert!(
        stdout(&o).contains("finished by mha-helper")
            && stdout(&o).contains("repointed to db2: db3, db1"),
        "{fault}: {}",
        both(&o)
    );
    lab.assert_settled_on("db2");
    let after = lab.state();
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }
    let r = lab.recover();
    assert!(stderr(&r).contains("nothing to recover"), "{}", both(&r));
}

#[test]
fn mha_password_with_dollar_space_quote_and_backslash_works_through_mha_escaping() {
    let mut lab = Lab::lock();
    let pw = "pa$ s'q\"w\\x";
    lab.reset_with_password(pw);
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
    let before = lab.state();
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let after = lab.settled_state();
    assert_master(&after, &lab, "db2");
    assert_same_grants(&before, &after);
}

#[test]
fn grace_period_spares_sessions_that_end_in_time_and_kills_the_rest_at_the_deadline() {
    let lab = Lab::lock();
    lab.set_helper_conf("[default]\ngrace_period = 2\n");
    let before = lab.state();
    let quick = lab.app_session("app", "db1", "SELECT SLEEP(1)");
    let slow = lab.app_session("app", "db1", "SELECT SLEEP(30)");
    let quick_id = wait_session(&lab, "db1", "SELECT SLEEP(1)%");
    let slow_id = wait_session(&lab, "db1", "SELECT SLEEP(30)%");

    let started = Instant::now();
    let o = lab.online_hook("stop", "db1", "db2", &["--format=json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    // The slow one is killed at the deadline; the quick one is never killed
    // while its statement runs: at most ended as idle once it finished and
    // before its client hung up.
    let killed: Vec<(u64, bool)> = report["killed_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["idle"].as_bool().unwrap()))
        .collect();
    assert!(
        killed.contains(&(slow_id, false))
            && killed
                .iter()
                .all(|k| *k == (slow_id, false) || *k == (quick_id, true)),
        "only the slow session is killed at the deadline (quick was {quick_id}): {killed:?}"
    );
    let drain_ms = step_of(&report, "drain-sessions")["ms"].as_u64().unwrap();
    // Not before the deadline, and not waiting for the 30 s statement: how
    // close to the deadline is the benchmark's to show (a loaded machine
    // adds round trips here, and has added 435 ms).
    assert!(
        (2000..7000).contains(&drain_ms),
        "the kill should come at the 2 s deadline, drain took {drain_ms} ms"
    );
    assert!(
        quick.wait_with_output().unwrap().status.success(),
        "the quick session finished on its own"
    );
    assert!(
        !slow.wait_with_output().unwrap().status.success(),
        "the slow session was killed"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(lab.settled_state(), before);
}

#[test]
fn idle_sessions_are_ended_at_once_and_the_grace_period_waits_only_for_work_in_flight() {
    let lab = Lab::lock();
    // The open transaction is the test's own: not a long one to refuse.
    lab.set_helper_conf("[default]\ngrace_period = 2\nlong_transaction_limit = 600\n");
    lab.mysql(
        "db1",
        "CREATE TABLE appdb.drain_probe (id INT PRIMARY KEY) ENGINE=InnoDB",
    );
    let before = lab.settled_state();
    let idle = lab.app_session_held("app", "db1", "SELECT 1;");
    let in_trx = lab.app_session_held("app", "db1", "BEGIN; INSERT INTO drain_probe VALUES (1);");
    let (mut idle_id, mut trx_id) = (String::new(), String::new());
    assert!(
        wait_for(Duration::from_secs(10), || {
            trx_id = lab.value(
                "db1",
                "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX",
            );
            idle_id = lab.value(
                "db1",
                &format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app' \
                     AND COMMAND = 'Sleep' AND ID <> '{trx_id}'"
                ),
            );
            !trx_id.is_empty() && !idle_id.is_empty()
        }),
        "the two application sessions never showed up on db1"
    );

    let o = lab.online_hook("stop", "db1", "db2", &["--format=json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    assert_eq!(
        report["sessions_at_block"],
        serde_json::json!({"idle": 1, "busy": 1}),
        "{report}"
    );
    let killed: Vec<(String, bool)> = report["killed_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].to_string(), s["idle"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        killed,
        vec![(idle_id, true), (trx_id, false)],
        "the idle session first, by the drain; the one in a transaction at the deadline"
    );
    let drain = step_of(&report, "drain-sessions")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        drain.contains("(1 idle, 1 with work in flight); 1 ended while idle"),
        "{drain}"
    );
    assert!(
        !drain.contains("after 0 poll(s)"),
        "the transaction was waited for: {drain}"
    );
    // The transaction ended with its session: rolled back.
    assert_eq!(
        lab.value("db1", "SELECT COUNT(*) FROM appdb.drain_probe"),
        "0"
    );
    // Their clients end as their input does.
    let _ = idle.wait_with_output();
    let _ = in_trx.wait_with_output();
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(lab.settled_state(), before);
}

#[test]
fn no_password_in_any_argv_or_environment_during_the_switch() {
    let lab = Lab::lock();
    let pw = lab.var("MHALAB_MHA_PASSWORD");
    let watch = LeakWatch::start(vec![pw.clone()]);
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let (hits, samples) = watch.finish();
    assert!(samples > 50, "only {samples} samples");
    // MHA's hook contract puts the passwords in the hook's argv when it
    // starts it (`sh -c "<hook> ... --orig_master_password=..."`); the hook
    // hides them as its main() starts (proved by the next test). Everything
    // else — our SSH commands, the remote mysql clients, environments —
    // must never show them.
    let ours: Vec<&String> = hits
        .iter()
        .filter(|h| {
            !(h.contains(" cmdline: ")
                && h.contains("master-ip-")
                && h.contains("_master_password="))
        })
        .collect();
    assert!(ours.is_empty(), "password visible in:\n{ours:#?}");
}

#[test]
fn hook_hides_the_passwords_mha_puts_in_its_argv() {
    let lab = Lab::lock();
    let pw = lab.var("MHALAB_MHA_PASSWORD");
    let mut child = std::process::Command::new(repo().join("scripts/lab"))
        .args([
            "exec",
            "mgr",
            bin(),
            "master-ip-online-change",
            &format!("--conf={}", lab.app_cnf()),
            "--dry-run",
            "--command=stop",
            "--orig_master_host=db1",
            "--new_master_host=db2",
            &format!("--orig_master_password={pw}"),
            &format!("--new_master_password={pw}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // MHA itself puts the password in our argv, so it is readable from
    // exec until main() scrubs it (the loader's few milliseconds; a busy
    // machine has caught that window). What we pin: once the hook is
    // running, its argv shows xxx, never the password.
    let mut pid = None;
    wait_for(Duration::from_secs(5), || {
        pid = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let c = cmdline(&e.path())?;
            let ours = c.contains(bin())
                && c.contains("--dry-run")
                && !c.starts_with("/bin/bash")
                && !c.contains("scripts/lab");
            ours.then(|| e.path())
        });
        pid.is_some()
    });
    let pid = pid.expect("the hook process was never seen");
    let mut last = None;
    let scrubbed = std::iter::from_fn(|| cmdline(&pid))
        .inspect(|c| {
            last = Some(c.clone());
            std::thread::sleep(Duration::from_millis(2));
        })
        .any(|c| c.contains("--orig_master_password=xxx"));
    child.wait().unwrap();
    let c = last.unwrap_or_default();
    assert!(scrubbed, "the running hook never hid its passwords: {c}");
    assert!(!c.contains(&pw), "password visible: {c}");
}

/// A process's argv as one line, while it lives.
fn cmdline(proc_dir: &std::path::Path) -> Option<String> {
    let c = std::fs::read(proc_dir.join("cmdline")).ok()?;
    (!c.is_empty()).then(|| String::from_utf8_lossy(&c).replace('\0', " "))
}
