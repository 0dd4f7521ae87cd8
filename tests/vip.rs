//! The writer VIP follows the master, in the lab: the SSH user may run only
//! `ip` and `arping` through sudo (requires_sudo), a client in the
//! manager's namespace writes through the VIP the whole time.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The lab's writer VIP (`address/prefix`) and its address alone.
fn vip(lab: &Lab) -> String {
    lab.var("MHALAB_VIP")
}

fn vip_addr(lab: &Lab) -> String {
    vip(lab).split('/').next().unwrap().to_string()
}

/// The helper settings of these tests: the lab's VIP through sudo.
fn vip_conf(lab: &Lab) -> String {
    format!(
        "[default]\nwriter_vip = {}\ncluster_interface = eth0\nrequires_sudo = yes\ngrace_period = 1\n",
        vip(lab)
    )
}

fn vip_holders(lab: &Lab, vip: &str) -> Vec<&'static str> {
    let addr = vip.split('/').next().unwrap();
    HOSTS
        .into_iter()
        .filter(|h| {
            lab.exec(h, "ip -o addr show dev eth0")
                .contains(&format!(" {addr}/"))
        })
        .collect()
}

fn mac(lab: &Lab, host: &str) -> String {
    lab.exec(host, "cat /sys/class/net/eth0/address")
        .trim()
        .to_string()
}

/// What the manager's namespace has cached as the VIP's link-layer address.
fn mgr_neighbour(lab: &Lab, addr: &str) -> String {
    let out = lab.exec("mgr", &format!("ip neigh show {addr}"));
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// A client in mgr writing through the VIP, one connection per commit,
/// logging the time of each success and the host that took it.
struct VipWriter {
    child: Child,
    stop: PathBuf,
    out: PathBuf,
}

impl VipWriter {
    fn start(lab: &Lab) -> VipWriter {
        let cnf = lab.app_client_cnf("app");
        let stop = lab.dir().join("manager/vip-writer.stop");
        let out = lab.dir().join("manager/vip-writer.out");
        let _ = std::fs::remove_file(&stop);
        let _ = std::fs::remove_file(&out);
        let script = format!(
            "while [ ! -e {stop} ]; do \
               h=$(mysql --defaults-extra-file={cnf} -h {vip} --connect-timeout=1 -N appdb \
                   -e \"INSERT INTO writes (ts, src) VALUES (NOW(6), @@hostname); SELECT @@hostname\" 2>/dev/null) \
               && echo \"$(date +%s%N) $h\" >> {out}; \
             done",
            stop = stop.display(),
            out = out.display(),
            vip = vip_addr(lab),
        );
        let child = Command::new(repo().join("scripts/lab"))
            .args(["exec", "mgr", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = VipWriter { child, stop, out };
        assert!(
            wait_for(Duration::from_secs(10), || w.successes().len() > 5),
            "writer never wrote through the VIP"
        );
        w
    }

    fn successes(&self) -> Vec<(u64, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, h) = l.split_once(' ')?;
                Some((t.parse().ok()?, h.to_string()))
            })
            .collect()
    }

    /// Stop; return the longest gap (ms) and the hosts written to, in order.
    fn finish(mut self) -> (u64, Vec<String>) {
        std::fs::write(&self.stop, "").unwrap();
        let _ = self.child.wait();
        let s = self.successes();
        let gap = s
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) / 1_000_000)
            .max()
            .unwrap_or(0);
        let mut hosts: Vec<String> = Vec::new();
        for (_, h) in s {
            if hosts.last() != Some(&h) {
                hosts.push(h);
            }
        }
        (gap, hosts)
    }
}

fn setup_vip(lab: &Lab) {
    lab.set_helper_conf(&vip_conf(lab));
    lab.exec("db1", &format!("ip addr add {} dev eth0", vip(lab)));
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
}

#[test]
fn writes_through_the_vip_continue_across_an_online_switchover_and_arp_follows() {
    let lab = Lab::lock();
    setup_vip(&lab);
    let w = VipWriter::start(&lab);
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    std::thread::sleep(Duration::from_secs(1));
    let (gap, hosts) = w.finish();
    assert_eq!(
        hosts,
        vec!["db1", "db2"],
        "writes went db1 then db2 through the VIP"
    );
    assert!(gap < 3000, "write outage through the VIP was {gap} ms");
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db2"]);
    let db2_mac = mac(&lab, "db2");
    assert!(
        wait_for(Duration::from_secs(5), || mgr_neighbour(
            &lab,
            &vip_addr(&lab)
        ) == db2_mac),
        "the manager's ARP cache still says {} for the VIP, db2 is {db2_mac}",
        mgr_neighbour(&lab, &vip_addr(&lab))
    );
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(0), "{}", both(&c));
}

#[test]
fn writes_through_the_vip_continue_across_a_dead_master_failover() {
    let lab = Lab::lock();
    setup_vip(&lab);
    let w = VipWriter::start(&lab);
    common::lab(&["kill-mysql", "db1"]);
    let o = lab.failover("db1", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    std::thread::sleep(Duration::from_secs(1));
    let (gap, hosts) = w.finish();
    assert_eq!(hosts.first().map(String::as_str), Some("db1"));
    assert_eq!(hosts.last().map(String::as_str), Some("db2"), "{hosts:?}");
    assert!(gap < 10_000, "write outage through the VIP was {gap} ms");
    assert_eq!(
        vip_holders(&lab, &vip(&lab)),
        vec!["db2"],
        "stopssh removes it from db1, start adds it on db2"
    );
    let db2_mac = mac(&lab, "db2");
    assert!(wait_for(Duration::from_secs(5), || mgr_neighbour(
        &lab,
        &vip_addr(&lab)
    ) == db2_mac));
    let log = std::fs::read_to_string(lab.var("MHALAB_MANAGER_LOG")).unwrap();
    assert!(log.contains("writer VIP removed"), "{log}");
}

#[test]
fn vip_removal_and_addition_are_idempotent_and_status_checks_it() {
    let lab = Lab::lock();
    setup_vip(&lab);
    let status = lab.failover_hook(&[
        "--command=status",
        "--orig_master_host=db1",
        &format!("--orig_master_ip={}", lab.var("MHALAB_IP_db1")),
    ]);
    assert_eq!(status.status.code(), Some(0), "{}", both(&status));
    assert!(
        stderr(&status).contains(&format!("writer VIP {} on db1", vip(&lab))),
        "{}",
        both(&status)
    );

    let stop = [
        "--command=stopssh",
        "--orig_master_host=db1",
        "--ssh_user=mha",
    ];
    let first = lab.failover_hook(&stop);
    assert_eq!(first.status.code(), Some(0), "{}", both(&first));
    assert!(
        stderr(&first).contains("writer VIP removed"),
        "{}",
        both(&first)
    );
    let second = lab.failover_hook(&stop);
    assert_eq!(second.status.code(), Some(0), "{}", both(&second));
    assert!(
        stderr(&second).contains("writer VIP was not there"),
        "{}",
        both(&second)
    );
    assert!(vip_holders(&lab, &vip(&lab)).is_empty());

    // status fails when the master does not hold the VIP
    let status = lab.failover_hook(&["--command=status", "--orig_master_host=db1"]);
    assert_ne!(status.status.code(), Some(0), "{}", both(&status));
    assert!(
        stderr(&status).contains(&format!(
            "writer VIP {} is not on the master db1",
            vip(&lab)
        )),
        "{}",
        both(&status)
    );

    let start = [
        "--command=start",
        "--orig_master_host=db1",
        "--new_master_host=db1",
        "--new_master_user=mha",
    ];
    for _ in 0..2 {
        let o = lab.failover_hook(&start);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
    }
    // a VIP on two hosts, then on none, fails check
    lab.exec("db3", &format!("ip addr add {} dev eth0", vip(&lab)));
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    assert!(
        stdout(&c).contains("is on 2 hosts at once (db1, db3)"),
        "{}",
        both(&c)
    );
    lab.exec("db1", &format!("ip addr del {} dev eth0", vip(&lab)));
    lab.exec("db3", &format!("ip addr del {} dev eth0", vip(&lab)));
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    assert!(stdout(&c).contains("is on no host"), "{}", both(&c));
}

#[test]
fn a_rollback_puts_the_vip_back_on_the_old_master() {
    let lab = Lab::lock();
    setup_vip(&lab);
    let before = lab.state();
    let o = lab.switchover(
        "db2",
        &[("MHA_HELPER_FAULT", "fail@after:vip-leave-old-master")],
    );
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
    assert_eq!(lab.settled_state(), before);
    // and after a crash at the same point, recover does it
    let o = lab.online_hook(
        "stop",
        "db1",
        "db2",
        &[],
        &[("MHA_HELPER_FAULT", "kill@after:vip-leave-old-master")],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(vip_holders(&lab, &vip(&lab)).is_empty());
    let r = lab.recover();
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
    assert_eq!(lab.settled_state(), before);
}

/// A sudoers file for one test, removed on drop, where the lab's hosts read
/// it: the flavour's sid root's /etc/sudoers.d when its hosts run from one,
/// else this machine's. Only there: a rule in this machine's sudoers.d
/// (a `Defaults:mha secure_path`, say) would change sudo for the hosts of
/// every other lab that runs from no root, side by side.
struct TestSudo(Vec<PathBuf>);

impl TestSudo {
    fn grant(lab: &Lab, name: &str, rules: &str) -> TestSudo {
        let root = lab.var("MHALAB_ROOT");
        let dirs = vec![if root.is_empty() {
            PathBuf::from("/etc/sudoers.d")
        } else {
            PathBuf::from(root).join("etc/sudoers.d")
        }];
        // One name per lab, each removing its own file when done.
        let name = format!("{name}-lab{}", lab.var("MHALAB_INSTANCE"));
        let files: Vec<PathBuf> = dirs
            .into_iter()
            .map(|d| {
                let p = d.join(&name);
                std::fs::write(&p, rules).unwrap();
                let _ = Command::new("chmod")
                    .args(["0440", p.to_str().unwrap()])
                    .status();
                p
            })
            .collect();
        TestSudo(files)
    }

    /// perl, for the IPv6 announcement only.
    fn perl(lab: &Lab) -> TestSudo {
        TestSudo::grant(
            lab,
            "mhalab-test-perl",
            "mha ALL=(root) NOPASSWD: /usr/bin/perl\n",
        )
    }
}

impl Drop for TestSudo {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Thomas Habets' arping where sudo finds it (first on its secure_path)
/// and the SSH user's own PATH does not: the user's `arping` is iputils'.
/// The announcement must be sent by the program sudo runs, with its flags.
#[test]
fn habets_arping_run_through_sudo_announces_the_vip_on_the_new_master() {
    let lab = Lab::lock();
    let sbin = lab.var("MHALAB_HABETS_SBIN");
    let _sudo = TestSudo::grant(
        &lab,
        "mhalab-test-habets",
        &format!(
            "Defaults:mha secure_path=\"{sbin}:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
             mha ALL=(root) NOPASSWD: {sbin}/arping\n"
        ),
    );
    let as_mha = |cmd: &str| lab.exec("db2", &format!("runuser -u mha -- sh -c '{cmd}' 2>&1"));
    assert!(
        as_mha("sudo -n arping --help").contains("Thomas Habets"),
        "sudo does not run Habets' arping: {}",
        as_mha("sudo -n arping --help")
    );
    assert!(
        as_mha("PATH=/usr/local/bin:/usr/bin:/bin arping -V").contains("iputils"),
        "the SSH user's own arping is not iputils'"
    );
    setup_vip(&lab);
    // the manager has db1's address cached for the VIP
    lab.exec(
        "mgr",
        &format!("ping -c 1 -W 1 {} >/dev/null; true", vip_addr(&lab)),
    );
    assert_eq!(mgr_neighbour(&lab, &vip_addr(&lab)), mac(&lab, "db1"));
    let o = lab.switchover("db2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db2"]);
    let db2_mac = mac(&lab, "db2");
    assert!(
        wait_for(Duration::from_secs(5), || mgr_neighbour(
            &lab,
            &vip_addr(&lab)
        ) == db2_mac),
        "no announcement reached the manager: its ARP cache still says {} for the VIP, db2 is \
         {db2_mac}",
        mgr_neighbour(&lab, &vip_addr(&lab))
    );
}

#[test]
fn ipv6_vip_moves_and_its_unsolicited_na_updates_the_neighbour_cache() {
    let lab = Lab::lock();
    let _perl = TestSudo::perl(&lab);
    lab.set_helper_conf(&format!(
        "[default]\nwriter_vip = {}\ncluster_interface = eth0\nrequires_sudo = yes\n",
        lab.var("MHALAB_VIP6")
    ));
    lab.exec(
        "mgr",
        &format!(
            "ip -6 addr add {}::10/64 dev eth0 nodad",
            lab.var("MHALAB_NET6")
        ),
    );
    lab.exec(
        "db1",
        &format!("ip -6 addr add {} dev eth0 nodad", lab.var("MHALAB_VIP6")),
    );
    // the manager talks to the VIP, so it has a neighbour entry for it
    lab.exec(
        "mgr",
        &format!("ping -6 -c 1 -W 2 {}::100", lab.var("MHALAB_NET6")),
    );
    assert_eq!(
        mgr_neighbour(&lab, &format!("{}::100", lab.var("MHALAB_NET6"))),
        mac(&lab, "db1")
    );
    let stop = lab.failover_hook(&[
        "--command=stopssh",
        "--orig_master_host=db1",
        "--ssh_user=mha",
    ]);
    assert!(
        stderr(&stop).contains("writer VIP removed"),
        "{}",
        both(&stop)
    );
    let start = lab.failover_hook(&[
        "--command=start",
        "--orig_master_host=db1",
        "--new_master_host=db2",
        "--new_master_user=mha",
    ]);
    assert_eq!(start.status.code(), Some(0), "{}", both(&start));
    assert_eq!(vip_holders(&lab, &lab.var("MHALAB_VIP6")), vec!["db2"]);
    let db2_mac = mac(&lab, "db2");
    assert!(
        wait_for(Duration::from_secs(5), || mgr_neighbour(
            &lab,
            &format!("{}::100", lab.var("MHALAB_NET6"))
        ) == db2_mac),
        "neighbour cache still {}",
        mgr_neighbour(&lab, &format!("{}::100", lab.var("MHALAB_NET6")))
    );
    lab.exec(
        "mgr",
        &format!("ip -6 addr del {}::10/64 dev eth0", lab.var("MHALAB_NET6")),
    );
}

#[test]
fn an_ssh_user_who_may_not_move_the_vip_is_refused_before_any_write_is_blocked() {
    let lab = Lab::lock();
    setup_vip(&lab);
    // Without sudo, the SSH user mha (not root, no CAP_NET_ADMIN) cannot
    // run `ip addr add|del`.
    lab.set_helper_conf(&vip_conf(&lab).replace("requires_sudo = yes", "requires_sudo = no"));
    let before = lab.state();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("may not run ip addr add/del"),
        "{}",
        both(&o)
    );
    assert!(!stderr(&o).contains("block-accounts:"), "{}", both(&o));
    assert_eq!(lab.state(), before, "a refused stop changed the cluster");
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
    // check says the same, for every host that would have to move it
    let c = lab.check(&[]);
    assert_eq!(c.status.code(), Some(1), "{}", both(&c));
    assert!(
        stdout(&c).contains("may not run ip addr add/del"),
        "{}",
        both(&c)
    );
}

/// `step@host` of each planned step of `phase` in a dry run's JSON.
fn plan_steps(v: &serde_json::Value, phase: &str) -> Vec<String> {
    v[phase]["plan"]
        .as_array()
        .unwrap_or_else(|| panic!("no {phase} plan: {v:#}"))
        .iter()
        .map(|s| {
            format!(
                "{}@{}",
                s["step"].as_str().unwrap(),
                s["host"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_switchover_dry_run_lists_the_plan_and_changes_no_grant_read_only_or_vip() {
    let lab = Lab::lock();
    setup_vip(&lab);
    let before = lab.state();
    let o = lab.command(
        "switchover",
        &["--new-master", "db2", "--dry-run", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(
        (v["orig_master"].as_str(), v["new_master"].as_str()),
        (Some("db1"), Some("db2")),
        "{v:#}"
    );
    assert_eq!(v["mha_check_only"]["passed"], true);
    let steps = |phase: &str| plan_steps(&v, phase);
    let stop = steps("stop");
    for want in ["block-accounts@db1", "old-master-read-only@db1"] {
        assert!(stop.contains(&want.to_string()), "{want} not in {stop:?}");
    }
    assert!(
        steps("start").contains(&"new-master-writable@db2".to_string()),
        "{v:#}"
    );
    let planned = v["stop"]["plan"].to_string() + &v["start"]["plan"].to_string();
    assert!(
        planned.contains("REVOKE") || planned.contains("ACCOUNT LOCK"),
        "no block in {planned}"
    );
    assert!(
        planned.contains(&vip_addr(&lab)),
        "the VIP's move is not planned: {planned}"
    );
    assert_eq!(lab.state(), before, "a dry run changed the cluster");
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
}

#[test]
fn a_failover_dry_run_names_the_new_master_and_plans_the_fence_and_the_opening_changing_nothing() {
    let lab = Lab::lock();
    setup_vip(&lab);
    common::lab(&["kill-mysql", "db1"]);
    // The replicas as they stay once they noticed: IO threads retrying.
    let mut before: Vec<HostState> = Vec::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            before = ["db2", "db3"].map(|h| lab.host_state(h)).into();
            before
                .iter()
                .all(|h| matches!(h.replica_of, Some((_, false))))
        }),
        "the replicas never noticed db1 was gone: {before:?}"
    );
    let dry = |extra: &[&str]| {
        let mut args = vec!["--dead-master", "db1", "--dry-run", "--format", "json"];
        args.extend_from_slice(extra);
        let o = lab.command("failover", &args);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
        v
    };
    // Chosen as MHA would: db2 and db3 read as far, and the lab's db2 is
    // its candidate_master.
    let v = dry(&[]);
    assert_eq!(v["new_master"], "db2", "{v:#}");
    assert_eq!(
        v["new_master_chosen_by"], "a candidate_master that has the latest events",
        "{v:#}"
    );
    // db1's mysqld is down: its fence is the VIP only, and says so.
    assert_eq!(
        plan_steps(&v, "stop"),
        ["vip-leave-dead-master@db1"],
        "{v:#}"
    );
    assert!(
        plan_steps(&v, "start").contains(&"new-master-writable@db2".to_string()),
        "{v:#}"
    );
    assert!(
        v["start"]["plan"].to_string().contains(&vip_addr(&lab)),
        "the VIP's arrival is not planned: {v:#}"
    );
    // Named: that one.
    let v = dry(&["--new-master", "db3"]);
    assert_eq!(
        (v["new_master"].as_str(), v["new_master_chosen_by"].as_str()),
        (Some("db3"), Some("named by --new-master")),
        "{v:#}"
    );
    assert!(plan_steps(&v, "start").contains(&"new-master-writable@db3".to_string()));
    let after: Vec<_> = ["db2", "db3"].map(|h| lab.host_state(h)).into();
    assert_eq!(after, before, "a dry run changed a replica");
    assert_eq!(vip_holders(&lab, &vip(&lab)), vec!["db1"]);
    assert!(
        std::fs::read_dir(lab.journal_dir()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("journal")),
        "a dry run wrote a journal"
    );
}
