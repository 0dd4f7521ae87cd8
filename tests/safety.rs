//! One switch at a time and nothing trusted that another user could have
//! written: the application lock against concurrent operators, a recover
//! that refuses under a live switch, planted journals and an impostor
//! session keeper, and statements stopped before any undo when they hang.
//! The writability watchdog (tests/common) watches every test here.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

fn assert_master(lab: &Lab, master: &str) {
    for h in HOSTS {
        let ro = lab.value(h, "SELECT @@GLOBAL.read_only");
        assert_eq!(
            ro == "0",
            h == master,
            "{h}: read_only={ro}, master should be {master}"
        );
    }
}

#[test]
fn recover_during_a_live_switch_refuses_names_the_process_and_changes_nothing() {
    let lab = Lab::lock();
    let before = lab.state();
    let dir = lab.fault_dir("live");
    let d = dir.display().to_string();
    // MHA is held between our stop and our start.
    let sw = lab.switchover_spawn(
        "db2",
        &[
            ("MHA_HELPER_FAULT", "wait@before:start"),
            ("MHA_HELPER_FAULT_DIR", &d),
        ],
    );
    let gate = wait_point(&dir, "before:start", Duration::from_secs(30));
    let held = lab.state();
    for args in [&[][..], &["--force"][..]] {
        let r = lab.recover_with(args);
        assert_eq!(r.status.code(), Some(1), "recover {args:?}: {}", both(&r));
        let text = stderr(&r);
        if args.is_empty() {
            assert!(
                text.contains("masterha_master_switch (pid "),
                "recover must name MHA's process: {text}"
            );
        } else {
            // --force passes the MHA check but never takes the lock from a
            // live mha-helper.
            assert!(
                text.contains("`mha-helper switchover`") && text.contains("pid "),
                "recover --force must name the lock holder: {text}"
            );
        }
        assert_eq!(lab.state(), held, "recover {args:?} changed the cluster");
    }
    std::fs::remove_file(gate).unwrap();
    let o = finish(sw, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let after = lab.settled_state();
    assert_master(&lab, "db2");
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }
}

#[test]
fn two_switchovers_started_together_one_runs_and_the_other_refuses() {
    let lab = Lab::lock();
    let a = lab.switchover_spawn("db2", &[]);
    let b = lab.switchover_spawn("db2", &[]);
    let (a, b) = (
        finish(a, Duration::from_secs(60)),
        finish(b, Duration::from_secs(60)),
    );
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "one must run and one refuse: {codes:?}\n{}\n{}",
        both(&a),
        both(&b)
    );
    let loser = if a.status.code() == Some(1) { &a } else { &b };
    assert!(
        stderr(loser).contains("another mha-helper is working on this application: pid "),
        "{}",
        both(loser)
    );
    assert_master(&lab, "db2");
}

/// A journal that would give every application account ALL PRIVILEGES.
fn planted_journal() -> String {
    let grant = "GRANT ALL PRIVILEGES ON *.* TO `app`@`%` WITH GRANT OPTION";
    [
        r#"{"t":"begin","id":"planted","kind":"online","orig":"db1","new":"db2","at":"now","pid":1}"#.to_string(),
        format!(
            r#"{{"t":"intent","step":"block-accounts","host":"db1","undo":{{"kind":"grants","host":"db1","method":"revoke","snapshots":[{{"account":{{"user":"app","host":"%"}},"grants":["{grant}"],"locked":false}}]}}}}"#
        ),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn planted_journals_are_refused_and_nothing_is_run() {
    let lab = Lab::lock();
    let before = lab.state();

    // A state directory other users can write.
    let open = lab.dir().join("manager/open-state");
    let _ = std::fs::remove_dir_all(&open);
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let j = open.join("mha-helper.app1.journal");
    std::fs::write(&j, planted_journal()).unwrap();
    std::fs::set_permissions(&j, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        lab.helper_cnf(),
        format!("[default]\njournal_dir = {}\n", open.display()),
    )
    .unwrap();
    for o in [
        lab.recover(),
        lab.online_hook("stop", "db1", "db2", &[], &[]),
    ] {
        assert_eq!(o.status.code(), Some(2), "{}", both(&o));
        assert!(
            stderr(&o).contains("is writable by other users"),
            "{}",
            both(&o)
        );
    }
    assert_eq!(lab.state(), before);

    // A journal that is a symlink to a file of ours elsewhere.
    lab.set_helper_conf("");
    let target = lab.dir().join("manager/planted.journal");
    std::fs::write(&target, planted_journal()).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&target, lab.journal()).unwrap();
    for o in [
        lab.recover(),
        lab.online_hook("stop", "db1", "db2", &[], &[]),
    ] {
        assert_ne!(o.status.code(), Some(0), "{}", both(&o));
        assert!(stderr(&o).contains("symbolic link"), "{}", both(&o));
    }
    assert_eq!(lab.state(), before);
    std::fs::remove_file(lab.journal()).unwrap();

    // A journal readable by others: refused too (it holds grants).
    std::fs::write(lab.journal(), planted_journal()).unwrap();
    std::fs::set_permissions(lab.journal(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lab.recover();
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stderr(&o).contains("mode 644"), "{}", both(&o));
    std::fs::remove_file(lab.journal()).unwrap();
    assert_eq!(lab.state(), before);
}

#[test]
fn an_impostor_on_the_keeper_socket_gets_nothing_and_start_refuses() {
    let lab = Lab::lock();
    let before = lab.state();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let keeper = lab.keeper_pid().expect("the journal names the keeper");
    assert!(
        runs(keeper, "mha-helper keeper"),
        "pid {keeper} is not our keeper"
    );
    // SAFETY: the keeper this test's stop started (checked above).
    unsafe { libc::kill(keeper as i32, libc::SIGKILL) };
    assert!(wait_for(Duration::from_secs(5), || !runs(keeper, "keeper")));
    let sock = lab.journal_dir().join("mha-helper.app1.keeper.sock");
    let _ = std::fs::remove_file(&sock);
    // Someone else listens where the keeper was, and keeps what it gets.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let o = lab.online_hook("start", "db1", "db2", &[], &[]);
    let mut got = Vec::new();
    while let Ok((mut s, _)) = listener.accept() {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.read_to_end(&mut got);
    }
    assert!(got.is_empty(), "the impostor received {} bytes", got.len());
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("is not the session keeper this switch started"),
        "{}",
        both(&o)
    );
    assert_eq!(
        lab.value("db2", "SELECT @@GLOBAL.read_only"),
        "1",
        "db2 was opened"
    );
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(lab.settled_state(), before);
}

/// The sessions of the MHA account on `host` running `like`.
fn our_statements(lab: &Lab, host: &str, like: &str) -> usize {
    lab.mysql(
        host,
        &format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'mha' AND INFO LIKE '{like}'"
        ),
    )
    .lines()
    .skip(1)
    .count()
}

#[test]
fn a_statement_waiting_for_a_lock_is_given_up_by_the_server_before_the_rollback() {
    let lab = Lab::lock();
    let before = lab.state();
    lab.set_helper_conf(
        "[default]\nstep_timeout = 3\nlong_transaction_limit = 600\ngrace_period = 1\n",
    );
    // Another session holds a table lock for 5 s: SET GLOBAL read_only = 1
    // waits for it (and so does giving back the table grants, in the undo,
    // which has a time of its own: undo_timeout).
    let holder = lab.app_session_root("db1", "LOCK TABLES appdb.t1 WRITE; SELECT SLEEP(5)");
    assert!(wait_for(Duration::from_secs(10), || {
        lab.value(
            "db1",
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(5)%'",
        ) == "1"
    }));
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let text = stderr(&o);
    // The server gives up first (lock_wait_timeout or max_statement_time,
    // both set below step_timeout), long before our own 3 s.
    assert!(
        text.contains("(error 1205)") || text.contains("(error 1969)"),
        "the server did not give up: {text}"
    );
    assert!(text.contains("rolled back"), "{text}");
    assert_eq!(our_statements(&lab, "db1", "SET GLOBAL%"), 0);
    let _ = finish(holder, Duration::from_secs(10));
    assert_eq!(lab.settled_state(), before);
}

#[test]
fn a_statement_past_step_timeout_is_killed_and_gone_before_the_rollback() {
    let lab = Lab::lock();
    let before = lab.state();
    lab.set_helper_conf("[default]\nstep_timeout = 2\ngrace_period = 1\n");
    // The fence statement sleeps on the server with its time limit lifted:
    // only our timeout and KILL can end it.
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "hang@old-master-read-only")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let text = stderr(&o);
    let killed = text
        .find("was killed and is gone")
        .unwrap_or_else(|| panic!("no kill: {text}"));
    let undo = text
        .find("undo old-master-read-only")
        .unwrap_or_else(|| panic!("no undo: {text}"));
    assert!(
        killed < undo,
        "the undo ran before the statement was gone:\n{text}"
    );
    assert!(text.contains("timed out after 2."), "{text}");
    assert_eq!(our_statements(&lab, "db1", "DO SLEEP%"), 0);
    assert_eq!(lab.settled_state(), before);
}

#[test]
fn a_switch_whose_hook_is_not_mha_helpers_refuses_before_mha_runs_unless_unprotected() {
    let lab = Lab::lock();
    let before = lab.state();
    let conf = lab.app_cnf_edited("nohook", |text, _| {
        text.lines()
            .filter(|l| !l.starts_with("master_ip_online_change_script"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let o = lab.command_on(&conf, "switchover", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let err = stderr(&o);
    let why: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(why.len(), 1, "one error line: {err}");
    for part in [
        "master_ip_online_change_script",
        &conf,
        "is not set",
        "--unprotected",
    ] {
        assert!(why[0].contains(part), "{part} not in: {err}");
    }
    // MHA never ran: it would have left its output file.
    let logs = std::fs::read_dir(lab.journal_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".switch.log"))
        .count();
    assert_eq!(logs, 0, "MHA was started");
    assert_eq!(
        lab.state(),
        before,
        "a refused switchover changed the cluster"
    );

    // A failover hook for another application file is refused the same way.
    let other = lab.app_cnf_edited("otherhook", |text, conf| {
        text.replace(
            &format!("master-ip-failover --conf={conf}"),
            "master-ip-failover --conf=/etc/mha/other.cnf",
        )
    });
    let o = lab.command_on(&other, "failover", &["--dead-master", "db1"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("master_ip_failover_script")
            && stderr(&o).contains("--conf=/etc/mha/other.cnf"),
        "{}",
        both(&o)
    );
    assert_eq!(
        lab.state(),
        before,
        "a refused failover changed the cluster"
    );

    // Asked for, the unprotected switch runs: MHA alone moves the master.
    let o = lab.command_on(
        &conf,
        "switchover",
        &["--new-master", "db2", "--unprotected"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("--unprotected: master_ip_online_change_script"),
        "{}",
        both(&o)
    );
    assert!(
        stdout(&o).contains("no hook of mha-helper ran"),
        "{}",
        both(&o)
    );
}

/// `mha-helper ARGS` on a terminal of its own (util-linux `script`), with
/// `input` typed in.
fn on_a_terminal(args: &[&str], input: &str) -> std::process::Output {
    let line = format!(
        "{} exec mgr {} {}",
        lab_script().display(),
        bin(),
        args.join(" ")
    );
    with_stdin(
        std::process::Command::new("script").args(["-qec", &line, "/dev/null"]),
        input,
    )
}

#[test]
fn on_a_terminal_switchover_shows_the_switch_and_asks_and_no_changes_nothing() {
    let lab = Lab::lock();
    let before = lab.state();
    let (conf, helper) = (lab.app_cnf(), lab.helper_cnf());
    let args = [
        "switchover",
        "--conf",
        &conf,
        "--helper-conf",
        &helper,
        "--new-master",
        "db2",
    ];
    let o = on_a_terminal(&args, "n\n");
    let screen = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{screen}");
    for part in [
        "db1 -> db2",
        "block-accounts",
        "on db1",
        "Proceed? [y/N]",
        "not confirmed; nothing changed",
    ] {
        assert!(screen.contains(part), "{part} not shown:\n{screen}");
    }
    assert_eq!(
        lab.state(),
        before,
        "a switch not confirmed changed the cluster"
    );

    let mut yes = args.to_vec();
    yes.push("--yes");
    let o = on_a_terminal(&yes, "");
    let screen = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{screen}");
    assert!(
        !screen.contains("Proceed?") && screen.contains("switched db1 -> db2"),
        "{screen}"
    );
}
