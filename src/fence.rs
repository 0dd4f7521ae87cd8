//! Fencing an old master that a failover could not fence.
//!
//! MHA promotes a new master when it cannot reach the old one, and does
//! nothing more about it: behind a network partition the old master stays a
//! writable master, and when the partition heals there are two. So whenever
//! a failover leaves the old master unfenced (no SSH, or its mysqld did not
//! answer, or setting read_only failed), the failover hook records a pending
//! fence in the state directory and starts a small background process,
//! `mha-helper fence --wait`, that keeps trying. `check` and MHA's `status`
//! phase (every masterha_manager start) try once too.
//!
//! As soon as the old master answers over SSH and its mysqld answers, and
//! the new master is still the master: set read_only (super_read_only), take
//! the writer VIP off, kill the application's sessions, and compare its
//! binary log with what the replicas had read when it was lost: anything
//! beyond is divergent writes for a person to reconcile, named in the log
//! and in the fence record. Each attempt holds the application's lock and
//! journals its changes, like every other mutation.

use crate::state::journal::note;
use crate::step_id::StepId;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, Host};
use crate::engine::{self, JournalUse, OnFailure, Policy};
use crate::exit::Code;
use crate::mysql::{Script, ServerInfo};
use crate::ops;
use crate::report::Report;
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::{new_id, Entry, Journal};
use crate::state::StateDir;
use crate::steps::Ctx;

/// How often the background fencer tries, and for how long.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// SSH connect timeout of one attempt (a cut host never answers).
const ATTEMPT_CONNECT: Duration = Duration::from_secs(2);

/// An old master still to be fenced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub host: String,
    /// The master MHA failed over to, when known.
    pub new_master: Option<String>,
    pub since: String,
    /// Why it could not be fenced during the failover.
    pub reason: String,
    /// Whether SSH to it worked then (if not, the failover does not wait
    /// for it again).
    pub ssh_reachable: bool,
    /// The furthest position of its binary log that any replica had read
    /// (`file:pos`): writes beyond it never reached the new master.
    pub replicated_up_to: Option<String>,
    /// A background fencer that was already running when this was
    /// recorded (a new one is started otherwise).
    pub fencer_pid: Option<u32>,
}

pub fn read(state: &StateDir) -> Result<Option<Pending>> {
    match state.read(&state.fence())? {
        Some(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
            format!("cannot read {}", state.fence().display())
        })?)),
        None => Ok(None),
    }
}

pub fn record(state: &StateDir, p: &Pending) -> Result<()> {
    state.write(&state.fence(), serde_json::to_string_pretty(p)?.as_bytes())
}

/// Record a pending fence of `host` and start the background fencer.
/// Reads how far the other hosts had replicated from it first.
pub fn leave_pending(
    setup: &Setup,
    state: &StateDir,
    host: &str,
    reason: &str,
    ssh_reachable: bool,
) {
    let mut p = Pending {
        host: host.to_string(),
        new_master: None,
        since: crate::logger::utc_now(),
        reason: reason.to_string(),
        ssh_reachable,
        replicated_up_to: replicated_up_to(setup, host),
        fencer_pid: None,
    };
    if let Ok(Some(old)) = read(state) {
        if old.host == host {
            p.since = old.since;
            p.replicated_up_to = old.replicated_up_to.or(p.replicated_up_to);
            p.new_master = old.new_master;
        }
    }
    // The record first: the fencer starts from it. One fencer is enough.
    let running = running_fencer(setup);
    p.fencer_pid = running;
    let recorded = record(state, &p);
    if running.is_none() && recorded.is_ok() {
        if let Err(e) = spawn(&setup.paths, state) {
            log::error!("cannot start the background fencer: {e:#}");
        }
    }
    match recorded {
        Ok(()) => log::error!(
            "{host} is NOT fenced ({reason}); it may still take writes. mha-helper keeps trying to \
             fence it in the background; check with `mha-helper check`"
        ),
        Err(e) => log::error!(
            "{host} is NOT fenced ({reason}) and the pending fence could not be recorded: {e:#}"
        ),
    }
}

/// A background fencer already running for this application, if any.
fn running_fencer(setup: &Setup) -> Option<u32> {
    let conf = setup.app_path().display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let c = crate::state::lock::cmdline(pid)?;
        (c.contains(" fence ") && c.contains("--wait") && c.contains(&conf)).then_some(pid)
    })
}

/// Say which master MHA failed over to (the start phase knows it).
pub fn set_new_master(state: &StateDir, new: &str) {
    if let Ok(Some(mut p)) = read(state) {
        p.new_master = Some(new.to_string());
        let _ = record(state, &p);
    }
}

/// The furthest `file:pos` of `host`'s binary log any other host has read.
fn replicated_up_to(setup: &Setup, host: &str) -> Option<String> {
    let ip = setup.mha.server(host).map(|s| s.ip.clone())?;
    let names: Vec<String> = setup
        .all_hosts()
        .into_iter()
        .filter(|h| h != host)
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut specs = setup.specs(&refs).ok()?;
    for s in &mut specs {
        s.target.cap_connect_timeout(ATTEMPT_CONNECT);
    }
    let (mut hosts, _) = cluster::connect_split(specs);
    let mut refs: Vec<&mut Host> = hosts.iter_mut().collect();
    let read = cluster::parallel(&mut refs, |h| {
        let info = h.refresh_info()?.clone();
        Ok(info
            .replica
            .filter(|r| r.master_host == host || r.master_host == ip))
    });
    read.into_iter()
        .flatten()
        .flatten()
        .filter(|r| !r.master_log_file.is_empty())
        .map(|r| (r.master_log_file.clone(), r.read_master_log_pos))
        .max()
        .map(|(f, p)| format!("{f}:{p}"))
}

/// Start `mha-helper fence --wait` detached; its log goes to the state
/// directory.
fn spawn(paths: &ConfigPaths, state: &StateDir) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let log = crate::state::open_private(&state.fence_log(), true)?
        .map(Ok)
        .unwrap_or_else(|| crate::state::create_private(&state.fence_log()))?;
    let mut cmd = std::process::Command::new(exe);
    crate::fault::forget(&mut cmd);
    cmd.arg("fence")
        .args(paths.as_args())
        .arg("--wait")
        .env_remove(crate::state::journal::SWITCH_ID_VAR)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the fencer leaves MHA's group.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    Ok(cmd
        .spawn()
        .context("cannot start the background fencer")?
        .id())
}

/// What one attempt did.
#[derive(Debug)]
pub enum Attempt {
    /// Nothing pending.
    Nothing,
    /// Not reachable yet (why).
    NotYet(String),
    /// Fenced; the report says how and what it had written since.
    Fenced(Box<Report>),
}

fn cmp_pos(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> (String, u64) {
        let (f, p) = s.rsplit_once(':').unwrap_or((s, "0"));
        (f.to_string(), p.parse().unwrap_or(0))
    };
    split(a).cmp(&split(b))
}

/// Try once to fence the pending old master.
pub fn attempt(setup: &Setup, state: &StateDir) -> Result<Attempt> {
    let Some(p) = read(state)? else {
        return Ok(Attempt::Nothing);
    };
    let Reached {
        hosts,
        unreachable,
        old,
        masters,
    } = match reach(setup, &p)? {
        Reach::Reached(r) => *r,
        Reach::NotYet(why) => return Ok(Attempt::NotYet(why)),
    };
    let lock = crate::ssh::keeper::acquire_within(state, "fence", Duration::from_secs(10))?;
    let mut report = Report::new("fence", "fence");
    report.orig_master = Some(p.host.clone());
    report.new_master = masters.first().cloned();
    let mut ctx = Ctx::new(hosts, report);
    ctx.unreachable = unreachable;
    let (spec, now_pos) = read_old_master(setup, &mut ctx, &p.host, &old)?;
    let admin = spec.access.user.clone();
    let mut steps = crate::plans::fence(
        &p.host,
        &spec.settings,
        crate::plans::Fence {
            read_only: Some(StepId::FenceReadOnly),
            vip: StepId::VipLeaveOldMaster,
            kill_as: Some(&admin),
        },
    );
    let mut journal = match Journal::open(state)? {
        Some(j) => bail!(
            "a switch is recorded in {}; not fencing until it is settled (run `mha-helper recover`)",
            j.path().display()
        ),
        None => Journal::create(
            state,
            Entry::Begin {
                id: new_id(),
                kind: crate::state::journal::Kind::Fence,
                orig: p.host.clone(),
                new: masters.first().cloned().unwrap_or_default(),
                at: crate::logger::utc_now(),
                pid: std::process::id(),
            },
        )?,
    };
    let policy = Policy {
        on_failure: OnFailure::Continue,
        journal: JournalUse::BestEffort,
        undo_timeout: spec.settings.undo_timeout,
    };
    let result = engine::run(&mut steps, &mut ctx, &mut journal, policy);
    let divergent = divergence(&p, now_pos.as_deref());
    if let Some(d) = &divergent {
        log::error!("{d}");
        ctx.report.warnings.push(d.clone());
    }
    let outcome = match result {
        Ok(()) => fenced(state, &p, ctx, journal, divergent.is_some()),
        Err(e) => Err(e.context(format!("fencing {}", p.host))),
    };
    drop(lock);
    outcome
}

/// What was read to fence the old master now: every host connected (and
/// those that were not), the old master's server, and the host(s) that are
/// master now.
struct Reached {
    hosts: Vec<Host>,
    unreachable: Vec<(String, String)>,
    old: ServerInfo,
    masters: Vec<String>,
}

/// Whether the old master can be fenced now.
enum Reach {
    Reached(Box<Reached>),
    NotYet(String),
}

/// Reach the old master first (while it does not answer, nobody else is
/// bothered), then every other host; the new master must still be the
/// master (never fence the master of the day).
fn reach(setup: &Setup, p: &Pending) -> Result<Reach> {
    let mut specs = setup.specs(&[])?;
    for s in &mut specs {
        s.target.cap_connect_timeout(ATTEMPT_CONNECT);
    }
    let (mine, rest): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| s.name == p.host);
    let (mut hosts, _) = cluster::connect_split(mine);
    let Some(first) = hosts.first_mut() else {
        return Ok(Reach::NotYet(format!("{}: no SSH", p.host)));
    };
    if let Err(e) = first.refresh_info() {
        return Ok(Reach::NotYet(format!(
            "{}: {}",
            p.host,
            crate::exit::message(&e)
        )));
    }
    let (others, unreachable) = cluster::connect_split(rest);
    hosts.extend(others);
    let mut refs: Vec<&mut Host> = hosts.iter_mut().collect();
    let infos = cluster::parallel(&mut refs, |h| h.refresh_info().cloned());
    let mut old = None;
    let mut masters = Vec::new();
    for (h, i) in hosts.iter().zip(&infos) {
        match i {
            Ok(i) if h.spec.name == p.host => old = Some(i.clone()),
            Err(e) if h.spec.name == p.host => {
                return Ok(Reach::NotYet(format!(
                    "{}: {}",
                    p.host,
                    crate::exit::message(e)
                )))
            }
            Ok(i) if i.replica.is_none() && !i.read_only => masters.push(h.spec.name.clone()),
            _ => {}
        }
    }
    let old = old.ok_or_else(|| anyhow!("{}: not in the configuration any more", p.host))?;
    if masters.is_empty() || p.new_master.as_ref().is_some_and(|n| !masters.contains(n)) {
        bail!(
            "{} answers again, but no other host is clearly the master ({}); not fencing it: a \
             person must decide which host is the master",
            p.host,
            if masters.is_empty() {
                "no writable host that is not a replica".to_string()
            } else {
                format!("writable: {}", masters.join(", "))
            }
        );
    }
    Ok(Reach::Reached(Box::new(Reached {
        hosts,
        unreachable,
        old,
        masters,
    })))
}

/// The old master's spec, its application accounts and sessions (to
/// kill) into `ctx`, and its binary log position now.
fn read_old_master(
    setup: &Setup,
    ctx: &mut Ctx,
    host: &str,
    old: &ServerInfo,
) -> Result<(crate::cluster::HostSpec, Option<String>)> {
    let old_host = ctx.host(host)?;
    let spec = old_host.spec.clone();
    let sel = ops::accounts::selection(setup, &spec);
    ctx.app.accounts = ops::accounts::load(old_host, &sel)?.accounts;
    let mut s = Script::new(spec.settings.step_timeout);
    ops::read_only::add_binlog_position(&mut s, old, "binlog");
    ops::sessions::add_query(&mut s, "sessions", &ctx.app.accounts, &spec.access.user);
    let r = ctx.host(host)?.run(&s)?;
    ctx.app.remaining = ops::sessions::parse(&r, "sessions");
    Ok((spec, ops::read_only::binlog_position(&r, "binlog")))
}

/// What the old master wrote after the failover that never reached the
/// new master, for a person to reconcile (None: nothing).
fn divergence(p: &Pending, now_pos: Option<&str>) -> Option<String> {
    match (&p.replicated_up_to, now_pos) {
        (Some(up_to), Some(now)) if cmp_pos(now, up_to) == std::cmp::Ordering::Greater => {
            Some(format!(
                "{} wrote binary log events after the failover that never reached the new master: \
             from {up_to} to {now}; read them with mysqlbinlog --start-position={} {} on {} and \
             reconcile them by hand",
                p.host,
                up_to.rsplit(':').next().unwrap_or("4"),
                up_to.rsplit_once(':').map(|x| x.0).unwrap_or(""),
                p.host
            ))
        }
        (Some(up_to), Some(now)) => {
            log::info!(
                "{}: binary log at {now}, replicated up to {up_to}: no writes after the failover",
                p.host
            );
            None
        }
        _ => Some(format!(
            "{}: cannot tell what it wrote after the failover (binary log now at {}, replicated up \
             to {}); compare it with the new master by hand",
            p.host,
            now_pos.unwrap_or("unknown"),
            p.replicated_up_to.as_deref().unwrap_or("unknown")
        )),
    }
}

/// Fenced: the journal closed, the pending fence put aside as done.
fn fenced(
    state: &StateDir,
    p: &Pending,
    mut ctx: Ctx,
    mut journal: Journal,
    divergent: bool,
) -> Result<Attempt> {
    ctx.report.outcome = format!(
        "{} fenced: read_only=1{}",
        p.host,
        if divergent {
            "; DIVERGENT WRITES, see the warning"
        } else {
            ""
        }
    );
    let _ = journal.note_lazy(note::FENCE_REPORT, serde_json::to_value(&ctx.report)?);
    journal.close(state, "completed")?;
    let done = state
        .fence()
        .with_extension(format!("json.{}.done", new_id()));
    let _ = std::fs::rename(state.fence(), done);
    log::warn!("{}", ctx.report.outcome);
    Ok(Attempt::Fenced(Box::new(ctx.report)))
}

/// `mha-helper fence`: one attempt, or (`--wait`) keep trying.
pub fn run(paths: &ConfigPaths, wait: bool, json: bool) -> Result<Code> {
    let setup = paths.load()?;
    let state = setup.state()?;
    let started = Instant::now();
    loop {
        let outcome = attempt(&setup, &state);
        match outcome {
            Ok(Attempt::Nothing) => {
                log::info!("nothing to fence");
                return Ok(Code::Ok);
            }
            Ok(Attempt::Fenced(r)) => {
                crate::report::emit(&r, json);
                return Ok(Code::Ok);
            }
            Ok(Attempt::NotYet(why)) if wait && started.elapsed() < RETRY_FOR => {
                log::debug!("not yet: {why}");
            }
            Ok(Attempt::NotYet(why)) => {
                log::warn!("not fenced yet: {why}");
                return Ok(Code::Failed);
            }
            Err(e) if wait && started.elapsed() < RETRY_FOR => log::warn!("{e:#}"),
            Err(e) => return Err(e),
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_positions_compare_by_file_then_offset() {
        use std::cmp::Ordering::*;
        assert_eq!(
            cmp_pos("mysql-bin.000002:400", "mysql-bin.000002:4000"),
            Less
        );
        assert_eq!(
            cmp_pos("mysql-bin.000003:4", "mysql-bin.000002:4000"),
            Greater
        );
        assert_eq!(
            cmp_pos("mysql-bin.000002:400", "mysql-bin.000002:400"),
            Equal
        );
    }
}
