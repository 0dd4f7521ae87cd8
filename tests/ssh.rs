//! The SSH transport against the lab's real sshd: large streams in both
//! directions at once, exit status and signals, timeouts, parallel opening.
//! The test thread joins the manager's network namespace (setns).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mha_helper::ssh::{self, Connection, Exec, SshOptions, Target};

fn target(lab: &Lab, host: &str) -> Target {
    let opts = format!(
        "-i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        lab.var("MHALAB_SSH_KEY"),
        lab.var("MHALAB_KNOWN_HOSTS")
    );
    Target {
        name: host.to_string(),
        ssh_host: host.to_string(),
        ssh_ip: lab.var(&format!("MHALAB_IP_{host}")),
        port: 22,
        user: "mha".into(),
        options: SshOptions::parse(&opts),
        connect_timeout: Duration::from_secs(5),
        own_known_hosts: None,
        keeper: None,
    }
}

/// Run `f` on a thread that lives in the manager's network namespace.
fn in_mgr<T: Send + 'static>(lab: &Lab, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = format!("/run/netns/{}", lab.var("MHALAB_NS_mgr"));
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        // SAFETY: setns on a valid namespace fd; it only changes this thread.
        let rc = unsafe {
            libc::setns(
                std::os::unix::io::AsRawFd::as_raw_fd(&file),
                libc::CLONE_NEWNET,
            )
        };
        assert_eq!(rc, 0, "setns into {ns}");
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn large_stdin_stdout_and_stderr_flow_together_without_deadlock() {
    let lab = Lab::lock();
    let t = target(&lab, "db1");
    let (out, stdin_len) = in_mgr(&lab, move || {
        let mut c = Connection::open(&t).unwrap();
        // 9 MB in, echoed back while 3 MB of stderr are written first.
        let input: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
        let out = c
            .exec(
                "head -c 3000000 /dev/zero >&2; cat",
                &input,
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(out.stdout, input, "stdin came back unchanged");
        (out, input.len())
    });
    assert_eq!(out.stdout.len(), stdin_len);
    assert_eq!(out.stderr.len(), 3_000_000);
    assert!(out.success());
}

#[test]
fn exit_status_and_death_by_signal_are_reported() {
    let lab = Lab::lock();
    let t = target(&lab, "db2");
    in_mgr(&lab, move || {
        let mut c = Connection::open(&t).unwrap();
        let o = c
            .exec("echo hi; exit 7", b"", Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            (o.status, o.signal.clone(), o.stdout.clone()),
            (7, None, b"hi\n".to_vec())
        );
        let o = c.exec("kill -9 $$", b"", Duration::from_secs(10)).unwrap();
        assert_eq!(o.signal.as_deref(), Some("KILL"), "{o:?}");
        assert!(
            !o.success(),
            "a killed command is not a success even with status {}",
            o.status
        );
        // the session is still usable after both
        let o = c.exec("true", b"", Duration::from_secs(10)).unwrap();
        assert!(o.success());
        assert_eq!(c.stats.execs, 3);
        assert_eq!(c.stats.connections, 1);
    });
}

#[test]
fn a_command_that_outlives_its_timeout_comes_back_marked_with_the_real_elapsed_time() {
    let lab = Lab::lock();
    let t = target(&lab, "db3");
    in_mgr(&lab, move || {
        let mut c = Connection::open(&t).unwrap();
        let started = Instant::now();
        let o = c
            .exec("echo begun; sleep 5", b"", Duration::from_millis(500))
            .unwrap();
        let waited = o.timed_out.expect("marked timed out");
        assert!(waited >= Duration::from_millis(500), "{waited:?}");
        assert!(!o.success());
        // what it printed before the deadline is kept
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "begun");
        let e = o.check_timeout("db3").unwrap_err().to_string();
        assert!(e.contains("timed out after 0.5 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn open_all_gives_one_verified_session_per_host() {
    let lab = Lab::lock();
    let targets: Vec<Target> = HOSTS.iter().map(|h| target(&lab, h)).collect();
    let names = in_mgr(&lab, move || {
        ssh::open_all(&targets)
            .into_iter()
            .map(|c| {
                let mut c = c.unwrap();
                assert_eq!(c.stats.connections, 1);
                let o = c.exec("hostname", b"", Duration::from_secs(10)).unwrap();
                String::from_utf8(o.stdout).unwrap().trim().to_string()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(names, HOSTS, "each session reached its own host, in order");
}

#[test]
fn a_command_on_a_cut_link_times_out_on_time() {
    let lab = Lab::lock();
    let t = target(&lab, "db1");
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = format!("/run/netns/{}", lab.var("MHALAB_NS_mgr"));
    let h = std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        // SAFETY: setns on a valid namespace fd; it only changes this thread.
        let rc = unsafe {
            libc::setns(
                std::os::unix::io::AsRawFd::as_raw_fd(&file),
                libc::CLONE_NEWNET,
            )
        };
        assert_eq!(rc, 0);
        let mut c = Connection::open(&t).unwrap();
        c.exec("true", b"", Duration::from_secs(5)).unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let o = c.exec("echo hi", b"", Duration::from_secs(1));
        (started.elapsed(), o.map(|o| o.timed_out))
    });
    rx.recv().unwrap();
    common::lab(&["link-down", "db1"]);
    let (took, o) = h.join().unwrap();
    common::lab(&["link-up", "db1"]);
    eprintln!("took {took:?}: {o:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {o:?}");
}
