//! What only MySQL has: GTID catch-up and errant transactions, dynamic
//! privileges that write through read_only, default roles outside SHOW
//! GRANTS, super_read_only refusing GRANT. These run on the lab's MySQL
//! flavour (`scripts/test` runs this file only there); on any other
//! flavour every test here fails, never skips.

mod common;

use common::*;

fn mysql_lab() -> Lab {
    let lab = Lab::lock();
    assert!(
        lab.is_mysql(),
        "tests/mysql.rs needs the lab's MySQL flavour (MHALAB_FLAVOUR=mysql-9.7), not {}",
        lab.var("MHALAB_FLAVOUR")
    );
    lab
}

/// Accounts the round trip must keep exactly: a dynamic privilege that
/// writes through read_only, held directly and through a role that is a
/// default role; two default roles; WITH GRANT OPTION; a locked account;
/// REQUIRE SSL with resource limits; a column grant with a quote in the
/// name. And a role granted to nobody, which is no application account.
const AWKWARD: &str = "\
CREATE ROLE r_admin, r_read, r_write, r_idle;
GRANT DELETE ON appdb.* TO r_idle;
GRANT CONNECTION_ADMIN ON *.* TO r_admin;
GRANT SELECT ON appdb.* TO r_read;
GRANT INSERT, UPDATE ON appdb.* TO r_write;
GRANT r_admin, r_read, r_write TO 'mha'@'%' WITH ADMIN OPTION;
CREATE USER 'dyn'@'%' IDENTIFIED BY 'x-Lab-1';
GRANT CONNECTION_ADMIN, SELECT ON *.* TO 'dyn'@'%';
GRANT INSERT ON appdb.* TO 'dyn'@'%' WITH GRANT OPTION;
CREATE USER 'via_role'@'%' IDENTIFIED BY 'x-Lab-1';
GRANT r_admin, r_write TO 'via_role'@'%';
SET DEFAULT ROLE r_admin, r_write TO 'via_role'@'%';
CREATE USER 'two_roles'@'%' IDENTIFIED BY 'x-Lab-1';
GRANT r_read, r_write TO 'two_roles'@'%';
ALTER USER 'two_roles'@'%' DEFAULT ROLE r_read, r_write;
CREATE USER 'locked_u'@'%' IDENTIFIED BY 'x-Lab-1' ACCOUNT LOCK;
GRANT SELECT, INSERT ON appdb.t1 TO 'locked_u'@'%';
CREATE USER 'tls_u'@'%' IDENTIFIED BY 'x-Lab-1' REQUIRE SSL WITH MAX_USER_CONNECTIONS 5 MAX_QUERIES_PER_HOUR 100;
GRANT SELECT (id), UPDATE (val) ON appdb.t1 TO 'tls_u'@'%';
CREATE USER 'it''s'@'NET.%' IDENTIFIED BY 'x-Lab-1';
GRANT SELECT, DELETE ON appdb.* TO 'it''s'@'NET.%'";

fn with_awkward_accounts(lab: &Lab) {
    // the application's password, so that app_sql can log in as them
    lab.mysql(
        "db1",
        &AWKWARD
            .replace("x-Lab-1", &lab.var("MHALAB_APP_PASSWORD"))
            .replace("'NET.%'", &format!("'{}.%'", lab.var("MHALAB_NET"))),
    );
    // replicated to db2 and db3
    assert!(wait_for(std::time::Duration::from_secs(10), || {
        lab.value(
            "db3",
            "SELECT COUNT(*) FROM mysql.user WHERE User = 'it''s'",
        ) == "1"
    }));
}

/// One host's accounts: grants and default roles by account, and `SHOW
/// CREATE USER` of the awkward ones (lock, REQUIRE, limits).
type Accounts = (String, Vec<(String, Vec<String>)>, String);

/// [`Accounts`] of every host.
fn accounts(lab: &Lab) -> Vec<Accounts> {
    HOSTS
        .iter()
        .map(|h| {
            let create = lab.mysql(
                h,
                "SHOW CREATE USER 'locked_u'@'%'; SHOW CREATE USER 'tls_u'@'%'; \
                 SHOW CREATE USER 'via_role'@'%'",
            );
            (h.to_string(), lab.grants(h), create)
        })
        .collect()
}

#[test]
fn awkward_mysql_accounts_keep_identical_grants_through_a_switch_a_rollback_and_a_recover() {
    let lab = mysql_lab();
    with_awkward_accounts(&lab);
    let before = accounts(&lab);
    // default roles are compared too (MySQL's SHOW GRANTS lacks them)
    assert!(
        before[0]
            .1
            .iter()
            .any(|(a, g)| a == "via_role@%" && g.iter().any(|l| l == "DEFAULT ROLE 'r_admin'@'%'")),
        "{:?}",
        before[0].1
    );
    assert_eq!(
        before[0].1, before[1].1,
        "db1 and db2 differ before the switch"
    );

    // a switch and back, through MHA
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let o = lab.switchover("db1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(accounts(&lab), before, "after a switch and back");

    // a rollback after the old master went read-only (super_read_only on)
    let o = lab.switchover(
        "db2",
        &[("MHA_HELPER_FAULT", "fail@after:old-master-read-only")],
    );
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(accounts(&lab), before, "after a rollback");

    // kill -9 with the grants revoked and super_read_only on, then recover
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "kill@after:old-master-read-only")],
    );
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.super_read_only"), "1");
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(accounts(&lab), before, "after recover");
}

#[test]
fn connection_admin_held_directly_or_through_a_role_is_blocked_by_revoke_and_by_account_lock() {
    let lab = mysql_lab();
    with_awkward_accounts(&lab);
    for method in ["revoke", "account_lock"] {
        // read_only alone: CONNECTION_ADMIN would write through it
        lab.set_helper_conf(&format!(
            "[default]\nblock_method = {method}\nsuper_read_only = off\n"
        ));
        let before = lab.state();
        let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
        assert_eq!(o.status.code(), Some(0), "{method}: {}", both(&o));
        assert!(stderr(&o).contains("'dyn'@'%'"), "{}", both(&o));
        assert!(
            !stderr(&o).contains("r_idle"),
            "a role was blocked: {}",
            both(&o)
        );
        assert_eq!(lab.value("db1", "SELECT @@GLOBAL.super_read_only"), "0");
        for user in ["dyn", "via_role"] {
            let w = lab.app_sql(
                user,
                "db1",
                "SET ROLE ALL; INSERT INTO appdb.t1 (val) VALUES ('through read_only?')",
            );
            assert!(
                w.is_err(),
                "{method}: {user} wrote on the old master after stop: {w:?}"
            );
        }
        let r = lab.recover();
        assert_eq!(r.status.code(), Some(0), "{method}: {}", both(&r));
        assert_eq!(lab.settled_state(), before, "{method}: after recover");
    }
}

#[test]
fn start_leaves_a_new_master_read_only_until_it_has_every_transaction_the_fenced_master_committed()
{
    let lab = mysql_lab();
    lab.set_helper_conf("[default]\nstep_timeout = 5\n");
    // db2 receives everything but applies it an hour late; the lag it
    // reports for a fresh write is still small, so the preflight passes.
    lab.mysql(
        "db2",
        "STOP REPLICA SQL_THREAD; CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 3600; \
         START REPLICA SQL_THREAD",
    );
    lab.app_sql("app", "db1", "INSERT INTO appdb.t1 (val) VALUES ('late')")
        .unwrap();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let o = lab.online_hook("start", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = stderr(&o);
    assert!(
        err.contains("has not executed every transaction db1 committed before its fence"),
        "{err}"
    );
    assert!(err.contains("missing: db1's "), "{err}");
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "1");
    // MHA aborts there, before it repoints anyone: db2 still replicates
    // from db1, so recover undoes the switch that did not happen.
    lab.mysql(
        "db2",
        "STOP REPLICA SQL_THREAD; CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0; \
         START REPLICA SQL_THREAD",
    );
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "0");
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "1");
    assert!(wait_for(std::time::Duration::from_secs(10), || lab.value(
        "db2",
        "SELECT COUNT(*) FROM appdb.t1 WHERE val = 'late'"
    ) == "1"));
    lab.app_sql(
        "app",
        "db1",
        "INSERT INTO appdb.t1 (val) VALUES ('master again')",
    )
    .unwrap();
}

#[test]
fn the_preflight_refuses_a_new_master_holding_transactions_the_old_master_never_had() {
    let lab = mysql_lab();
    // root writes on db2 through read_only (super_read_only lifted for it):
    // a transaction with db2's own GTID, which db1 never had.
    lab.replica_sql("db2", "INSERT INTO appdb.t1 (val) VALUES ('errant')");
    let before = lab.state();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = stderr(&o);
    assert!(
        err.contains("transaction(s) db1 never had (errant GTIDs"),
        "{err}"
    );
    assert_eq!(lab.state(), before);
}
