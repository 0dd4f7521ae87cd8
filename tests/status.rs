//! `status` and `history` on the lab: what they say after two switches and
//! a rolled-back one, read from the hosts and the kept journals.

mod common;

use common::*;

fn json_of(lab: &Lab, command: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let o = lab.command(command, &args);
    let v = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", both(&o)));
    (o.status.code(), v)
}

#[test]
fn status_and_history_tell_two_switches_and_a_rollback() {
    let lab = Lab::lock();
    let (_, h) = json_of(&lab, "history", &[]);
    let before = h["switches"].as_array().unwrap().len();
    for (to, fault) in [
        ("db2", ""),
        ("db1", ""),
        ("db2", "fail@after:block-accounts"),
    ] {
        let o = lab.switchover(to, &[("MHA_HELPER_FAULT", fault)]);
        assert_eq!(
            o.status.code(),
            Some(if fault.is_empty() { 0 } else { 1 }),
            "{}",
            both(&o)
        );
    }

    let (code, h) = json_of(&lab, "history", &[]);
    assert_eq!(code, Some(0));
    assert_eq!(h["schema"], "mha-helper.output/1");
    let all = h["switches"].as_array().unwrap();
    assert_eq!(all.len(), before + 3, "{h:#}");
    let seen: Vec<(&str, &str, &str, &str)> = all[..3]
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap();
            (f("kind"), f("orig_master"), f("new_master"), f("outcome"))
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("online", "db1", "db2", "rolled-back"),
            ("online", "db2", "db1", "completed"),
            ("online", "db1", "db2", "completed"),
        ],
        "{h:#}"
    );
    for s in &all[1..3] {
        assert!(s["write_block_ms"].as_u64().is_some(), "no window: {s:#}");
        assert!(
            !s["accounts_blocked"].as_array().unwrap().is_empty(),
            "{s:#}"
        );
    }
    let (_, one) = json_of(&lab, "history", &["--limit", "1"]);
    assert_eq!(one["switches"].as_array().unwrap().len(), 1);
    let text = stdout(&lab.command("history", &[]));
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.contains("db1 -> db2") && l.contains("rolled-back")),
        "{text}"
    );

    let (code, st) = json_of(&lab, "status", &[]);
    assert_eq!(code, Some(0), "{st:#}");
    assert_eq!(st["master"], "db1", "{st:#}");
    assert_eq!(st["settled"], true, "{st:#}");
    assert!(
        st["open_switch"].is_null() && st["pending_fence"].is_null(),
        "{st:#}"
    );
    assert_eq!(st["last_switch"]["outcome"], "rolled-back", "{st:#}");

    // A replica that stopped replicating: not settled, and named.
    lab.stop_replica("db3");
    let (code, st) = json_of(&lab, "status", &[]);
    assert_eq!(code, Some(1), "{st:#}");
    let problems = st["problems"].to_string();
    assert!(problems.contains("db3"), "{st:#}");
    let text = stdout(&lab.command("status", &[]));
    assert!(
        text.starts_with("master: db1\n") && text.contains("NOT settled"),
        "{text}"
    );
}

#[test]
fn every_json_document_has_the_one_schema_and_a_failure_carries_its_error() {
    let lab = Lab::lock();
    let (code, st) = json_of(&lab, "status", &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (
            st["schema"].as_str(),
            st["command"].as_str(),
            st["ok"].as_bool(),
            st["exit_code"].as_i64()
        ),
        (
            Some("mha-helper.output/1"),
            Some("status"),
            Some(true),
            Some(0)
        ),
        "{st:#}"
    );
    assert!(st["error"].is_null(), "{st:#}");
    // A command that fails before it has anything to report.
    let o = lab.helper(&[
        "history",
        "--conf",
        "/nonexistent/app9.cnf",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(
        (
            v["command"].as_str(),
            v["ok"].as_bool(),
            v["exit_code"].as_i64()
        ),
        (Some("history"), Some(false), Some(2))
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("/nonexistent/app9.cnf"),
        "{v:#}"
    );
}
