//! `mha-helper check` against the namespaced lab: passes when healthy, and
//! fails naming the host and the cause for each kind of breakage.

mod common;

use common::*;

fn assert_fails_naming(o: &std::process::Output, host: &str, cause: &str) {
    let text = format!("{}{}", stdout(o), stderr(o));
    assert_eq!(o.status.code(), Some(1), "check should fail:\n{}", both(o));
    let line = text
        .lines()
        .find(|l| l.contains("FAIL") && l.contains(host) && l.contains(cause))
        .unwrap_or_else(|| panic!("no FAIL line naming {host} and '{cause}':\n{}", both(o)));
    assert!(!line.is_empty());
}

#[test]
fn check_passes_on_the_healthy_lab() {
    let lab = Lab::lock();
    let o = lab.check(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let out = stdout(&o);
    assert!(out.contains("OK: 3 host(s), master db1"), "{out}");
    for h in HOSTS {
        assert!(
            out.lines().any(|l| l.starts_with(h) && l.contains(" ok ")),
            "{h} not ok:\n{out}"
        );
    }
}

#[test]
fn check_json_has_one_record_per_host() {
    let lab = Lab::lock();
    let o = lab.check(&["--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).expect("check --format json is JSON");
    let hosts = v["hosts"].as_array().expect("hosts array");
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, HOSTS);
    assert_eq!(v["ok"], true);
    assert_eq!(v["master"], "db1");
    assert_eq!(hosts[1]["role"], "replica of db1");
    assert_eq!(
        hosts[0]["server"]["flavor"],
        lab.sql_for("mariadb", "mysql")
    );
    assert!(hosts[0]["application_accounts"].as_u64().unwrap() >= 6);
}

#[test]
fn check_fails_when_sshd_on_db3_is_stopped() {
    let lab = Lab::lock();
    common::lab(&["stop-sshd", "db3"]);
    let o = lab.check(&[]);
    assert_fails_naming(&o, "db3", "cannot reach sshd");
}

#[test]
fn check_fails_when_db2_host_key_is_wrong() {
    let lab = Lab::lock();
    let kh = lab.var("MHALAB_KNOWN_HOSTS");
    // Give db2's names db1's key.
    let text = std::fs::read_to_string(&kh).unwrap();
    let db1_key = text
        .lines()
        .find(|l| l.starts_with("db1") || l.starts_with("db1,"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("db1 in known_hosts")
        .to_string();
    let db2_ip = lab.var("MHALAB_IP_db2");
    let bad = edited_copy(&kh, "wrong-db2", |t| {
        t.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 3 && (f[0].split(',').any(|n| n == "db2" || n == db2_ip)) {
                    format!("{} {} {}", f[0], f[1], db1_key)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    });
    let conf = edited_copy(&lab.app_cnf(), "wrong-kh", |t| t.replace(&kh, &bad));
    let o = lab.helper(&["check", "--conf", &conf, "--helper-conf", &lab.helper_cnf()]);
    assert_fails_naming(&o, "db2", "HOST KEY MISMATCH");
    // the other hosts still pass
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("db1") && l.contains(" ok ")),
        "{}",
        both(&o)
    );
}

#[test]
fn check_fails_when_the_mysql_password_is_wrong() {
    let lab = Lab::lock();
    let pw = lab.var("MHALAB_MHA_PASSWORD");
    let conf = edited_copy(&lab.app_cnf(), "wrong-pw", |t| {
        t.lines()
            .map(|l| {
                if l.trim_start().starts_with("password") {
                    "password=not-the-password".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert!(!std::fs::read_to_string(&conf).unwrap().contains(&pw));
    let o = lab.helper(&["check", "--conf", &conf, "--helper-conf", &lab.helper_cnf()]);
    for h in HOSTS {
        assert_fails_naming(&o, h, "check user/password");
    }
}

#[test]
fn check_fails_when_the_server_on_db2_is_stopped() {
    let lab = Lab::lock();
    common::lab(&["stop-mysql", "db2"]);
    let o = lab.check(&[]);
    assert_fails_naming(&o, "db2", "is mysqld running");
}

#[test]
fn check_fails_when_replication_on_db3_is_stopped() {
    let lab = Lab::lock();
    lab.stop_replica("db3");
    let o = lab.check(&[]);
    assert_fails_naming(&o, "db3", "replication stopped");
}

#[test]
fn check_fails_when_application_grants_differ_between_db1_and_db2() {
    let lab = Lab::lock();
    lab.replica_sql(
        "db2",
        "SET sql_log_bin=0; GRANT DELETE ON appdb.* TO 'reporter'@'%'",
    );
    let o = lab.check(&[]);
    assert_fails_naming(&o, "db2", "grants of 'reporter'@'%' differ");
}

#[test]
fn check_puts_no_password_in_any_argv_or_environment() {
    let lab = Lab::lock();
    let pw = lab.var("MHALAB_MHA_PASSWORD");
    // A canary proves the watch sees argv: it must be found.
    let canary = format!("canary-{}", std::process::id());
    let watch = LeakWatch::start(vec![pw.clone(), canary.clone()]);
    let mut probe = std::process::Command::new("sh")
        .args(["-c", "sleep 0.5", "sh", &canary])
        .spawn()
        .unwrap();
    for _ in 0..3 {
        let o = lab.check(&[]);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    }
    probe.wait().ok();
    let (hits, samples) = watch.finish();
    assert!(samples > 10, "only {samples} samples of /proc");
    assert!(
        hits.iter().any(|h| h.contains(&canary)),
        "the watch did not see the canary process"
    );
    let leaks: Vec<&String> = hits.iter().filter(|h| h.contains(&pw)).collect();
    assert!(
        leaks.is_empty(),
        "password seen in process argv/environment:\n{leaks:?}"
    );
}

#[test]
fn with_host_keys_sent_to_dev_null_keys_are_trusted_on_first_use_in_our_own_file_and_changes_refused(
) {
    let lab = Lab::lock();
    let own = lab.journal_dir().join("known_hosts");
    let _ = std::fs::remove_file(&own);
    let conf = edited_copy(&lab.app_cnf(), "devnull", |t| {
        t.replace(
            &format!(
                "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                lab.var("MHALAB_KNOWN_HOSTS")
            ),
            "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        )
    });
    let helper = lab.helper_cnf();
    let check = || lab.helper(&["check", "--conf", &conf, "--helper-conf", &helper]);
    let c = check();
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
    let err = stderr(&c);
    assert!(!err.contains("/dev/null: Invalid argument"), "{err}");
    assert!(err.contains("trusted on first use"), "{err}");
    assert!(err.contains("SHA256:"), "{err}");
    let recorded = std::fs::read_to_string(&own).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    // Second run: known now, no new warning.
    let c = check();
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
    assert!(!stderr(&c).contains("trusted on first use"), "{}", both(&c));
    // A changed key for db1 is refused, never re-learnt.
    let other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let changed: String = recorded
        .lines()
        .map(|l| {
            if l.starts_with("db1 ") {
                format!("db1 ssh-ed25519 {other}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&own, changed).unwrap();
    let c = check();
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    assert!(stdout(&c).contains("HOST KEY MISMATCH"), "{}", both(&c));
}

#[test]
fn more_than_one_jump_host_in_ssh_options_is_refused_not_gone_around() {
    let lab = Lab::lock();
    let conf = edited_copy(&lab.app_cnf(), "jump", |t| {
        t.replacen(
            "ssh_options=",
            "ssh_options=-o ProxyJump=mha@bastion,mha@inner ",
            1,
        )
    });
    let o = lab.helper(&["check", "--conf", &conf, "--helper-conf", &lab.helper_cnf()]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("-o ProxyJump=mha@bastion,mha@inner") && lines[0].contains(&conf),
        "{err}"
    );
    // Refused before any host was checked: no table.
    assert!(stdout(&o).is_empty(), "{}", both(&o));
}

/// A copy of the lab's MHA file (hooks on the copy) whose ssh_options go
/// through the lab's jump host as the MHA user, with `extra` options.
fn through_jump(lab: &Lab, dir: &str, extra: &str) -> String {
    let jump = lab.var("MHALAB_IP_jump");
    lab.app_cnf_edited(dir, |t, _| {
        t.replacen(
            "ssh_options=",
            &format!("ssh_options=-J mha@{jump} {extra} "),
            1,
        )
    })
}

#[test]
fn check_and_a_switchover_go_through_the_jump_host_when_only_it_reaches_the_hosts() {
    let lab = Lab::lock();
    common::lab(&["jump-only", "on"]);
    // Directly, the network says no: the test is not passing by going around.
    let direct = lab.check(&[]);
    assert_eq!(direct.status.code(), Some(1), "{}", both(&direct));
    assert!(
        both(&direct).contains("cannot reach sshd"),
        "{}",
        both(&direct)
    );
    let conf = through_jump(&lab, "jump-ok", "");
    let c = lab.command_on(&conf, "check", &[]);
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
    let before = lab.state();
    let o = lab.command_on(&conf, "switchover", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    lab.assert_settled_on("db2");
    for (b, a) in before.hosts.iter().zip(&lab.state().hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }
}

#[test]
fn an_unknown_jump_host_key_is_refused_naming_the_jump_host() {
    let lab = Lab::lock();
    common::lab(&["jump-only", "on"]);
    // A known_hosts with every database host and without the jump host.
    let jump = lab.var("MHALAB_IP_jump");
    let known = lab.dir().join("manager").join("known_hosts.nojump");
    let app = std::fs::read_to_string(lab.app_cnf()).unwrap();
    let lab_known = app
        .split_whitespace()
        .find_map(|w| w.strip_prefix("UserKnownHostsFile="))
        .expect("the lab's ssh_options name its known_hosts");
    let all = std::fs::read_to_string(lab_known).unwrap();
    let kept: String = all
        .lines()
        .filter(|l| !l.starts_with("jump,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, all, "the lab's known_hosts has no jump host line");
    std::fs::write(&known, kept).unwrap();
    let conf = through_jump(
        &lab,
        "jump-unknown",
        &format!("-o UserKnownHostsFile={}", known.display()),
    );
    let c = lab.command_on(&conf, "check", &[]);
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    let out = both(&c);
    assert!(
        out.contains(&format!("{jump} (jump host of db1)")) && out.contains("not in known_hosts"),
        "{out}"
    );
}

/// Prometheus' own Python parser's reading of `text`: every sample as
/// (name, labels, value).
fn parsed_metrics(text: &str) -> Vec<(String, serde_json::Value, f64)> {
    let script = "import sys, json\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
                  print(json.dumps(out))\n";
    let o = with_stdin(
        std::process::Command::new("/usr/bin/python3").args(["-c", script]),
        text,
    );
    assert!(
        o.status.success(),
        "the parser refused it: {}\n{text}",
        both(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn check_as_prometheus_metrics_parses_and_carries_the_last_write_block_window() {
    let lab = Lab::lock();
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let h = lab.command("history", &["--format", "json"]);
    let history: serde_json::Value = serde_json::from_str(&stdout(&h)).unwrap();
    let window_ms = history["switches"][0]["write_block_ms"].as_u64().unwrap();

    let o = lab.check(&["--format", "prometheus"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let samples = parsed_metrics(&stdout(&o));
    let value = |name: &str, host: Option<&str>| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && host.is_none_or(|h| l["host"] == h))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name} {host:?} in {samples:?}"))
    };
    assert_eq!(value("mha_helper_check_success", None), 1.0);
    assert_eq!(value("mha_helper_master", Some("db2")), 1.0);
    for h in HOSTS {
        assert_eq!(value("mha_helper_host_up", Some(h)), 1.0);
        assert_eq!(
            value("mha_helper_read_only", Some(h)),
            if h == "db2" { 0.0 } else { 1.0 }
        );
    }
    assert_eq!(value("mha_helper_replication_running", Some("db1")), 1.0);
    assert_eq!(
        value("mha_helper_last_switch_write_block_seconds", None),
        window_ms as f64 / 1000.0
    );
    assert_eq!(value("mha_helper_last_switch_success", None), 1.0);
    let info = samples
        .iter()
        .find(|(n, _, _)| n == "mha_helper_last_switch_info")
        .unwrap();
    assert_eq!(
        (
            info.1["orig_master"].as_str(),
            info.1["new_master"].as_str()
        ),
        (Some("db1"), Some("db2"))
    );
}
