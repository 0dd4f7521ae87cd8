//! The lab itself: MHA's own checks pass on it, `up` twice is fine, `down`
//! leaves no namespace, no bridge and no process behind.

mod common;

use common::*;

#[test]
fn mha_own_ssh_and_replication_checks_pass_on_the_lab() {
    let _lab = Lab::lock();
    let out = lab(&["check-mha"]);
    assert!(out.contains("PASS"), "{out}");
}

#[test]
fn up_twice_is_fine_and_down_leaves_nothing_running() {
    let lab = Lab::lock();
    let again = common::lab(&["up"]);
    assert!(again.contains("already up and healthy"), "{again}");
    let pids: Vec<String> = HOSTS
        .iter()
        .flat_map(|h| {
            ["run/mysqld.pid", "run/sshd.pid"].map(|f| {
                std::fs::read_to_string(lab.dir().join(h).join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        })
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(
        pids.len(),
        6,
        "an sshd and a database server per host: {pids:?}"
    );

    common::lab(&["down"]);
    let live: Vec<&String> = pids
        .iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        })
        .collect();
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let links = std::process::Command::new("ip")
        .args(["-br", "link"])
        .output()
        .unwrap();
    let sudo_rule_left = exists(&match lab.var("MHALAB_INSTANCE").as_str() {
        "0" => "/etc/sudoers.d/mhalab".to_string(),
        n => format!("/etc/sudoers.d/mhalab{n}"),
    });
    let twice = common::lab_raw(&["down"]);
    // bring it back before asserting, so later tests find a lab
    common::lab(&["up"]);
    assert!(twice.status.success(), "down twice: {}", both(&twice));
    assert!(live.is_empty(), "processes left after down: {live:?}");
    assert!(
        !stdout(&netns).contains(&lab.var("MHALAB_NS_PREFIX")),
        "namespaces left: {}",
        stdout(&netns)
    );
    assert!(
        !stdout(&links).contains(&lab.var("MHALAB_BRIDGE")),
        "bridge left: {}",
        stdout(&links)
    );
    assert!(!sudo_rule_left, "sudo rule left");
}
