//! The question `switchover` asks on a terminal before it starts MHA: the
//! switch on one screen (old -> new master, what the stop phase will block
//! and end on the old master, where the writer VIP goes), then "proceed?".
//! `--yes` skips it; without a terminal nothing is asked.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, Result};

use crate::exit::Refused;
use crate::setup::{ConfigPaths, Setup};

/// Whether to ask: only a person at a terminal can answer.
pub fn wanted(yes: bool) -> bool {
    !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Show the switch and ask; an answer other than yes refuses (exit 1,
/// nothing changed).
pub fn ask(
    setup: &Setup,
    paths: &ConfigPaths,
    new_master: Option<&str>,
    orig_as_slave: bool,
) -> Result<()> {
    let hosts = crate::topology::read_cluster(setup, None)?;
    let (master, problems) = crate::status::judge(&hosts, None);
    let orig = master
        .ok_or_else(|| anyhow!("no single master to switch from: {}", problems.join("; ")))?;
    let mut screen = format!("online switchover of {}:\n", setup.mha.app);
    match new_master {
        Some(new) => {
            screen += &format!("  {orig} -> {new}\n");
            let plan =
                super::dry_run::captured_plan(setup, paths, "stop", (&orig, new), orig_as_slave)?;
            for p in &plan.plan {
                screen += &format!("  {:<22} on {:<8} {}\n", p.step, p.host, p.what);
            }
        }
        None => screen += &format!("  {orig} -> the candidate MHA chooses\n"),
    }
    if let Some(vip) = &setup.helper.defaults().writer_vip {
        screen += &format!("  the writer VIP {vip} moves to the new master\n");
    }
    for p in &problems {
        screen += &format!("  note: {p}\n");
    }
    question(&screen)
}

/// Show a dead-master failover and ask.
pub fn ask_failover(setup: &Setup, dead: &str, new_master: Option<&str>) -> Result<()> {
    let mut screen = format!("dead-master failover of {}:\n", setup.mha.app);
    screen += &format!(
        "  {dead} (taken for dead) -> {}\n",
        new_master.unwrap_or("the candidate MHA chooses")
    );
    screen += &format!(
        "  {dead} is fenced (read_only, sessions ended, VIP off) now or as soon as it answers\n"
    );
    if let Some(vip) = &setup.helper.defaults().writer_vip {
        screen += &format!("  the writer VIP {vip} moves to the new master\n");
    }
    question(&screen)
}

/// `screen`, then "Proceed?"; anything but yes refuses.
fn question(screen: &str) -> Result<()> {
    let mut err = std::io::stderr();
    write!(err, "{screen}Proceed? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(
            anyhow!("not confirmed; nothing changed (--yes skips the question)").context(Refused),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_or_with_yes_nothing_is_asked() {
        // cargo test's stdin is not a person at a terminal when run by CI;
        // --yes never asks either way.
        assert!(!wanted(true));
        if !std::io::stdin().is_terminal() {
            assert!(!wanted(false));
        }
    }
}
