//! Alerts: when an MHA hook fails, exits 10, rolls back or leaves a journal
//! that needs `recover`, the notification sinks hear of it, with the step
//! and host the error names and the command to run next. `check --notify`
//! sends its problems the same way.

use anyhow::Result;

use super::event::{last_switch, Event, Failure};
use crate::exit::Code;
use crate::mha_args::HookArgs;
use crate::setup::{ConfigPaths, Setup};

/// After hook `command` (`master-ip-online-change`, ...) returned `result`:
/// alert unless it succeeded or was a dry run. Never changes the result.
pub fn after_hook(
    command: &str,
    paths: &ConfigPaths,
    dry_run: bool,
    args: &HookArgs,
    result: &Result<Code>,
) {
    let code = match result {
        Ok(c) => *c,
        Err(e) => crate::exit::code_for(e),
    };
    if code == Code::Ok || dry_run {
        return;
    }
    // The hook has reported its own configuration errors already.
    let Ok(setup) = paths.load() else { return };
    let settings = &setup.helper.defaults().notify;
    if !settings.any() {
        return;
    }
    let error = match result {
        Err(e) => crate::exit::message(e),
        Ok(_) => String::new(),
    };
    let event = hook_event(&setup, command, args, code, &error);
    super::send(&event, settings);
}

fn hook_event(setup: &Setup, command: &str, args: &HookArgs, code: Code, error: &str) -> Event {
    let app = &setup.mha.app;
    let phase = args.value("command").map(String::from);
    let what = match code {
        Code::Proceed => "finished with warnings; MHA goes on",
        Code::NeedsRecover => "failed and left the cluster changed",
        Code::BadInput => "refused its input",
        _ => "failed; MHA stops the switch",
    };
    let subject = format!(
        "mha-helper: {command}{} on {app} {what} (exit {})",
        phase
            .as_deref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default(),
        code as i32
    );
    let mut e = Event::alert(app, &subject, if error.is_empty() { what } else { error });
    e.orig_master = args.value("orig_master_host").map(String::from);
    e.new_master = args.value("new_master_host").map(String::from);
    e.failure = Some(Failure {
        command: command.into(),
        phase,
        exit_code: code as i32,
        error: error.into(),
    });
    let conf = setup.mha.app_path.display();
    if let Ok(state) = setup.state() {
        e.switch = last_switch(&state, std::time::Duration::from_secs(600));
    }
    let open = e.switch.as_ref().is_some_and(|s| s.outcome == "open");
    match code {
        Code::NeedsRecover => e.next.push(format!(
            "run `mha-helper recover --conf {conf}` on {} to finish or undo the switch",
            e.manager
        )),
        Code::Proceed => e.next.push(format!(
            "read the warnings; run `mha-helper check --conf {conf}`{}",
            if open {
                format!(" and `mha-helper recover --conf {conf}`")
            } else {
                String::new()
            }
        )),
        Code::BadInput => e
            .next
            .push("fix the configuration or the arguments named above; nothing was changed".into()),
        _ => e.next.push(if open {
            format!("a journal is open: run `mha-helper recover --conf {conf}`")
        } else {
            "everything done was rolled back; fix the cause above and run the switch again".into()
        }),
    }
    e
}

/// `check --notify`: the problems check found, as one event.
pub fn check_failed(setup: &Setup, problems: usize, table: &str) {
    let settings = &setup.helper.defaults().notify;
    if !settings.any() {
        log::warn!("check --notify: no notification sink is configured (notify_* in helper.cnf)");
        return;
    }
    let app = &setup.mha.app;
    let subject = format!("mha-helper check: {app}: {problems} problem(s)");
    let mut e = Event::check(app, &subject, table);
    e.next.push(format!(
        "fix what check reports, then run `mha-helper check --conf {}` again",
        setup.mha.app_path.display()
    ));
    super::send(&e, settings);
}
