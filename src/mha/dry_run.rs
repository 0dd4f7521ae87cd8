//! `switchover --dry-run`: what a switchover would do, changing no host of
//! ours: MHA's own `--check_only` (its checks, and the new master it would
//! choose), then the online hook's plan for those two masters, stop and
//! start, statement for statement, as the hook's own `--dry-run` lists it.
//!
//! `failover --dry-run`: MHA has no `--check_only` for a dead master, so
//! the new master is the one named, or the one MHA's rules would pick from
//! the replicas as they stand (`choose`); then the failover hook's plan:
//! fencing the dead master (as far as it answers) and opening the new one.

use anyhow::{anyhow, Result};

use super::{online_args, run_switch, why};
use crate::exit::Code;
use crate::mha_args::{escape, HookArgs};
use crate::online::HookOptions;
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::new_id;

/// The current and the new master in MHA's `From:`/`To:` picture.
pub fn from_to(lines: &[String]) -> Option<(String, String)> {
    let after = |label: &str| {
        let i = lines.iter().position(|l| l.trim() == label)?;
        let line = lines.get(i + 1)?;
        Some(line.trim().split('(').next()?.to_string())
    };
    Some((after("From:")?, after("To:")?))
}

/// The online hook's arguments for `phase`, as MHA would pass them, from
/// the configuration (in this process: no password in any argv).
fn hook_args(
    setup: &Setup,
    phase: &str,
    orig: &str,
    new: &str,
    orig_as_slave: bool,
) -> Result<HookArgs> {
    let server = |h: &str| {
        setup.mha.server(h).ok_or_else(|| {
            anyhow!(
                "MHA named {h}, which no server block of {} has",
                setup.mha.app_path.display()
            )
        })
    };
    let (o, n) = (server(orig)?, server(new)?);
    let mut args = vec![format!("--command={phase}")];
    for (who, s) in [("orig", o), ("new", n)] {
        args.push(format!("--{who}_master_host={}", s.hostname));
        args.push(format!("--{who}_master_ip={}", s.ip));
        args.push(format!("--{who}_master_port={}", s.port));
        args.push(format!("--{who}_master_user={}", escape(&s.user)));
        args.push(format!("--{who}_master_password={}", escape(&s.password)));
        args.push(format!("--{who}_master_ssh_user={}", s.ssh_user));
    }
    if orig_as_slave {
        args.push("--orig_master_is_new_slave".into());
    }
    Ok(HookArgs::parse(&args))
}

/// The failover hook's arguments for `phase`, as MHA would pass them: the
/// dead master's address (stopssh), and the new master's with its
/// credentials (start).
fn failover_hook_args(
    setup: &Setup,
    phase: &str,
    dead: &str,
    new: Option<&str>,
) -> Result<HookArgs> {
    let server = |h: &str| {
        setup
            .mha
            .server(h)
            .ok_or_else(|| anyhow!("{h}: no server block in {}", setup.mha.app_path.display()))
    };
    let d = server(dead)?;
    let mut args = vec![
        format!("--command={phase}"),
        format!("--ssh_user={}", d.ssh_user),
        format!("--orig_master_host={}", d.hostname),
        format!("--orig_master_ip={}", d.ip),
        format!("--orig_master_port={}", d.port),
    ];
    if let Some(n) = new {
        let n = server(n)?;
        args.push(format!("--new_master_host={}", n.hostname));
        args.push(format!("--new_master_ip={}", n.ip));
        args.push(format!("--new_master_port={}", n.port));
        args.push(format!("--new_master_user={}", escape(&n.user)));
        args.push(format!("--new_master_password={}", escape(&n.password)));
    }
    Ok(HookArgs::parse(&args))
}

/// Run `hook` as a dry run with `args`, its report kept rather than
/// printed; `allowed` are the exit codes that still make a plan.
fn captured(
    paths: &ConfigPaths,
    hook: fn(&HookOptions, &HookArgs) -> Result<Code>,
    args: &HookArgs,
    allowed: &[Code],
) -> Result<crate::report::Report> {
    let phase = args.get("command").unwrap_or("?").to_string();
    let kept = crate::report::Captured::default();
    let opts = HookOptions {
        paths: paths.clone(),
        dry_run: true,
        json: true,
        show_sent: false,
        capture: Some(kept.clone()),
    };
    let code = hook(&opts, args)?;
    if code != Code::Ok && !allowed.contains(&code) {
        return Err(anyhow!(
            "the {phase} phase's dry run ended with exit {}",
            code as i32
        ));
    }
    let mut kept = kept
        .lock()
        .map_err(|_| anyhow!("the kept reports are poisoned"))?;
    kept.pop()
        .ok_or_else(|| anyhow!("the {phase} phase's dry run made no report"))
}

/// The hook's report of a dry run of `phase` for `orig` -> `new`, kept
/// rather than printed.
pub fn captured_plan(
    setup: &Setup,
    paths: &ConfigPaths,
    phase: &str,
    (orig, new): (&str, &str),
    orig_as_slave: bool,
) -> Result<crate::report::Report> {
    let args = hook_args(setup, phase, orig, new, orig_as_slave)?;
    captured(paths, crate::online::hook, &args, &[])
}

/// `failover --dry-run`.
pub fn failover(
    setup: &Setup,
    paths: &ConfigPaths,
    dead: &str,
    new_master: Option<&str>,
    json: bool,
) -> Result<Code> {
    let (new, why) = match new_master {
        Some(n) => (setup.hostname(n)?, "named by --new-master"),
        None => {
            let specs = setup.specs(&[])?;
            let (mut hosts, _) = crate::cluster::connect_split(specs);
            hosts.retain(|h| h.name() != dead);
            let all = super::choose::candidates(setup, &mut hosts, dead);
            super::choose::choose(&all)
                .map_err(|e| e.context(format!("failover --dry-run from {dead}")))?
        }
    };
    log::info!("failover --dry-run: {dead} -> {new} ({why})");
    // The dead master's fence: MHA calls stopssh when SSH answers (stop,
    // which changes nothing, when not); a host that cannot be reached is
    // said so in the report (exit 10 there: MHA would go on).
    let fence = failover_hook_args(setup, "stopssh", dead, None)?;
    let open = failover_hook_args(setup, "start", dead, Some(&new))?;
    if json {
        let stop = captured(paths, crate::failover::hook, &fence, &[Code::Proceed])?;
        let start = captured(paths, crate::failover::hook, &open, &[Code::Proceed])?;
        crate::output::set(serde_json::json!({
            "dry_run": true,
            "dead_master": dead,
            "new_master": new,
            "new_master_chosen_by": why,
            "stop": stop,
            "start": start,
        }));
        return Ok(Code::Ok);
    }
    let opts = HookOptions {
        paths: paths.clone(),
        dry_run: true,
        ..HookOptions::default()
    };
    for args in [&fence, &open] {
        let code = crate::failover::hook(&opts, args)?;
        if !matches!(code, Code::Ok | Code::Proceed) {
            return Ok(code);
        }
    }
    println!(
        "failover --dry-run: {dead} -> {new} ({why}{}); the hook's plan is above (the dead \
         master fenced as far as it answers, then the new master opened); nothing changed",
        if new_master.is_none() {
            "; MHA chooses again when it runs"
        } else {
            ""
        }
    );
    Ok(Code::Ok)
}

/// `switchover --dry-run`.
pub fn switchover(
    setup: &Setup,
    paths: &ConfigPaths,
    new_master: Option<&str>,
    orig_as_slave: bool,
    json: bool,
) -> Result<Code> {
    let state = setup.state()?;
    let mut args = online_args(setup, paths, new_master, orig_as_slave);
    args.push("--check_only".into());
    let run = run_switch(setup, &state, &args, &new_id(), "MHA --check_only")?;
    if !run.success {
        return Err(anyhow!(
            "MHA's --check_only failed ({}): {}; its output is in {}",
            run.status,
            why::first_error(&run.output).unwrap_or_else(|| "it logged no error".into()),
            run.log_file.display()
        ));
    }
    let (orig, new) = from_to(&run.output).ok_or_else(|| {
        anyhow!(
            "MHA's --check_only passed but named no From:/To: masters; its output is in {}",
            run.log_file.display()
        )
    })?;
    log::info!("MHA's --check_only passed: it would switch {orig} -> {new}");
    if json {
        let masters = (orig.as_str(), new.as_str());
        let stop = captured_plan(setup, paths, "stop", masters, orig_as_slave)?;
        let start = captured_plan(setup, paths, "start", masters, orig_as_slave)?;
        crate::output::set(serde_json::json!({
            "dry_run": true,
            "orig_master": orig,
            "new_master": new,
            "mha_check_only": { "passed": true, "log": run.log_file.display().to_string() },
            "stop": stop,
            "start": start,
        }));
    } else {
        let opts = HookOptions {
            paths: paths.clone(),
            dry_run: true,
            ..HookOptions::default()
        };
        for phase in ["stop", "start"] {
            let code =
                crate::online::hook(&opts, &hook_args(setup, phase, &orig, &new, orig_as_slave)?)?;
            if code != Code::Ok {
                return Ok(code);
            }
        }
        println!(
            "switchover --dry-run: MHA's --check_only passed and would switch {orig} -> {new}; \
             the hook's plan is above (stop, then start: start also gives back what stop takes, \
             which is known once stop ran); nothing changed"
        );
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masters_are_read_from_mhas_from_to_picture() {
        let out: Vec<String> = "x - [info] \nFrom:\ndb1(198.18.1.11:3306) (current master)\n +--db2(198.18.1.12:3306)\n\nTo:\ndb2(198.18.1.12:3306) (new master)\n +--db1(198.18.1.11:3306)\ny - [info] ok"
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(from_to(&out), Some(("db1".into(), "db2".into())));
        assert_eq!(from_to(&out[..3]), None);
    }

    #[test]
    fn a_password_passed_in_process_reads_back_as_it_is() {
        for pw in ["plain", "pa$$ w'o\"rd\\", "\\\\x"] {
            let a = HookArgs::parse(&[format!("--orig_master_password={}", escape(pw))]);
            assert_eq!(a.get("orig_master_password"), Some(pw));
        }
    }
}
