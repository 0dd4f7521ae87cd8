//! `mha-helper report`: MHA's `report_script`. MHA 0.58 runs it after a
//! failover (and after a failed one) as `<value> --orig_master_host=H
//! --new_master_host=H --new_slave_hosts=H,H [--conf=F] --subject=S
//! --body=TEXT`, its output appended to the manager log. The event carries
//! MHA's subject and body plus what mha-helper's journal says of the
//! switch. Exit 0 when every sink took it, 1 when one did not (MHA logs
//! that and goes on), 2 for bad input.

use std::time::Duration;

use anyhow::Result;

use super::event::{last_switch, Event};
use crate::exit::Code;
use crate::mha_args::HookArgs;
use crate::online::HookOptions;
use crate::setup::Setup;

/// How old a journal may be and still describe this report's switch.
const RECENT: Duration = Duration::from_secs(3600);

pub fn run(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    let setup = opts.paths.load()?;
    let event = event(&setup, args);
    if opts.json {
        crate::output::set(serde_json::json!({ "event": &event }));
    } else if opts.dry_run {
        println!("{}", serde_json::to_string_pretty(&event)?);
    }
    if opts.dry_run {
        return Ok(Code::Ok);
    }
    let settings = &setup.helper.defaults().notify;
    if !settings.any() {
        log::error!(
            "report for {}: no notification sink is configured (notify_smtp_server, \
             notify_webhook_url or notify_command in {}); nothing sent",
            setup.mha.app,
            setup
                .helper
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| crate::setup::DEFAULT_HELPER_CONF.into())
        );
        return Ok(Code::Failed);
    }
    let sent = super::send(&event, settings);
    Ok(if sent.iter().all(|d| d.ok) {
        Code::Ok
    } else {
        Code::Failed
    })
}

/// What MHA's own arguments say.
fn from_mha(app: &str, args: &HookArgs) -> Event {
    let subject = args
        .value("subject")
        .map(String::from)
        .unwrap_or_else(|| format!("MHA report for {app}"));
    let mut e = Event::report(app, &subject, args.value("body").unwrap_or(""));
    e.orig_master = args.value("orig_master_host").map(String::from);
    e.new_master = args.value("new_master_host").map(String::from);
    e.new_replicas = args
        .value("new_slave_hosts")
        .map(|h| {
            h.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    e
}

/// MHA's report, with the journal's account of the switch and what is left to do.
pub fn event(setup: &Setup, args: &HookArgs) -> Event {
    let mut e = from_mha(&setup.mha.app, args);
    let subject = e.subject.clone();
    if let Ok(state) = setup.state() {
        e.switch = last_switch(&state, RECENT);
        if let Ok(Some(p)) = crate::fence::read(&state) {
            e.next.push(format!(
                "{} (the old master) is not fenced yet: mha-helper fences it as soon as it \
                 answers; until then keep it from taking writes",
                p.host
            ));
        }
    }
    if e.switch.as_ref().is_some_and(|s| s.outcome == "open") {
        e.next.push(format!(
            "a switch is not finished: run `mha-helper recover --conf {}`",
            setup.mha.app_path.display()
        ));
    }
    if subject.contains("failed") || subject.contains("error") {
        e.next.push(format!(
            "MHA reports a failure: read its log ({})",
            setup
                .mha
                .servers
                .first()
                .and_then(|s| s.manager_log.clone())
                .unwrap_or_else(|| "manager_log".into())
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The argv MHA 0.58 gave report_script in the lab
    /// (../shared/mha-hook-argv/04-dead_failover.report.log).
    #[test]
    fn mha_s_captured_report_arguments_give_subject_body_and_hosts() {
        let body = "Master db2(198.51.100.12:3306) is down!\n\nCheck MHA Manager logs at \
            mgr:/var/lib/mhalab/manager/manager.log for details.\n\nStarted automated(non-interactive) \
            failover.\nMaster failover to db1(198.51.100.11:3306) completed successfully.\n";
        let argv = [
            "--orig_master_host=db2".to_string(),
            "--new_master_host=db1".into(),
            "--new_slave_hosts=db3".into(),
            "--conf=/var/lib/mhalab/manager/mha.cnf".into(),
            "--subject=mha: MySQL Master failover db2(198.51.100.12:3306) to db1(198.51.100.11:3306) succeeded".into(),
            format!("--body={body}"),
        ];
        let e = from_mha("mha", &HookArgs::parse(&argv));
        assert_eq!(e.kind, "report");
        assert_eq!(e.orig_master.as_deref(), Some("db2"));
        assert_eq!(e.new_master.as_deref(), Some("db1"));
        assert_eq!(e.new_replicas, vec!["db3"]);
        assert!(e.subject.ends_with("to db1(198.51.100.11:3306) succeeded"));
        assert_eq!(e.body, body);
        assert!(e
            .text()
            .starts_with("Master db2(198.51.100.12:3306) is down!\n\nCheck MHA"));
    }
}
