//! `mha-helper shutdown` as MHA's shutdown_script, in a dead-master failover
//! through real MHA: a master MHA takes for dead while its server still runs
//! is stopped over SSH; one without SSH is powered off by the configured
//! command.

mod common;

use std::time::Duration;

use common::*;

/// The lab's MHA config with `shutdown_script` set to mha-helper.
fn conf_with_shutdown_script(lab: &Lab) -> String {
    let line = format!(
        "shutdown_script={} shutdown --conf={{conf}} --helper-conf={}",
        bin(),
        lab.helper_cnf()
    );
    lab.app_cnf_with("shutdown", &line)
}

/// The pid of `host`'s server, from its pid file.
fn server_pid(lab: &Lab, host: &str) -> u32 {
    let p = lab.dir().join(host).join("run/mysqld.pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

fn failover(lab: &Lab, conf: &str) -> std::process::Output {
    lab.failover_with_conf(conf, "db1", &["--new-master", "db2"])
}

struct Unblock;

impl Drop for Unblock {
    fn drop(&mut self) {
        common::lab(&["unblock-mysql", "db1"]);
    }
}

#[test]
fn a_master_cut_off_from_the_manager_s_mysql_port_is_stopped_over_ssh_during_the_failover() {
    let lab = Lab::lock();
    // The lab's SSH user may run kill through sudo (and nothing but ip, arping, kill).
    lab.set_helper_conf("[default]\nrequires_sudo = yes\nshutdown_timeout = 20\n");
    let conf = conf_with_shutdown_script(&lab);
    let pid = server_pid(&lab, "db1");
    let _unblock = Unblock;
    common::lab(&["block-mysql", "db1"]);
    // The server still runs and answers its own client; the manager cannot reach it.
    assert_eq!(lab.value("db1", "SELECT 1"), "1");
    assert!(!gone(pid));

    let o = failover(&lab, &conf);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let log = both(&o) + &lab.manager_log();
    assert!(
        log.contains("shutdown --conf="),
        "MHA did not run the shutdown script:\n{log}"
    );
    assert!(
        log.contains("SSH reachable. Shutting down mysqld done."),
        "MHA did not take exit 10:\n{log}"
    );
    assert!(
        log.contains(&format!("db1: server stopped over SSH: gone {pid} (")),
        "{log}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || gone(pid)),
        "db1's server (pid {pid}) still runs"
    );
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "0");
    assert_eq!(lab.value("db3", "SELECT @@GLOBAL.read_only"), "1");
}

#[test]
fn a_dead_master_without_ssh_is_powered_off_by_the_configured_command_or_the_failover_stops() {
    let lab = Lab::lock();
    let conf = conf_with_shutdown_script(&lab);
    let pid = server_pid(&lab, "db1");
    let _unblock = Unblock;
    common::lab(&["block-mysql", "db1"]);
    common::lab(&["stop-sshd", "db1"]);

    // Nothing configured: exit 1, and MHA stops before it makes a new master.
    lab.set_helper_conf("[default]\n");
    let o = failover(&lab, &conf);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let log = both(&o) + &lab.manager_log();
    assert!(
        log.contains("no SSH to stop its server and no power_off_command"),
        "{log}"
    );
    assert!(log.contains("Failed to execute shutdown_script"), "{log}");
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "1");
    assert!(!gone(pid));

    // The lab's "power switch" for a host: kill -9 of its server.
    let mark = lab.dir().join("manager/powered-off");
    let _ = std::fs::remove_file(&mark);
    lab.set_helper_conf(&format!(
        "[default]\npower_off_command = {} kill-mysql {{host}} && echo {{host}} {{ip}} > {}\n",
        lab_script().display(),
        mark.display()
    ));
    let o = failover(&lab, &conf);
    // MHA refuses to repeat a failed failover for a while unless told.
    let o = if o.status.code() != Some(0) && both(&o).contains("last_failover") {
        let _ = std::fs::remove_dir_all(lab.var("MHALAB_WORKDIR"));
        std::fs::create_dir_all(lab.var("MHALAB_WORKDIR")).unwrap();
        failover(&lab, &conf)
    } else {
        o
    };
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        lab.manager_log().contains(" Power off done."),
        "{}",
        lab.manager_log()
    );
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap().trim(),
        format!("db1 {}", lab.var("MHALAB_IP_db1"))
    );
    assert!(wait_for(Duration::from_secs(5), || gone(pid)));
    assert_eq!(lab.value("db2", "SELECT @@GLOBAL.read_only"), "0");
}
