//! Past and open switches as their journals tell them: a summary per
//! journal (kind, masters, outcome, write-block window, sessions killed,
//! accounts blocked and restored, warnings) for `history`, `status` and the
//! notifications. Journals are read as loose JSON: a record this version
//! does not know is skipped, never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::journal::note;
use super::StateDir;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Switch {
    pub id: String,
    /// `online` or `failover`.
    pub kind: String,
    /// `completed`, `rolled-back`, ... or `open` (a journal `recover` must finish).
    pub outcome: String,
    pub orig_master: String,
    pub new_master: String,
    pub started_at: String,
    /// From the first blocking statement to read_only off on the new master.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_block_ms: Option<u64>,
    pub sessions_killed: usize,
    pub accounts_blocked: Vec<String>,
    pub accounts_restored: Vec<String>,
    /// `step@host`, in order.
    pub steps_done: Vec<String>,
    pub warnings: Vec<String>,
    pub journal: String,
}

/// What the newest journal of the application, written within `within`,
/// says: an open one (a switch not finished) first, else the newest closed.
pub fn last_switch(state: &StateDir, within: Duration) -> Option<Switch> {
    let open = state.journal();
    if open.exists() {
        return summary(&open, "open");
    }
    let newest = closed(state)
        .into_iter()
        .filter(|(t, _)| {
            SystemTime::now()
                .duration_since(*t)
                .map(|age| age <= within)
                .unwrap_or(true)
        })
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)?;
    summary(&newest, "")
}

/// Every switch the state directory keeps a journal of, the newest first:
/// the open one (outcome `open`) and each closed one (its outcome from its
/// end record, else from its file name).
pub fn switches(state: &StateDir) -> Vec<Switch> {
    let mut all: Vec<Switch> = closed(state)
        .into_iter()
        .filter_map(|(_, p)| {
            let mut s = summary(&p, "")?;
            if s.outcome.is_empty() {
                s.outcome = p.extension()?.to_string_lossy().into_owned();
            }
            Some(s)
        })
        .collect();
    if state.journal().exists() {
        all.extend(summary(&state.journal(), "open"));
    }
    all.sort_by(|a, b| (&b.started_at, &b.id).cmp(&(&a.started_at, &a.id)));
    all
}

/// The closed journals (`<journal>.<id>.<outcome>`) with their times.
fn closed(state: &StateDir) -> Vec<(SystemTime, PathBuf)> {
    let open = state.journal();
    let Some(name) = open.file_name() else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(dir) = std::fs::read_dir(state.dir()) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A journal's records read as loose JSON: a record this version does not
/// know is skipped, never an error (a notification must not fail on it).
pub fn summary(path: &Path, outcome: &str) -> Option<Switch> {
    let text = crate::state::open_private(path, false)
        .ok()
        .flatten()
        .and_then(|mut f| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).ok()?;
            Some(s)
        })?;
    let mut s = Switch {
        outcome: outcome.into(),
        journal: PathBuf::from(path).display().to_string(),
        ..Default::default()
    };
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let str_of = |k: &str| v[k].as_str().unwrap_or("").to_string();
        match v["t"].as_str() {
            Some("begin") => {
                s.id = str_of("id");
                s.kind = str_of("kind");
                s.orig_master = str_of("orig");
                s.new_master = str_of("new");
                s.started_at = str_of("at");
            }
            Some("done") => s
                .steps_done
                .push(format!("{}@{}", str_of("step"), str_of("host"))),
            Some("end") if s.outcome.is_empty() || s.outcome == "open" => {
                s.outcome = str_of("outcome")
            }
            // The hooks' part is done; only the operator's command, which
            // saw MHA finish, has yet to close the journal.
            Some("phase")
                if s.outcome == "open" && str_of("phase") == crate::online::HOOKS_DONE =>
            {
                s.outcome = "completed".into()
            }
            Some("note") => {
                let r = &v["value"];
                match v["key"].as_str() {
                    Some(note::STOP_REPORT) => {
                        s.sessions_killed += r["killed_sessions"].as_array().map_or(0, Vec::len);
                        s.accounts_blocked.extend(strings(&r["accounts_changed"]));
                        s.warnings.extend(strings(&r["warnings"]));
                    }
                    Some(crate::state::journal::note::NEW_MASTER) if s.new_master.is_empty() => {
                        s.new_master = r.as_str().unwrap_or("").into();
                    }
                    Some(note::START_REPORT) => {
                        s.write_block_ms = r["write_block_ms"].as_u64().or(s.write_block_ms);
                        s.accounts_restored.extend(strings(&r["accounts_changed"]));
                        s.warnings.extend(strings(&r["warnings"]));
                        if s.new_master.is_empty() {
                            s.new_master = r["new_master"].as_str().unwrap_or("").into();
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (!s.id.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_failover_journal_names_its_new_master_and_is_completed_once_the_hooks_are_done() {
        let d = crate::state::tests::temp_dir("event-open");
        let state = StateDir::open(&d, "app1").unwrap();
        let p = state.journal();
        let mut lines = vec![
            r#"{"t":"begin","id":"f1","kind":"failover","orig":"db1","new":"","at":"2026-12-04T04:00:00Z","pid":1}"#,
            r#"{"t":"note","key":"new-master","value":"db2"}"#,
        ];
        let write = |lines: &[&str]| {
            std::fs::write(&p, lines.join("\n") + "\n").unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        };
        write(&lines);
        let s = last_switch(&state, Duration::from_secs(600)).unwrap();
        assert_eq!((s.new_master.as_str(), s.outcome.as_str()), ("db2", "open"));
        lines.push(r#"{"t":"phase","phase":"hooks-done"}"#);
        write(&lines);
        let s = last_switch(&state, Duration::from_secs(600)).unwrap();
        assert_eq!(s.outcome, "completed");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_closed_online_journal_gives_the_window_sessions_and_accounts() {
        let d = crate::state::tests::temp_dir("event");
        let state = StateDir::open(&d, "app1").unwrap();
        let p = state.closed_journal("20261202-1", "completed");
        let lines = [
            r#"{"t":"begin","id":"20261202-1","kind":"online","orig":"db1","new":"db2","at":"2026-12-02T04:00:00Z","pid":1}"#,
            r#"{"t":"done","step":"block-accounts","host":"db1"}"#,
            r#"{"t":"note","key":"stop-report","value":{"killed_sessions":[{"id":7},{"id":8}],"accounts_changed":["'app'@'%' (Revoke)"],"warnings":[]}}"#,
            r#"{"t":"future-record","x":1}"#,
            r#"{"t":"note","key":"start-report","value":{"write_block_ms":412,"accounts_changed":["'app'@'%' (restored)"],"warnings":["db1: something"]}}"#,
            r#"{"t":"end","outcome":"completed"}"#,
        ];
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let s = last_switch(&state, Duration::from_secs(600)).unwrap();
        assert_eq!(s.kind, "online");
        assert_eq!(s.outcome, "completed");
        assert_eq!(s.write_block_ms, Some(412));
        assert_eq!(s.sessions_killed, 2);
        assert_eq!(s.accounts_blocked.len(), 1);
        assert_eq!(s.accounts_restored.len(), 1);
        assert_eq!(s.steps_done, vec!["block-accounts@db1"]);
        assert_eq!(s.warnings, vec!["db1: something"]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_old_journal_is_not_taken_for_this_switch() {
        let d = crate::state::tests::temp_dir("event-old");
        let state = StateDir::open(&d, "app1").unwrap();
        let p = state.closed_journal("x", "completed");
        std::fs::write(&p, "{\"t\":\"begin\",\"id\":\"x\",\"kind\":\"online\"}\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(last_switch(&state, Duration::from_secs(600)).is_some());
        assert!(last_switch(&state, Duration::ZERO).is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn every_kept_journal_is_listed_newest_first_the_open_one_too() {
        let d = crate::state::tests::temp_dir("history-all");
        let state = StateDir::open(&d, "app1").unwrap();
        let write = |p: &Path, lines: &[&str]| {
            std::fs::write(p, lines.join("\n") + "\n").unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        };
        let begin = |id: &str, at: &str| {
            format!(
                r#"{{"t":"begin","id":"{id}","kind":"online","orig":"db1","new":"db2","at":"{at}","pid":1}}"#
            )
        };
        let (a, b, c) = (
            begin("a", "2026-12-01T00:00:00Z"),
            begin("b", "2026-12-02T00:00:00Z"),
            begin("c", "2026-12-03T00:00:00Z"),
        );
        write(
            &state.closed_journal("a", "completed"),
            &[&a, r#"{"t":"end","outcome":"completed"}"#],
        );
        // closed without an end record: the file name says how
        write(&state.closed_journal("b", "rolled-back"), &[&b]);
        write(&state.journal(), &[&c]);
        let all = switches(&state);
        let seen: Vec<(&str, &str)> = all
            .iter()
            .map(|s| (s.id.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![("c", "open"), ("b", "rolled-back"), ("a", "completed")]
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
