//! The .deb as installed: `scripts/package-check` (scripts/test runs it
//! before the lab flavours) leaves a Debian 12 root in target/pkg-root with
//! MHA 0.58 from Debian and this checkout's package installed by dpkg. Here
//! the lab's manager runs from that root (`MHALAB_MGR_ROOT`), so every
//! program it runs is an installed one: the historic operator commands, the
//! historic hook names MHA calls, `/usr/bin/mha-helper`, and the shim from
//! `/usr/share/mha-helper/mha-shim`, enabled as its README says. The hosts
//! get the installed shim the way an operator would: a copy of that file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const SHIM: &str = "/usr/share/mha-helper/mha-shim";

/// The installed root; it must hold the package of this very checkout.
fn installed_root() -> PathBuf {
    let root = repo().join("target/pkg-root");
    let stamp = root.join(".package-check");
    let built = std::fs::read_to_string(&stamp).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run scripts/package-check first (scripts/test does)",
            stamp.display()
        )
    });
    let head = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = !Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .current_dir(repo())
        .status()
        .unwrap()
        .success();
    let want = if dirty { format!("{head}-dirty") } else { head };
    assert_eq!(
        built.trim(),
        want,
        "target/pkg-root holds the package of another commit: run scripts/package-check again"
    );
    // dpkg's own record: the installed files are the package's.
    let verify = Command::new("chroot")
        .arg(&root)
        .args(["dpkg", "--verify", "mha-helper"])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "dpkg --verify in the root: {}",
        both(&verify)
    );
    root
}

fn git(args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", both(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A command in the manager's namespace, run from the installed root, with
/// the shim enabled the way the shim's README says for the manager.
fn installed(root: &Path, args: &[&str]) -> Output {
    Command::new(lab_script())
        .arg("exec")
        .arg("mgr")
        .args(args)
        .env("MHALAB_MGR_ROOT", root)
        .env("PERL5LIB", SHIM)
        .env("PERL5OPT", "-MMHAHelperShim")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The lab's MHA config with the hooks set to the installed historic names,
/// in a directory of its own (the application is still `app1`).
fn installed_app_cnf(lab: &Lab) -> String {
    let dir = lab.dir().join("manager/installed");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("app1.cnf").to_string_lossy().into_owned();
    let helper = lab.helper_cnf();
    let text = std::fs::read_to_string(lab.app_cnf()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("master_ip_failover_script=") {
            out += &format!(
                "master_ip_failover_script=/usr/bin/master_ip_failover --conf={conf} --helper-conf={helper}\n"
            );
        } else if line.starts_with("master_ip_online_change_script=") {
            out += &format!(
                "master_ip_online_change_script=/usr/bin/master_ip_online_change --conf={conf} --helper-conf={helper}\n"
            );
        } else {
            out += line;
            out += "\n";
        }
    }
    assert!(out.contains("/usr/bin/master_ip_failover "), "{out}");
    assert!(out.contains("/usr/bin/master_ip_online_change "), "{out}");
    std::fs::write(&conf, out).unwrap();
    conf
}

/// Copy the installed shim to where the hosts' sshd puts it first on
/// PERL5LIB (the lab's `shim-installed`; `lab reset` empties it).
fn shim_to_hosts(lab: &Lab, root: &Path) -> PathBuf {
    let dir = lab.dir().join("shim-installed");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("MHAHelperShim.pm");
    std::fs::copy(root.join(&SHIM[1..]).join("MHAHelperShim.pm"), &file).unwrap();
    file
}

/// Where Perl finds MHAHelperShim on `host`, in an SSH session as MHA's
/// user (as MHA runs its node tools there), from the installed root's ssh.
fn shim_seen_on(lab: &Lab, root: &Path, host: &str) -> String {
    let text = std::fs::read_to_string(lab.app_cnf()).unwrap();
    let opts = text
        .lines()
        .find_map(|l| l.strip_prefix("ssh_options="))
        .unwrap()
        .to_string();
    let mut args = vec!["ssh"];
    args.extend(opts.split_whitespace());
    let target = format!("mha@{host}");
    args.push(&target);
    args.push(r#"perl -MMHAHelperShim -e 'print $INC{"MHAHelperShim.pm"}'"#);
    let o = installed(root, &args);
    assert!(o.status.success(), "ssh {host}: {}", both(&o));
    stdout(&o).trim().to_string()
}

/// MHA's output of the last `mha-helper switchover`/`failover`, which
/// mha-helper keeps in its state directory.
fn newest_switch_log(lab: &Lab) -> String {
    let newest = std::fs::read_dir(lab.journal_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".switch.log"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("no switch log in the state directory");
    std::fs::read_to_string(newest).unwrap()
}

#[test]
fn the_installed_package_switches_over_and_fails_over_with_the_installed_binary_and_shim() {
    let root = installed_root();
    let lab = Lab::lock();
    let conf = installed_app_cnf(&lab);
    let helper = lab.helper_cnf();
    let copied = shim_to_hosts(&lab, &root);

    // What runs is what dpkg installed.
    let v = installed(&root, &["mha-helper", "--version"]);
    assert!(
        stdout(&v).starts_with(&format!(
            "mha-helper {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        both(&v)
    );
    let which = installed(
        &root,
        &[
            "perl",
            "-MMHAHelperShim",
            "-e",
            r#"print $INC{"MHAHelperShim.pm"}"#,
        ],
    );
    assert_eq!(stdout(&which), format!("{SHIM}/MHAHelperShim.pm"));
    for h in HOSTS {
        assert_eq!(shim_seen_on(&lab, &root, h), copied.to_string_lossy());
    }
    let before = lab.state();

    // Online switchover through MHA: the historic operator command, MHA
    // calling the historic hook name.
    let o = installed(
        &root,
        &[
            "mysql_online_failover",
            "--conf",
            &conf,
            "--helper-conf",
            &helper,
            "--new-master",
            "db2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("switched db1 -> db2"), "{}", both(&o));
    let mha_log = newest_switch_log(&lab);
    assert!(
        mha_log.contains("/usr/bin/master_ip_online_change --conf=")
            && mha_log.contains("--command=start"),
        "MHA did not call the installed online hook:\n{mha_log}"
    );
    assert!(
        !mha_log.contains(SHIM),
        "the shim made Perl warn in MHA's output:\n{mha_log}"
    );
    let after = lab.settled_state();
    for h in &after.hosts {
        assert_eq!(h.read_only, h.host != "db2", "{h:?}");
    }
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "grants on {} changed", b.host);
    }

    // The new master dies; MHA, run by the historic failover command, saves
    // and applies what it can with the node tools (the shim on the hosts)
    // and calls the historic failover hook.
    lab.app_sql(
        "app",
        "db2",
        "INSERT INTO t1 (val) VALUES ('before the failover')",
    )
    .unwrap();
    common::lab(&["kill-mysql", "db2"]);
    let o = installed(
        &root,
        &[
            "mysql_failover",
            "db2",
            "--conf",
            &conf,
            "--helper-conf",
            &helper,
            "--new-master",
            "db1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stdout(&o).contains("failed over from db2 to db1"),
        "{}",
        both(&o)
    );
    assert_eq!(lab.value("db1", "SELECT @@GLOBAL.read_only"), "0");
    assert_eq!(lab.value("db3", "SELECT @@GLOBAL.read_only"), "1");
    assert_eq!(
        lab.value(
            "db1",
            "SELECT COUNT(*) FROM appdb.t1 WHERE val = 'before the failover'"
        ),
        "1"
    );
    lab.app_sql(
        "app",
        "db1",
        "INSERT INTO t1 (val) VALUES ('after the failover')",
    )
    .unwrap();
    let log = lab.manager_log() + &both(&o);
    assert!(
        log.contains("/usr/bin/master_ip_failover --conf="),
        "MHA did not call the installed failover hook:\n{log}"
    );
}
