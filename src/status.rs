//! `mha-helper status` and `mha-helper history`, the operator's view; both
//! read only. Status: the master as the hosts say now, every host's role,
//! an open switch, a pending fence and the last switch; exit 0 when the
//! cluster is settled with nothing left to do, 1 otherwise. History: the
//! switches the kept journals record, the newest first.

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::exit::Code;
use crate::fence::Pending;
use crate::setup::ConfigPaths;
use crate::state::history::{switches, Switch};
use crate::topology::{self, HostFacts};

/// What the hosts say of the master: the one writable host that replicates
/// from nobody, and what keeps the cluster from being settled on it
/// (`alone`: a failed-over master, which may stay apart).
pub fn judge(hosts: &[HostFacts], alone: Option<&str>) -> (Option<String>, Vec<String>) {
    let writable: Vec<&str> = hosts
        .iter()
        .filter(|h| h.down.is_none() && !h.read_only && h.source.is_none())
        .map(|h| h.name.as_str())
        .collect();
    match writable.as_slice() {
        [] => (None, vec!["no host is a writable master".into()]),
        [one] => (
            Some(one.to_string()),
            topology::unsettled(hosts, one, alone),
        ),
        many => (
            None,
            vec![format!("{} are all writable masters", many.join(", "))],
        ),
    }
}

#[derive(Debug, Serialize)]
struct Status {
    app: String,
    master: Option<String>,
    settled: bool,
    problems: Vec<String>,
    hosts: Vec<HostFacts>,
    open_switch: Option<Switch>,
    pending_fence: Option<Pending>,
    last_switch: Option<Switch>,
}

/// `mha-helper status`.
pub fn status(paths: &ConfigPaths, json: bool) -> Result<Code> {
    let setup = paths.load()?;
    let state = setup.state()?;
    let hosts = topology::read_cluster(&setup, None)?;
    let dead = state.read_dead_mark().map(|m| m.host);
    let (master, mut problems) = judge(&hosts, dead.as_deref());
    let all = switches(&state);
    let open_switch = all.iter().find(|s| s.outcome == "open").cloned();
    let last_switch = all.into_iter().find(|s| s.outcome != "open");
    let pending_fence = crate::fence::read(&state)?;
    let conf = setup.mha.app_path.display();
    if let Some(s) = &open_switch {
        problems.push(format!(
            "switch {} is open: run `mha-helper recover --conf {conf}`",
            s.id
        ));
    }
    if let Some(p) = &pending_fence {
        problems.push(format!(
            "{} is still to be fenced: run `mha-helper fence --conf {conf}`",
            p.host
        ));
    }
    let s = Status {
        app: setup.mha.app.clone(),
        master,
        settled: problems.is_empty(),
        problems,
        hosts,
        open_switch,
        pending_fence,
        last_switch,
    };
    if json {
        crate::output::set(&s);
    } else {
        print!("{}", status_text(&s));
    }
    Ok(if s.settled { Code::Ok } else { Code::Failed })
}

fn status_text(s: &Status) -> String {
    let mut t = format!("master: {}\n", s.master.as_deref().unwrap_or("none"));
    for h in &s.hosts {
        t += &format!("  {}\n", h.describe());
    }
    t += &format!(
        "open switch: {}\n",
        s.open_switch.as_ref().map_or("none".into(), one_line)
    );
    t += &format!(
        "pending fence: {}\n",
        s.pending_fence.as_ref().map_or("none".into(), |p| format!(
            "{} since {} ({})",
            p.host, p.since, p.reason
        ))
    );
    t += &format!(
        "last switch: {}\n",
        s.last_switch.as_ref().map_or("none".into(), one_line)
    );
    for p in &s.problems {
        t += &format!("problem: {p}\n");
    }
    t += if s.settled {
        "settled\n"
    } else {
        "NOT settled\n"
    };
    t
}

/// `2026-12-04T10:00:00Z online db1 -> db2 completed, writes blocked 412 ms (id)`.
fn one_line(s: &Switch) -> String {
    let window = s
        .write_block_ms
        .map(|ms| format!(", writes blocked {ms} ms"))
        .unwrap_or_default();
    format!(
        "{} {} {} -> {} {}{window} ({})",
        s.started_at,
        s.kind,
        or_dash(&s.orig_master),
        or_dash(&s.new_master),
        s.outcome,
        s.id
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `mha-helper history`.
pub fn history(paths: &ConfigPaths, limit: usize, json: bool) -> Result<Code> {
    let setup = paths.load()?;
    let state = setup.state()?;
    let mut all = switches(&state);
    all.truncate(limit);
    if json {
        crate::output::set(json!({ "app": setup.mha.app, "switches": all }));
    } else {
        print!("{}", history_table(&all));
    }
    Ok(Code::Ok)
}

fn history_table(all: &[Switch]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                s.started_at.clone(),
                s.kind.clone(),
                format!("{} -> {}", or_dash(&s.orig_master), or_dash(&s.new_master)),
                s.outcome.clone(),
                s.write_block_ms.map_or("-".into(), |ms| ms.to_string()),
                s.sessions_killed.to_string(),
                s.accounts_blocked.len().to_string(),
                s.id.clone(),
            ]
        })
        .collect();
    crate::table::render(
        &[
            "STARTED",
            "KIND",
            "SWITCH",
            "OUTCOME",
            "BLOCKED_MS",
            "KILLED",
            "ACCOUNTS",
            "ID",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, read_only: bool, source: Option<&str>) -> HostFacts {
        HostFacts {
            name: name.into(),
            down: None,
            read_only,
            source: source.map(String::from),
            replicating: source.is_some(),
            binlog: None,
            gtid: true,
        }
    }

    #[test]
    fn the_master_is_the_one_writable_host_that_replicates_from_nobody() {
        let hosts = [
            host("db1", true, Some("db2")),
            host("db2", false, None),
            host("db3", true, Some("db2")),
        ];
        assert_eq!(judge(&hosts, None), (Some("db2".into()), vec![]));
        let mut stopped = hosts.clone();
        stopped[2].replicating = false;
        let (m, problems) = judge(&stopped, None);
        assert_eq!(m.as_deref(), Some("db2"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("db3"), "{problems:?}");
    }

    #[test]
    fn no_master_or_two_writable_hosts_are_problems_and_name_no_master() {
        let none = [host("db1", true, None), host("db2", true, Some("db1"))];
        assert_eq!(judge(&none, None).0, None);
        let two = [host("db1", false, None), host("db2", false, None)];
        let (m, problems) = judge(&two, None);
        assert_eq!(m, None);
        assert_eq!(problems, vec!["db1, db2 are all writable masters"]);
        // a failed-over master that is down may stay apart
        let mut after = [host("db1", false, None), host("db2", false, None)];
        after[0] = HostFacts::down("db1", "no route".into());
        assert_eq!(judge(&after, Some("db1")), (Some("db2".into()), vec![]));
    }

    #[test]
    fn the_history_table_has_a_row_per_switch_with_its_window() {
        let s = Switch {
            id: "20261204-1".into(),
            kind: "online".into(),
            outcome: "completed".into(),
            orig_master: "db1".into(),
            new_master: "db2".into(),
            started_at: "2026-12-04T10:00:00Z".into(),
            write_block_ms: Some(412),
            sessions_killed: 2,
            ..Default::default()
        };
        let failed = Switch {
            id: "20261204-2".into(),
            kind: "failover".into(),
            outcome: "rolled-back".into(),
            orig_master: "db2".into(),
            ..Default::default()
        };
        let t = history_table(&[s.clone(), failed]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].contains("db1 -> db2") && lines[1].contains("412"),
            "{t}"
        );
        assert!(
            lines[2].contains("db2 -> -") && lines[2].contains("rolled-back"),
            "{t}"
        );
        assert_eq!(
            one_line(&s),
            "2026-12-04T10:00:00Z online db1 -> db2 completed, writes blocked 412 ms (20261204-1)"
        );
    }
}
