//! The man page sections clap cannot derive: EXIT STATUS, ENVIRONMENT,
//! FILES (the same on every page) and EXAMPLES (each page its own),
//! appended to the pages clap_mangen wrote.

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

/// Examples per page: the subcommand ("" for the command itself), then
/// each example's command line and what it does.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "",
        &[
            ("mha-helper check --conf /etc/mha/app1.cnf", "Preflight every host of the application."),
            (
                "mha-helper switchover --conf /etc/mha/app1.cnf --new-master db2",
                "Move the master to db2 with MHA, writes blocked on the old master meanwhile.",
            ),
            (
                "mha-helper failover --conf /etc/mha/app1.cnf --dead-master db1",
                "Fail over from a dead db1 to the candidate MHA chooses.",
            ),
        ],
    ),
    (
        "check",
        &[
            ("mha-helper check --conf /etc/mha/app1.cnf", "Check every host; exit 0 only when all pass."),
            (
                "mha-helper check --conf /etc/mha/app1.cnf --format json --notify",
                "From cron: a JSON record per host, and the problems sent to the notification sinks.",
            ),
            (
                "mha-helper check --conf /etc/mha/app1.cnf --format prometheus > app1.prom",
                "Metrics for node_exporter's textfile collector.",
            ),
        ],
    ),
    (
        "master-ip-online-change",
        &[
            (
                "master_ip_online_change_script=/usr/bin/mha-helper master-ip-online-change --conf=/etc/mha/app1.cnf",
                "The line in MHA's application file; MHA appends its own arguments.",
            ),
            (
                "mha-helper master-ip-online-change --conf=/etc/mha/app1.cnf --dry-run --command=stop --orig_master_host=db1 --new_master_host=db2",
                "List, host by host, every statement the stop phase would send; change nothing.",
            ),
        ],
    ),
    (
        "master-ip-failover",
        &[(
            "master_ip_failover_script=/usr/bin/mha-helper master-ip-failover --conf=/etc/mha/app1.cnf",
            "The line in MHA's application file; MHA appends its own arguments.",
        )],
    ),
    (
        "shutdown",
        &[(
            "shutdown_script=/usr/bin/mha-helper shutdown --conf=/etc/mha/app1.cnf",
            "The line in MHA's application file: a dead master still running is stopped for good.",
        )],
    ),
    (
        "report",
        &[(
            "report_script=/usr/bin/mha-helper report --conf=/etc/mha/app1.cnf",
            "The line in MHA's application file: every failover is reported to the notify_* sinks.",
        )],
    ),
    (
        "switchover",
        &[
            (
                "mha-helper switchover --conf /etc/mha/app1.cnf --new-master db2",
                "Switch to db2; the old master replicates from it afterwards.",
            ),
            (
                "mha-helper switchover --conf /etc/mha/app1.cnf --format json",
                "Let MHA choose the new master; the summary as JSON.",
            ),
            (
                "mha-helper switchover --conf /etc/mha/app1.cnf --new-master db2 --dry-run",
                "MHA's --check_only, then every statement the hooks would send; nothing switched.",
            ),
        ],
    ),
    (
        "failover",
        &[
            (
                "mha-helper failover --conf /etc/mha/app1.cnf --dead-master db1 --new-master db2",
                "Fail over from a dead db1 to db2.",
            ),
            (
                "mha-helper failover --conf /etc/mha/app1.cnf --dead-master db1 --dry-run",
                "Which replica MHA's rules would promote now, and the hook's plan; nothing changed.",
            ),
        ],
    ),
    (
        "status",
        &[(
            "mha-helper status --conf /etc/mha/app1.cnf",
            "Which host is the master now, and whether anything is left to do.",
        )],
    ),
    (
        "history",
        &[(
            "mha-helper history --conf /etc/mha/app1.cnf --limit 5",
            "The last five switches, with their write-block windows.",
        )],
    ),
    (
        "recover",
        &[
            (
                "mha-helper recover --conf /etc/mha/app1.cnf",
                "Finish or undo the switch an open journal records.",
            ),
            (
                "mha-helper recover --conf /etc/mha/app1.cnf --abandon",
                "Close the journal without touching a host, after a person settled the cluster.",
            ),
        ],
    ),
    (
        "fence",
        &[(
            "mha-helper fence --conf /etc/mha/app1.cnf --wait",
            "Keep trying until the old master answers, then fence it.",
        )],
    ),
];

/// The examples of the page for `sub` ("" for the command itself).
pub fn examples(sub: &str) -> Option<&'static [(&'static str, &'static str)]> {
    EXAMPLES.iter().find(|(s, _)| *s == sub).map(|(_, e)| *e)
}

/// The sections, as roff to append to the page for `sub`.
pub fn render(sub: &str) -> String {
    let mut r = Roff::new();
    exit_status(&mut r);
    environment(&mut r);
    files(&mut r);
    if let Some(examples) = examples(sub) {
        r.control("SH", ["EXAMPLES"]);
        for (command, what) in examples {
            item(&mut r, vec![bold(*command)], what);
        }
    }
    r.to_roff()
}

fn item(r: &mut Roff, term: Vec<Inline>, text: &str) {
    r.control("TP", [] as [&str; 0]);
    r.text(term);
    r.text([roman(text)]);
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "Done. For switchover and failover: the switch happened, by MHA or finished by mha-helper."),
        ("1", "Failed, and nothing is left changed (rolled back, nothing done, or refused)."),
        ("2", "Bad input (arguments, configuration, an unknown host); nothing changed."),
        ("3", "Failed, and the cluster is not back where it was: run mha-helper recover."),
        ("10", "Hooks only: done with a warning; MHA proceeds."),
    ] {
        item(r, vec![bold(code)], meaning);
    }
}

fn environment(r: &mut Roff) {
    r.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        (
            "MHA_CONF",
            "The MHA application file, when --conf is not given.",
        ),
        (
            "MHA_HELPER_CONF",
            "mha-helper's settings file, when --helper-conf is not given.",
        ),
        (
            "MHA_GLOBAL_CONF",
            "MHA's global file, when --global-conf is not given.",
        ),
        (
            "MHA_HELPER_MASTERHA_SWITCH",
            "The masterha_master_switch program switchover and failover run (default: from PATH).",
        ),
    ] {
        item(r, vec![bold(name)], meaning);
    }
}

fn files(r: &mut Roff) {
    r.control("SH", ["FILES"]);
    for (path, meaning) in [
        (
            "/etc/mha-helper/helper.cnf",
            "mha-helper's settings, read when it exists and no --helper-conf is given.",
        ),
        (
            "/etc/masterha_default.cnf",
            "MHA's global configuration, read when it exists.",
        ),
        (
            "/var/lib/mha-helper",
            "The state directory (journal_dir): the application's lock, the journal of an open \
             switch and those of past ones, MHA's output of each switch, recorded grants.",
        ),
    ] {
        item(r, vec![italic(path)], meaning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_gets_the_four_sections_and_its_own_examples() {
        let cli = <crate::cli::Cli as clap::CommandFactory>::command();
        let pages = std::iter::once(String::new()).chain(
            cli.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name().to_string()),
        );
        for sub in pages {
            let text = render(&sub);
            for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"] {
                assert!(
                    text.contains(&format!(".SH \"{section}\""))
                        || text.contains(&format!(".SH {section}")),
                    "{sub}: no {section}:\n{text}"
                );
            }
            for (command, _) in examples(&sub).unwrap() {
                let first = command.split(' ').next().unwrap();
                assert!(
                    text.contains(&first.replace('-', "\\-")),
                    "{sub}: {first} not in:\n{text}"
                );
            }
        }
    }
}
