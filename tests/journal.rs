//! A journal that cannot be written (a full disk) at any write of a switch:
//! the exit codes stay those of MHA's contract, and recover brings every
//! grant back each time.

mod common;

use common::*;

fn assert_same_grants(before: &State, after: &State, what: &str) {
    for (b, a) in before.hosts.iter().zip(&after.hosts) {
        assert_eq!(b.grants, a.grants, "{what}: grants on {} changed", b.host);
    }
}

/// Whether the fault point `fault` fired (its own log line).
fn fired(log: &str, fault: &str) -> bool {
    log.contains(&format!(
        "fault point {fault}: failing the write with ENOSPC"
    ))
}

#[test]
fn a_full_disk_at_any_journal_write_of_stop_exits_0_or_1_and_recover_restores_the_snapshot() {
    let lab = Lab::lock();
    let before = lab.state();
    // A whole stop writes 16 records (begin; keeper, servers, orig-follows-new;
    // stop-begun; 3 intents, block_started_ms, 5 dones; stop-complete,
    // stop-report); 17 is past the last.
    const WRITES: usize = 16;
    for n in 1..=WRITES + 1 {
        let fault = format!("enospc@journal:{n}");
        let o = lab.online_hook("stop", "db1", "db2", &[], &[("MHA_HELPER_FAULT", &fault)]);
        assert_eq!(
            fired(&stderr(&o), &fault),
            n <= WRITES,
            "{fault}: the fault must fire at each of the {WRITES} writes and not past them: {}",
            both(&o)
        );
        let code = o.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "{fault}: stop must exit 0 (writes blocked) or 1 (nothing left changed): {}",
            both(&o)
        );
        if code == Some(1) {
            assert!(
                !lab.journal().exists(),
                "{fault}: a failed stop left an open journal"
            );
            assert_eq!(
                lab.state(),
                before,
                "{fault}: exit 1 but the cluster changed"
            );
        }
        let r = lab.recover();
        assert_eq!(r.status.code(), Some(0), "{fault}: {}", both(&r));
        assert_eq!(lab.settled_state(), before, "{fault}: not restored");
    }
}

#[test]
fn a_full_disk_at_any_journal_write_of_start_still_completes_the_switch_with_every_grant() {
    let lab = Lab::lock();
    let before = lab.state();
    // The start hook writes 8 records (start-begun; intent, binlog note and
    // done of new-master-writable; undone, done of restore-grants;
    // start-report; hooks-done); the end is the switchover command's.
    // Each round switches the other way (db1 -> db2, then back), so every
    // switch is one with a fault.
    for n in 1..=8 {
        let fault = format!("start/enospc@journal:{n}");
        let to = if n % 2 == 1 { "db2" } else { "db1" };
        let o = lab.switchover(to, &[("MHA_HELPER_FAULT", &fault)]);
        assert_eq!(o.status.code(), Some(0), "{fault}: {}", both(&o));
        // MHA's output of this switch, the hook's log in it.
        let log = lab.switch_log(&o);
        assert!(
            fired(&log, &format!("enospc@journal:{n}")),
            "{fault}: the fault did not fire: {log}"
        );
        assert!(
            !log.contains("Got ERROR"),
            "{fault}: MHA aborted (start must exit 0 or 10): {log}"
        );
        let after = lab.settled_state();
        assert_eq!(lab.value(to, "SELECT @@GLOBAL.read_only"), "0", "{fault}");
        assert_same_grants(&before, &after, &fault);
        if to == "db1" {
            assert_eq!(after, before, "{fault}: back on db1");
        }
    }
}

#[test]
fn a_really_full_tmpfs_refuses_the_stop_before_anything_changes() {
    let lab = Lab::lock();
    let before = lab.state();
    let dir = lab.dir().join("manager/tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", &d])
        .status()
        .unwrap();
    assert!(mount.success(), "cannot mount a tmpfs on {d}");
    // Fill it to the last byte.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", &format!("of={d}/filler"), "bs=4k"])
        .stderr(std::process::Stdio::null())
        .status();
    std::fs::write(lab.helper_cnf(), format!("[default]\njournal_dir = {d}\n")).unwrap();
    let o = lab.online_hook("stop", "db1", "db2", &[], &[]);
    let r = lab.recover();
    let state = lab.state();
    let _ = std::process::Command::new("umount").arg(&d).status();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        both(&o)
    );
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(
        state, before,
        "a stop with a full journal disk changed the cluster"
    );
}
