//! Thousands of application accounts, as a host of many tenants has: the
//! block, the restore and `recover` keep every grant of every account
//! exactly (all compared, none sampled), and an account that could write
//! through read_only by a role is still blocked. Every flavour.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ACCOUNTS: usize = 5_000;

/// `n` accounts created on db1 (replicated), in three shapes: table
/// privileges, schema privileges, a column grant. No passwords: nobody
/// logs in as them. Many accounts per statement: 10,000 statements, each
/// synced to disk, would take minutes.
fn create_accounts(lab: &Lab, n: usize) {
    let names: Vec<String> = (0..n).map(|i| format!("'tenant{i:05}'@'%'")).collect();
    let mut sql = String::with_capacity(n * 60);
    for chunk in names.chunks(500) {
        sql.push_str(&format!("CREATE USER {};\n", chunk.join(", ")));
    }
    let shapes = [
        "GRANT SELECT, INSERT ON appdb.writes TO",
        "GRANT SELECT, UPDATE ON appdb.* TO",
        "GRANT SELECT (id, val) ON appdb.t1 TO",
    ];
    for (k, grant) in shapes.iter().enumerate() {
        let mine: Vec<&String> = names.iter().skip(k).step_by(shapes.len()).collect();
        for chunk in mine.chunks(500) {
            let list: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            sql.push_str(&format!("{grant} {};\n", list.join(", ")));
        }
    }
    lab_stdin(&["mysql", "db1"], &sql);
    let count = "SELECT COUNT(*) FROM mysql.user";
    let want = lab.value("db1", count);
    let deadline = Instant::now() + Duration::from_secs(120);
    for h in ["db2", "db3"] {
        while lab.value(h, count) != want {
            assert!(
                Instant::now() < deadline,
                "{h} did not replicate the accounts"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn assert_same(before: &State, after: &State, what: &str) {
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(
            b.grants.len(),
            a.grants.len(),
            "{what}: {} accounts",
            b.host
        );
        for (x, y) in b.grants.iter().zip(&a.grants) {
            assert_eq!(x, y, "{what}: {} grants differ", b.host);
        }
    }
    assert_eq!(before, after, "{what}");
}

#[test]
fn five_thousand_accounts_keep_every_grant_through_a_block_a_kill_inside_it_and_a_switch_and_back()
{
    let lab = Lab::lock();
    create_accounts(&lab, ACCOUNTS);
    // roleuser's default role now writes through read_only
    let bypass = lab.bypass_privilege();
    lab.mysql("db1", &format!("GRANT {bypass} ON *.* TO app_writer"));
    let before = lab.settled_state();
    assert!(
        before.hosts[0].grants.len() > ACCOUNTS,
        "{}",
        before.hosts[0].grants.len()
    );
    assert_eq!(
        before.hosts[0].grants, before.hosts[1].grants,
        "db1 and db2 differ"
    );
    lab.app_sql(
        "roleuser",
        "db1",
        "INSERT INTO appdb.t1 (val) VALUES ('before')",
    )
    .expect("roleuser writes through its default role before the block");

    // The block: proven by the digest, every account revoked; the role's
    // bypass does not let roleuser write.
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let err = stderr(&o);
    assert!(err.contains("grants proven unchanged by digest"), "{err}");
    assert!(
        err.contains(&format!("{} account(s)", ACCOUNTS + 6)),
        "{err}"
    );
    assert!(err.contains("'roleuser'@'%' hold"), "{err}");
    let w = lab.app_sql(
        "roleuser",
        "db1",
        "INSERT INTO appdb.t1 (val) VALUES ('blocked?')",
    );
    assert!(
        w.is_err(),
        "roleuser wrote on the old master after stop: {w:?}"
    );
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert!(
        stderr(&r).contains("given back, proven by the grant tables' digest"),
        "{}",
        both(&r)
    );
    assert_same(&before, &lab.settled_state(), "after the block and recover");

    // kill -9 inside the block: the revokes ran, nothing after them was
    // journaled; recover gives everything back.
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "kill@applied:block-accounts")],
    );
    assert_eq!(o.status.code(), None, "not killed: {}", both(&o));
    assert_ne!(
        lab.grants("db1"),
        before.hosts[0].grants,
        "nothing was revoked"
    );
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_same(
        &before,
        &lab.settled_state(),
        "after a kill in the block and recover",
    );

    // A switch and back through MHA.
    for new in ["db2", "db1"] {
        let o = lab.switchover(new, &[]);
        assert_eq!(o.status.code(), Some(0), "to {new}: {}", both(&o));
    }
    assert_same(&before, &lab.settled_state(), "after a switch and back");
}

#[test]
fn forty_idle_sessions_are_ended_at_once_in_one_round_trip_and_none_is_left() {
    let lab = Lab::lock();
    let before = lab.settled_state();
    let held: Vec<_> = (0..40)
        .map(|_| lab.app_session_held("app", "db1", "SELECT 1;"))
        .collect();
    let count = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'";
    assert!(
        wait_for(Duration::from_secs(20), || lab.value("db1", count) == "40"),
        "the 40 sessions never showed up on db1: {}",
        lab.value("db1", count)
    );
    let o = lab.online_hook("stop", "db1", "db2", &["--format=json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    assert_eq!(
        report["sessions_at_block"],
        serde_json::json!({"idle": 40, "busy": 0}),
        "{report}"
    );
    let drain = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "drain-sessions")
        .unwrap()["detail"]
        .to_string();
    assert!(drain.contains("40 ended while idle"), "{drain}");
    assert_eq!(lab.value("db1", count), "0", "sessions left after stop");
    drop(held);
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_same(&before, &lab.settled_state(), "after recover");
}
