//! What a step sends, as data: the scripts a dry run lists ([`Planned`],
//! built by the very functions `apply` builds them with) and the scripts a
//! run really sent ([`Sent`], recorded by the host as it sends them), and
//! the rule that says whether a run kept to its plan ([`conforms`]).
//!
//! Some values are known only when the step runs (the GTID set a host has
//! executed, the id of a session left at the deadline). A plan holds them as
//! placeholders, `«what»`, that stand for any text; and some scripts, or
//! lines of a script, are sent as often as the run needs (a poll, a kill per
//! session left): the plan says so, and why.

use serde::{Deserialize, Serialize};

use crate::mysql::Script;

/// A value read when the step runs: `«what»` in a planned statement.
pub fn at_run(what: &str) -> String {
    format!("«{what}»")
}

/// One statement of a planned script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sql: String,
    /// Sent zero or more times (once per what this says); absent: once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
}

/// A script a step will send to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub host: String,
    /// Sent zero or more times, when this says; absent: exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<String>,
    pub statements: Vec<Line>,
}

impl Planned {
    /// `script`, sent once to `host`.
    pub fn once(host: &str, script: &Script) -> Planned {
        Planned {
            host: host.to_string(),
            repeat: None,
            statements: script
                .statements()
                .into_iter()
                .map(|sql| Line { sql, each: None })
                .collect(),
        }
    }

    /// `script`, sent to `host` zero or more times: `when`.
    pub fn repeated(host: &str, script: &Script, when: &str) -> Planned {
        Planned {
            repeat: Some(when.to_string()),
            ..Planned::once(host, script)
        }
    }

    /// `statements` sent once to `host` outside a script (the question
    /// asked of a client kept on the host).
    pub fn of(host: &str, statements: Vec<String>) -> Planned {
        Planned {
            host: host.to_string(),
            repeat: None,
            statements: statements
                .into_iter()
                .map(|sql| Line { sql, each: None })
                .collect(),
        }
    }

    /// A shell script run once on `host` (the VIP's commands): one line.
    pub fn shell(host: &str, script: &str) -> Planned {
        Planned::of(host, vec![shell_line(script)])
    }

    /// Lines holding `marker` are sent once per `each`.
    pub fn each(mut self, marker: &str, each: &str) -> Planned {
        for l in &mut self.statements {
            if l.sql.contains(marker) {
                l.each = Some(each.to_string());
            }
        }
        self
    }
}

/// A script a run sent to one host, as people are shown it (secrets
/// replaced), session setup included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub host: String,
    pub statements: Vec<String>,
}

impl Sent {
    pub fn sql(host: &str, script: &Script) -> Sent {
        Sent {
            host: host.to_string(),
            statements: script.statements(),
        }
    }

    pub fn of(host: &str, statements: Vec<String>) -> Sent {
        Sent {
            host: host.to_string(),
            statements,
        }
    }

    pub fn shell(host: &str, script: &str) -> Sent {
        Sent::of(host, vec![shell_line(script)])
    }
}

fn shell_line(script: &str) -> String {
    format!("(shell) {}", script.trim().replace('\n', "; "))
}

/// Whether what a step sent keeps to its plan: host by host (scripts to
/// different hosts may go out in parallel), in order, each planned script
/// sent once or, where the plan says so, any number of times; each line
/// the same but for the values the plan marks as read at run time. On a
/// mismatch, says which host and lists both.
pub fn conforms(planned: &[Planned], sent: &[Sent]) -> Result<(), String> {
    let mut hosts: Vec<&str> = planned.iter().map(|p| p.host.as_str()).collect();
    hosts.extend(sent.iter().map(|s| s.host.as_str()));
    hosts.sort_unstable();
    hosts.dedup();
    for host in hosts {
        let p: Vec<&Planned> = planned.iter().filter(|p| p.host == host).collect();
        let s: Vec<&Sent> = sent.iter().filter(|s| s.host == host).collect();
        let ok = sequence(
            &p,
            &s,
            |p| p.repeat.is_some(),
            |p, s| {
                sequence(
                    &p.statements,
                    &s.statements,
                    |l| l.each.is_some(),
                    line_matches,
                )
            },
        );
        if !ok {
            return Err(format!(
                "{host}: what was sent does not keep to the plan\nplanned:\n{}\nsent:\n{}",
                p.iter()
                    .map(|p| format!(
                        "  [{}] {}",
                        p.repeat.as_deref().unwrap_or("once"),
                        p.statements
                            .iter()
                            .map(|l| l.sql.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))
                    .collect::<Vec<_>>()
                    .join("\n"),
                s.iter()
                    .map(|s| format!("  {}", s.statements.join(" ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    Ok(())
}

/// Whether `items` is `pats` in order, where a pattern for which `star`
/// holds matches zero or more items and any other exactly one.
fn sequence<P, S>(
    pats: &[P],
    items: &[S],
    star: impl Fn(&P) -> bool,
    eq: impl Fn(&P, &S) -> bool,
) -> bool {
    // can[j]: the patterns so far can match items[..j].
    let mut can = vec![false; items.len() + 1];
    can[0] = true;
    for p in pats {
        let mut next = vec![false; items.len() + 1];
        for j in 0..=items.len() {
            if star(p) {
                // Zero more items, or one more on top of a match.
                next[j] = can[j] || (j > 0 && next[j - 1] && eq(p, &items[j - 1]));
            } else {
                next[j] = j > 0 && can[j - 1] && eq(p, &items[j - 1]);
            }
        }
        can = next;
    }
    can[items.len()]
}

/// A planned line matches a sent one when they are equal but for each
/// `«...»` placeholder, which stands for any text.
fn line_matches(planned: &Line, sent: &String) -> bool {
    let mut parts = Vec::new();
    let mut rest = planned.sql.as_str();
    while let Some(open) = rest.find('«') {
        let Some(len) = rest[open..].find('»') else {
            break;
        };
        parts.push(&rest[..open]);
        rest = &rest[open + len + '»'.len_utf8()..];
    }
    parts.push(rest);
    if parts.len() == 1 {
        return planned.sql == *sent;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !sent.starts_with(first) || !sent[first.len()..].ends_with(last) {
        return false;
    }
    let mut middle = &sent[first.len()..sent.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match middle.find(part) {
            Some(i) => middle = &middle[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(host: &str, lines: &[&str], repeat: Option<&str>) -> Planned {
        Planned {
            host: host.into(),
            repeat: repeat.map(str::to_string),
            statements: lines
                .iter()
                .map(|l| Line {
                    sql: l.to_string(),
                    each: None,
                })
                .collect(),
        }
    }

    fn sent(host: &str, lines: &[&str]) -> Sent {
        Sent {
            host: host.into(),
            statements: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn the_same_scripts_in_the_same_order_conform() {
        let p = [plan("db1", &["A;", "B;"], None), plan("db1", &["C;"], None)];
        assert!(conforms(&p, &[sent("db1", &["A;", "B;"]), sent("db1", &["C;"])]).is_ok());
    }

    #[test]
    fn a_changed_missing_extra_or_reordered_statement_does_not_conform() {
        let p = [plan("db1", &["A;", "B;"], None)];
        for s in [
            vec![sent("db1", &["A;", "X;"])],
            vec![sent("db1", &["A;"])],
            vec![sent("db1", &["A;", "B;", "B;"])],
            vec![sent("db1", &["B;", "A;"])],
            vec![],
            vec![sent("db1", &["A;", "B;"]), sent("db1", &["A;", "B;"])],
            vec![sent("db2", &["A;", "B;"])],
        ] {
            let e = conforms(&p, &s).expect_err("must not conform");
            assert!(e.contains("does not keep to the plan"), "{e}");
        }
    }

    #[test]
    fn a_repeated_script_may_be_sent_any_number_of_times_and_hosts_are_apart() {
        let p = [
            plan("db1", &["POLL;"], Some("while sessions remain")),
            plan("db1", &["END;"], None),
            plan("db2", &["OTHER;"], None),
        ];
        for n in 0..4 {
            let mut s = vec![sent("db2", &["OTHER;"])];
            s.extend((0..n).map(|_| sent("db1", &["POLL;"])));
            s.push(sent("db1", &["END;"]));
            assert!(conforms(&p, &s).is_ok(), "{n} polls");
        }
        let wrong = [
            sent("db1", &["END;"]),
            sent("db1", &["POLL;"]),
            sent("db2", &["OTHER;"]),
        ];
        assert!(conforms(&p, &wrong).is_err());
    }

    #[test]
    fn a_line_sent_once_per_item_may_appear_any_number_of_times() {
        let p = [plan(
            "db1",
            &[&format!("KILL CONNECTION {};", at_run("id")), "LIST;"],
            Some("while sessions remain"),
        )
        .each("KILL", "session left")];
        let s = [sent(
            "db1",
            &["KILL CONNECTION 7;", "KILL CONNECTION 9;", "LIST;"],
        )];
        assert!(conforms(&p, &s).is_ok());
        assert!(conforms(&p, &[sent("db1", &["LIST;"])]).is_ok());
        assert!(conforms(&p, &[sent("db1", &["KILL USER 'app';", "LIST;"])]).is_err());
    }

    #[test]
    fn a_placeholder_stands_for_any_text_and_nothing_else_may_differ() {
        let l = Line {
            sql: format!(
                "SELECT MASTER_GTID_WAIT('{}', {});",
                at_run("gtid of db1"),
                at_run("seconds")
            ),
            each: None,
        };
        assert!(line_matches(
            &l,
            &"SELECT MASTER_GTID_WAIT('0-1-20', 8);".to_string()
        ));
        assert!(line_matches(
            &l,
            &"SELECT MASTER_GTID_WAIT('', 8);".to_string()
        ));
        assert!(!line_matches(
            &l,
            &"SELECT MASTER_POS_WAIT('0-1-20', 8);".to_string()
        ));
        assert!(!line_matches(
            &l,
            &"SELECT MASTER_GTID_WAIT('0-1-20', 8)".to_string()
        ));
        let plain = Line {
            sql: "SET GLOBAL read_only = 1;".into(),
            each: None,
        };
        assert!(!line_matches(
            &plain,
            &"SET GLOBAL read_only = 0;".to_string()
        ));
    }

    #[test]
    fn a_planned_script_is_the_script_with_its_session_setup() {
        let mut s = Script::new(std::time::Duration::from_secs(10));
        s.exec("x", "SET GLOBAL read_only = 1");
        let p = Planned::once("db2", &s);
        assert_eq!(p.statements.len(), s.statements().len());
        assert!(conforms(&[p], &[Sent::sql("db2", &s)]).is_ok());
    }

    #[test]
    fn plans_and_records_survive_json() {
        let p = plan("db1", &["A;"], Some("why")).each("A", "per x");
        let back: Planned = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let s = Sent::shell(
            "db1",
            "ip addr add 10.0.0.1/24 dev eth0\narping -U 10.0.0.1",
        );
        assert_eq!(
            s.statements,
            vec!["(shell) ip addr add 10.0.0.1/24 dev eth0; arping -U 10.0.0.1"]
        );
    }
}
