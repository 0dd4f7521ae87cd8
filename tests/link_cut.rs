//! db1's link cut for a few seconds at several moments of an online switch
//! through the real MHA: afterwards, with recover, the cluster is either
//! switched or not, never both, with every grant as before. The watchdog
//! checks that no two hosts are ever writable at once meanwhile.

mod common;

use std::time::Duration;

use common::*;

/// Who the master is, if the cluster is cleanly one way: every other host
/// read-only and replicating (both threads) from it.
fn clean_master(lab: &Lab, state: &State) -> Option<String> {
    let masters: Vec<&HostState> = state.hosts.iter().filter(|h| !h.read_only).collect();
    let [m] = masters.as_slice() else {
        return None;
    };
    let ip = lab.var(&format!("MHALAB_IP_{}", m.host));
    state
        .hosts
        .iter()
        .filter(|h| h.host != m.host)
        .all(|h| h.replica_of == Some((ip.clone(), true)))
        .then(|| m.host.clone())
}

#[test]
fn a_link_cut_at_any_moment_of_a_switch_ends_switched_or_not_never_both_with_every_grant() {
    let lab = Lab::lock();
    let before = lab.state();
    let mut outcomes = Vec::new();
    for point in [
        "stop/wait@after:new-master-read-only",
        "stop/wait@after:block-accounts",
        "stop/wait@after:kill-sessions",
        "start/wait@after:start-begun",
        "start/wait@after:new-master-writable",
    ] {
        common::lab(&["reset"]);
        lab.set_helper_conf("[default]\nstep_timeout = 3\nundo_timeout = 5\ngrace_period = 1\n");
        let dir = lab.fault_dir("cut");
        let d = dir.display().to_string();
        let sw = lab.switchover_spawn(
            "db2",
            &[("MHA_HELPER_FAULT", point), ("MHA_HELPER_FAULT_DIR", &d)],
        );
        let at = point.split_once("wait@").unwrap().1;
        let gate = wait_point(&dir, at, Duration::from_secs(60));
        common::lab(&["link-down", "db1"]);
        std::fs::remove_file(gate).unwrap();
        std::thread::sleep(Duration::from_secs(5));
        common::lab(&["link-up", "db1"]);
        let o = finish(sw, Duration::from_secs(120));
        // Whatever the switch did, recover settles it (it may take a second
        // run once every host answers again).
        let mut settled = false;
        for _ in 0..3 {
            let r = lab.recover();
            if r.status.code() == Some(0) {
                settled = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        assert!(settled, "{point}: recover never settled it\n{}", both(&o));
        let after = lab.settled_state();
        let master = clean_master(&lab, &after);
        assert!(
            master.as_deref() == Some("db1") || master.as_deref() == Some("db2"),
            "{point}: neither switched nor not: {after:#?}\nswitchover: {}",
            both(&o)
        );
        for (b, a) in before.hosts.iter().zip(&after.hosts) {
            assert_eq!(b.grants, a.grants, "{point}: grants on {} changed", b.host);
        }
        outcomes.push(format!("{point}: {}", master.unwrap()));
    }
    eprintln!("link cut outcomes: {outcomes:?}");
}
