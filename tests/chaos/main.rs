//! The chaos soak (`scripts/chaos`): online switchovers through
//! `mha-helper switchover` on the lab, each round with one fault from a
//! seeded schedule at a random moment of the switch — kill -9 of the stop
//! or start hook, of the session keeper or of MHA, the operator's Ctrl-C,
//! a cut of the old or the new master's link (short, or past every
//! timeout), a full disk under the state directory — while an application
//! in the manager's namespace writes to every host in turn (a pass) and
//! keeps a ledger of what each host acknowledged.
//!
//! After each round (with `recover` when a journal is left open) it
//! demands: no acknowledged write missing from any host, never the old
//! master acknowledging a write sent after another host acknowledged one
//! (nor two new hosts acknowledging), never two hosts read writable at
//! once (the lab's watchdog), every account's grants exactly as before, one writable
//! host with every other replicating from it (both threads running), and
//! the next switch not refused. One line per round; the seed is printed
//! first, and the same seed replays the same schedule.
//!
//! Usage: `scripts/chaos [--rounds N] [--seed S] [--faults a,b,...]`
//! (faults: none kill-stop kill-start kill-keeper kill-mha ctrl-c
//! cut-old cut-old-long cut-new cut-new-long disk-full). Exit 0 only when
//! every round passed.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The faults a round can carry.
const FAULTS: &[&str] = &[
    "none",
    "kill-stop",
    "kill-start",
    "kill-keeper",
    "kill-mha",
    "ctrl-c",
    "cut-old",
    "cut-old-long",
    "cut-new",
    "cut-new-long",
    "disk-full",
];

/// The helper settings of the soak: short timeouts, so that a cut "past
/// every timeout" costs seconds, not minutes.
const HELPER: &str = "[default]\ngrace_period = 1\nstep_timeout = 6\nundo_timeout = 6\n";

/// How long a long cut lasts: past step_timeout, undo_timeout and MHA's
/// ssh_connection_timeout.
const LONG_CUT: Duration = Duration::from_secs(14);

/// splitmix64: small, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

struct Args {
    rounds: u32,
    seed: u64,
    faults: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        rounds: 10,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        faults: FAULTS.iter().map(|f| f.to_string()).collect(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(w) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{w} needs a value")))
        };
        match w.as_str() {
            "--rounds" => a.rounds = val().parse().unwrap_or_else(|_| usage("bad --rounds")),
            "--seed" => a.seed = val().parse().unwrap_or_else(|_| usage("bad --seed")),
            "--faults" => {
                a.faults = val().split(',').map(String::from).collect();
                if let Some(f) = a.faults.iter().find(|f| !FAULTS.contains(&f.as_str())) {
                    usage(&format!("unknown fault {f}"));
                }
            }
            // what the test harness may pass
            "--nocapture" | "--test-threads=1" | "--quiet" => {}
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "chaos: {why}\nusage: scripts/chaos [--rounds N] [--seed S] [--faults {}]",
        FAULTS.join(",")
    );
    std::process::exit(2)
}

/// The state directory on a tmpfs of its own (64 MB: room for the history
/// of a long soak, every switch's journal and MHA output), so that
/// `disk-full` can fill it; unmounted on drop.
struct StateFs(PathBuf);

impl StateFs {
    fn mount(dir: &Path) -> StateFs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        StateFs(dir.to_path_buf())
    }

    fn filler(&self) -> PathBuf {
        self.0.join("chaos-filler")
    }

    /// Fill it to the last byte.
    fn fill(&self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 1G /dev/zero > {} 2>/dev/null",
                self.filler().display()
            ))
            .status();
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for StateFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One write of the application: its pass, the host it went to, whether
/// the host acknowledged it, and when it was sent and answered (ns since
/// the epoch, the manager's clock).
struct Write {
    pass: u64,
    host: String,
    acked: bool,
    sent: u128,
    answered: u128,
}

/// The application: a shell loop in the manager's namespace writing one
/// row per host per pass, as the application account, over TCP, a new
/// connection each time; each line of its output is
/// `PASS HOST ok|no SENT ANSWERED`.
struct Writer {
    child: Child,
    stop: PathBuf,
    out: PathBuf,
}

impl Writer {
    fn start(lab: &Lab, round: u32) -> Writer {
        let cnf = lab.app_client_cnf("app");
        let dir = lab.dir().join("manager");
        let stop = dir.join("chaos-writer.stop");
        let out = dir.join("chaos-writer.out");
        let _ = std::fs::remove_file(&stop);
        let _ = std::fs::remove_file(&out);
        let hosts: Vec<String> = HOSTS
            .iter()
            .map(|h| format!("{h}:{}", lab.var(&format!("MHALAB_IP_{h}"))))
            .collect();
        let script = format!(
            "p=0; while [ ! -e {stop} ]; do p=$((p+1)); for hi in {hosts}; do h=${{hi%%:*}}; \
             ip=${{hi#*:}}; s=$(date +%s%N); if mysql --defaults-extra-file={cnf} -h $ip \
             --connect-timeout=1 appdb -e \"INSERT INTO ledger (tag) VALUES ('r{round}p${{p}}$h')\" \
             >/dev/null 2>&1; then r=ok; else r=no; fi; echo \"$p $h $r $s $(date +%s%N)\"; \
             done; done > {out}",
            stop = stop.display(),
            out = out.display(),
            hosts = hosts.join(" "),
        );
        let child = Command::new(lab_script())
            .args(["exec", "mgr", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Writer { child, stop, out }
    }

    /// Stop it; the ledger, in the order the writes were sent.
    fn finish(mut self) -> Vec<Write> {
        std::fs::write(&self.stop, "").unwrap();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some(Write {
                    pass: w.next()?.parse().ok()?,
                    host: w.next()?.to_string(),
                    acked: w.next()? == "ok",
                    sent: w.next()?.parse().ok()?,
                    answered: w.next()?.parse().ok()?,
                })
            })
            .collect()
    }
}

/// Pids whose command line contains every one of `words`.
fn pids_with(words: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                words.iter().all(|w| c.contains(w))
            })
        })
        .collect()
}

fn kill(pids: &[u32], sig: i32) {
    for p in pids {
        // SAFETY: processes of the switch this soak started.
        unsafe { libc::kill(*p as i32, sig) };
    }
}

/// The hook processes of `phase` of this lab's switch (MHA runs the hook
/// with this lab's `--conf`; other labs on the machine run hooks too, and
/// are never touched) themselves: mha-helper, not the `sh -c` MHA runs
/// them through (killing that shell would orphan the hook, which then
/// cannot prove it works under the switch's lock: not the fault meant).
fn hook_pids(lab: &Lab, phase: &str) -> Vec<u32> {
    let conf = format!("--conf={}", lab.app_cnf());
    pids_with(&[
        "master-ip-online-change",
        &format!("--command={phase}"),
        &conf,
    ])
    .into_iter()
    .filter(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(argv0).ends_with("mha-helper")
        })
    })
    .collect()
}

/// Wait until `find` finds some process (up to `limit`).
fn appears_by(find: &dyn Fn() -> Vec<u32>, limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let p = find();
        if !p.is_empty() || Instant::now() >= until {
            return p;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until some process matches `words` (up to `limit`).
fn appears(words: &[&str], limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let p = pids_with(words);
        if !p.is_empty() || Instant::now() >= until {
            return p;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Inject `fault` into the switch `pgid` (the switchover's process group),
/// orig -> new, at a moment drawn from `rng`; returns what was done.
fn inject(
    lab: &Lab,
    fs: &StateFs,
    fault: &str,
    rng: &mut Rng,
    pgid: u32,
    hosts: (&str, &str),
) -> String {
    let (orig, new) = hosts;
    let hook = |phase: &str, max: u64, rng: &mut Rng| {
        let p = appears_by(&|| hook_pids(lab, phase), Duration::from_secs(30));
        let d = rng.ms(max);
        std::thread::sleep(d);
        kill(&p, libc::SIGKILL);
        format!("{fault}@+{}ms", d.as_millis())
    };
    let cut = |host: &str, long: bool, rng: &mut Rng| {
        let d = rng.ms(3000);
        std::thread::sleep(d);
        lab_raw(&["link-down", host]);
        let hold = if long {
            LONG_CUT
        } else {
            Duration::from_millis(500) + rng.ms(1500)
        };
        std::thread::sleep(hold);
        lab_raw(&["link-up", host]);
        format!("{fault}@+{}ms/{}ms", d.as_millis(), hold.as_millis())
    };
    match fault {
        "kill-stop" => hook("stop", 400, rng),
        "kill-start" => hook("start", 300, rng),
        "kill-keeper" => {
            let socket = lab.journal_dir().display().to_string();
            let p = appears(&["mha-helper keeper", &socket], Duration::from_secs(30));
            let d = rng.ms(1500);
            std::thread::sleep(d);
            kill(&p, libc::SIGKILL);
            format!("{fault}@+{}ms", d.as_millis())
        }
        "kill-mha" => {
            let d = rng.ms(4000);
            std::thread::sleep(d);
            kill(&lab.mha_switch_pids(), libc::SIGKILL);
            format!("{fault}@+{}ms", d.as_millis())
        }
        "ctrl-c" => {
            let d = rng.ms(4000);
            std::thread::sleep(d);
            // SAFETY: the switchover's own process group.
            unsafe { libc::kill(-(pgid as i32), libc::SIGINT) };
            format!("{fault}@+{}ms", d.as_millis())
        }
        "cut-old" | "cut-old-long" => cut(orig, fault.ends_with("long"), rng),
        "cut-new" | "cut-new-long" => cut(new, fault.ends_with("long"), rng),
        "disk-full" => {
            let d = rng.ms(3000);
            std::thread::sleep(d);
            fs.fill();
            format!("{fault}@+{}ms", d.as_millis())
        }
        _ => "none".into(),
    }
}

/// The one writable host, if exactly one reads writable.
fn writable(lab: &Lab) -> Vec<String> {
    HOSTS
        .iter()
        .filter(|h| lab.value(h, "SELECT @@GLOBAL.read_only") == "0")
        .map(|h| h.to_string())
        .collect()
}

/// Run recover until it settles the switch (a refusal while the switch's
/// processes still end is retried), up to a minute. The exit codes seen.
fn recover_until_settled(lab: &Lab) -> Vec<i32> {
    let mut codes = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while exists(&lab.journal().display().to_string()) && Instant::now() < until {
        let r = lab.recover();
        codes.push(r.status.code().unwrap_or(-1));
        if r.status.code() != Some(0) {
            eprintln!("  recover: {}", both(&r).lines().last().unwrap_or_default());
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    codes
}

/// What one round found.
#[derive(Default)]
struct Verdict {
    master: String,
    acked: usize,
    lost: Vec<String>,
    split: Vec<String>,
    unsettled: Vec<String>,
    grants: Vec<String>,
    refused: bool,
    two_writable: usize,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.split.is_empty()
            && self.unsettled.is_empty()
            && self.grants.is_empty()
            && !self.refused
            && self.two_writable == 0
    }
}

/// The writes that prove two hosts accepted writes in the same stretch of
/// time: the old master acknowledging a write sent after another host had
/// answered one (it took writes after the new master did), or two hosts
/// other than the old master both acknowledging (two new masters). A pass
/// that holds an acknowledgement from the old master and then one from the
/// new is a switch between them, not a split: a hung connection can stretch
/// one pass across the whole switch.
fn splits(old: &str, ledger: &[Write]) -> Vec<String> {
    let acked: Vec<&Write> = ledger.iter().filter(|w| w.acked).collect();
    let mut found = Vec::new();
    let first_elsewhere = acked
        .iter()
        .filter(|w| w.host != old)
        .min_by_key(|w| w.answered);
    if let Some(y) = first_elsewhere {
        found.extend(
            acked
                .iter()
                .filter(|w| w.host == old && w.sent > y.answered)
                .map(|w| {
                    format!(
                        "{old} acknowledged pass {} after {} had acknowledged pass {}",
                        w.pass, y.host, y.pass
                    )
                }),
        );
    }
    let mut new_hosts: Vec<&str> = acked
        .iter()
        .filter(|w| w.host != old)
        .map(|w| w.host.as_str())
        .collect();
    new_hosts.sort();
    new_hosts.dedup();
    if new_hosts.len() > 1 {
        found.push(format!("hosts besides {old} took writes: {new_hosts:?}"));
    }
    found
}

/// Every check of a settled round.
fn judge(
    lab: &Lab,
    round: u32,
    old: &str,
    ledger: &[Write],
    grants_before: &[Vec<(String, Vec<String>)>],
) -> Verdict {
    let mut v = Verdict::default();
    if exists(&lab.journal().display().to_string()) {
        v.unsettled
            .push("a journal is still open: recover could not settle the switch".into());
    }
    let w = writable(lab);
    match w.as_slice() {
        [m] => v.master = m.clone(),
        _ => v.unsettled.push(format!("writable hosts: {w:?}")),
    }
    if !v.master.is_empty() {
        let ip = lab.var(&format!("MHALAB_IP_{}", v.master));
        let settled = wait_for(Duration::from_secs(20), || {
            lab.state().hosts.iter().all(|h| {
                h.host == v.master || (h.read_only && h.replica_of == Some((ip.clone(), true)))
            })
        });
        if !settled {
            for h in lab.state().hosts.into_iter().filter(|h| h.host != v.master) {
                v.unsettled.push(format!(
                    "{}: read_only={} replica_of={:?}",
                    h.host, h.read_only, h.replica_of
                ));
            }
        }
    }
    let acked: Vec<String> = ledger
        .iter()
        .filter(|w| w.acked)
        .map(|w| format!("r{round}p{}{}", w.pass, w.host))
        .collect();
    v.acked = acked.len();
    let present = |h: &str| -> Vec<String> {
        lab.mysql(
            h,
            &format!("SELECT tag FROM appdb.ledger WHERE tag LIKE 'r{round}p%'"),
        )
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
    };
    let all_there = wait_for(Duration::from_secs(20), || {
        HOSTS.iter().all(|h| {
            let p = present(h);
            acked.iter().all(|t| p.contains(t))
        })
    });
    if !all_there {
        for h in HOSTS {
            let p = present(h);
            v.lost.extend(
                acked
                    .iter()
                    .filter(|t| !p.contains(t))
                    .map(|t| format!("{t} on {h}")),
            );
        }
    }
    v.split = splits(old, ledger);
    for (h, before) in HOSTS.iter().zip(grants_before) {
        if &lab.grants(h) != before {
            v.grants.push(h.to_string());
        }
    }
    v
}

fn main() {
    let args = parse_args();
    let lab = Lab::lock();
    let fs = StateFs::mount(&lab.journal_dir());
    lab.set_helper_conf(HELPER);
    lab.mysql(
        "db1",
        "CREATE TABLE IF NOT EXISTS appdb.ledger (tag VARCHAR(40) PRIMARY KEY)",
    );
    let grants_before: Vec<_> = HOSTS.iter().map(|h| lab.grants(h)).collect();
    println!(
        "chaos: flavour {}, seed {}, {} rounds, faults {}",
        lab.var("MHALAB_FLAVOUR"),
        args.seed,
        args.rounds,
        args.faults.join(",")
    );
    let mut master = "db1".to_string();
    let mut failed = 0;
    let started = Instant::now();
    for round in 1..=args.rounds {
        let mut rng = Rng(args.seed ^ (u64::from(round) << 32));
        let fault = args.faults[rng.below(args.faults.len() as u64) as usize].clone();
        let others: Vec<&str> = HOSTS.iter().copied().filter(|h| *h != master).collect();
        let new = others[rng.below(others.len() as u64) as usize].to_string();
        let t0 = Instant::now();
        let seen = lab.watchdog_violations().len();
        let writer = Writer::start(&lab, round);
        std::thread::sleep(Duration::from_millis(300));
        let child = lab.switchover_spawn(&new, &[]);
        let pgid = child.id();
        let what = std::thread::scope(|s| {
            let inj = s.spawn(|| inject(&lab, &fs, &fault, &mut rng, pgid, (&master, &new)));
            let out = finish(child, Duration::from_secs(300));
            (
                inj.join().unwrap_or_else(|_| "injector panicked".into()),
                out,
            )
        });
        let (done, out): (String, Output) = what;
        fs.free();
        let recovered = recover_until_settled(&lab);
        std::thread::sleep(Duration::from_millis(300));
        let ledger = writer.finish();
        let mut v = judge(&lab, round, &master, &ledger, &grants_before);
        let text = both(&out);
        // The switch itself refused before it ran MHA (a hook's own
        // refusal inside MHA's output is a fault's effect, not this).
        v.refused = !text.contains("running masterha_master_switch")
            && (text.contains("another mha-helper is working")
                || text.contains("an unfinished switch is recorded"));
        v.two_writable = lab.watchdog_violations().len() - seen;
        let line = format!(
            "round {round:>4} {done:<28} {master}->{new} switchover={} recover={:?} master={} acked={} lost={} split={} unsettled={} grants={} refused={} two-writable={} {:.1}s {}",
            out.status.code().map_or("signal".into(), |c| c.to_string()),
            recovered,
            v.master,
            v.acked,
            v.lost.len(),
            v.split.len(),
            v.unsettled.len(),
            if v.grants.is_empty() { "ok".into() } else { v.grants.join("+") },
            v.refused,
            v.two_writable,
            t0.elapsed().as_secs_f64(),
            if v.ok() { "PASS" } else { "FAIL" }
        );
        println!("{line}");
        if !v.ok() {
            failed += 1;
            for d in v.lost.iter().chain(&v.unsettled).chain(&v.split).take(10) {
                println!("      {d}");
            }
            println!("      switchover output:\n{}", indent(&text));
        }
        if v.master.is_empty() || !v.unsettled.is_empty() {
            println!(
                "chaos: the cluster is not settled; stopping (seed {}, round {round})",
                args.seed
            );
            break;
        }
        master = v.master.clone();
    }
    println!(
        "chaos: seed {}: {failed} failed round(s) of {} in {:.0}s",
        args.seed,
        args.rounds,
        started.elapsed().as_secs_f64()
    );
    drop(fs);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn indent(text: &str) -> String {
    text.lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("        {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
