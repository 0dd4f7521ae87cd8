//! `--command=start`: MHA has switched; open the new master for writes and
//! give the old master's application accounts back exactly what they had.
//! Both hosts are done at once, one round trip each, because the write
//! outage lasts until the new master is writable.
//!
//! MHA has already moved the master when start runs, so failing here must
//! not abort it half-way: operational failures exit 10 (MHA proceeds and
//! turns read_only off itself) and leave the journal open for `recover`.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::{emit, HookOptions, Masters};
use crate::cluster::{self, Host};
use crate::exit::Code;
use crate::grants::{self, Snapshot};
use crate::journal::Journal;
use crate::keeper;
use crate::mha_args::HookArgs;
use crate::mysql::Script;
use crate::report::Report;
use crate::setup::Setup;
use crate::steps::accounts::{self, unix_ms};
use crate::steps::{self, read_only, Undo};

/// What the journal says start must give back.
pub struct Pending {
    pub grants: Option<Undo>,
    pub block_started_ms: Option<u64>,
}

impl Pending {
    pub fn from_journal(j: &Journal) -> Pending {
        let grants = j
            .pending_undos()
            .into_iter()
            .find_map(|(_, u)| matches!(u, Undo::Grants { .. }).then_some(u));
        Pending {
            grants,
            block_started_ms: j.note_value("block_started_ms").and_then(|v| v.as_u64()),
        }
    }

    fn snapshots(&self) -> &[Snapshot] {
        match &self.grants {
            Some(Undo::Grants { snapshots, .. }) => snapshots,
            _ => &[],
        }
    }
}

/// Make `new` writable and compare its grants with the snapshot (warnings
/// only: the revoke was not binlogged, so they should match).
fn open_new_master(
    h: &mut Host,
    pending: &Pending,
    report_warnings: &mut Vec<String>,
) -> Result<u64> {
    let mut s = Script::new(h.spec.settings.step_timeout);
    s.exec("new master read_only off", read_only::WRITABLE);
    s.query("ro", "SELECT @@GLOBAL.read_only AS read_only");
    s.query("users", "SELECT User AS user, Host AS host FROM mysql.user");
    let r = h.run(&s)?;
    let writable_at = unix_ms();
    if r.set("ro")
        .records()
        .next()
        .is_none_or(|r| r.flag("read_only"))
    {
        bail!("{}: read_only is still on after turning it off", h.name());
    }
    let existing: Vec<(String, String)> = r
        .set("users")
        .records()
        .map(|u| (u.text("user"), u.text("host")))
        .collect();
    let (present, missing): (Vec<&Snapshot>, Vec<&Snapshot>) = pending
        .snapshots()
        .iter()
        .partition(|s| existing.contains(&(s.account.user.clone(), s.account.host.clone())));
    for m in &missing {
        report_warnings.push(format!(
            "{}: application account {} does not exist on the new master",
            h.name(),
            m.account.label()
        ));
    }
    if !present.is_empty() {
        let present: Vec<Snapshot> = present.into_iter().cloned().collect();
        let mut s = Script::new(h.spec.settings.step_timeout);
        grants::add_readback(&mut s, &present);
        let r = h.run(&s).context("reading grants on the new master")?;
        for d in grants::differences(&r, &present) {
            report_warnings.push(format!(
                "{}: grants differ from the old master's: {d}",
                h.name()
            ));
        }
    }
    Ok(writable_at)
}

/// Give back the grants on the old master (sql_log_bin=0) and check them.
fn restore_old_master(h: &mut Host, pending: &Pending) -> Result<Vec<String>> {
    match &pending.grants {
        Some(Undo::Grants {
            method, snapshots, ..
        }) => {
            let t = h.spec.settings.step_timeout;
            accounts::restore(h, *method, snapshots, t)
        }
        _ => Ok(Vec::new()),
    }
}

/// Finish a switch on connected hosts: open `new`, restore `orig`, both at
/// once. Returns the errors (empty when all went well).
pub fn complete(
    hosts: &mut [Host],
    m: &Masters,
    pending: &Pending,
    report: &mut Report,
) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let (mut new_h, mut orig_h) = (None, None);
    for h in hosts.iter_mut() {
        if h.spec.name == m.new {
            new_h = Some(h);
        } else if h.spec.name == m.orig {
            orig_h = Some(h);
        }
    }
    let started_ms = unix_ms();
    let (new_res, (orig_res, orig_ms)) = std::thread::scope(|s| {
        let w = &mut warnings;
        let a = s.spawn(move || match new_h {
            Some(h) => {
                let writable_at = open_new_master(h, pending, w)?;
                let t = h.spec.settings.step_timeout;
                let vip_started = Instant::now();
                let vip = steps::vip::apply(h, true, t);
                Ok((writable_at, vip, vip_started.elapsed().as_millis() as u64))
            }
            None => Err(anyhow!("{}: not connected", m.new)),
        });
        let b = s.spawn(move || {
            let t = Instant::now();
            let r = match orig_h {
                Some(h) => restore_old_master(h, pending),
                None if pending.snapshots().is_empty() => Ok(Vec::new()),
                None => Err(anyhow!(
                    "{}: not connected; its grants are still revoked",
                    m.orig
                )),
            };
            (r, t.elapsed().as_millis() as u64)
        });
        (
            a.join().unwrap_or_else(|_| Err(anyhow!("thread panicked"))),
            b.join()
                .unwrap_or_else(|_| (Err(anyhow!("thread panicked")), 0)),
        )
    });
    let ms = unix_ms().saturating_sub(started_ms);
    match new_res {
        Ok((writable_at, vip, vip_ms)) => {
            report.step(
                "new-master-writable",
                &m.new,
                "done",
                writable_at.saturating_sub(started_ms),
                None,
            );
            if let Some(b) = pending.block_started_ms {
                report.write_block_ms = Some(writable_at.saturating_sub(b));
            }
            match vip {
                Ok(None) => {}
                Ok(Some(_)) => report.step("vip-arrive-new-master", &m.new, "done", vip_ms, None),
                Err(e) => {
                    report.step(
                        "vip-arrive-new-master",
                        &m.new,
                        "failed",
                        vip_ms,
                        Some(format!("{e:#}")),
                    );
                    errors.push(e.context(format!("{}: could not bring the writer VIP", m.new)));
                }
            }
        }
        Err(e) => {
            report.step(
                "new-master-writable",
                &m.new,
                "failed",
                ms,
                Some(format!("{e:#}")),
            );
            errors.push(e.context(format!("{}: could not turn read_only off", m.new)));
        }
    }
    match orig_res {
        Ok(accounts) => {
            report.step(
                "restore-grants",
                &m.orig,
                "done",
                orig_ms,
                Some(format!("{} account(s)", accounts.len())),
            );
            report.accounts_changed = accounts
                .into_iter()
                .map(|a| format!("{a} (restored)"))
                .collect();
        }
        Err(e) => {
            report.step(
                "restore-grants",
                &m.orig,
                "failed",
                orig_ms,
                Some(format!("{e:#}")),
            );
            errors.push(e.context(format!("{}: could not restore application grants", m.orig)));
        }
    }
    for w in warnings {
        report.warn(w);
    }
    errors
}

pub fn run(setup: &Setup, args: &HookArgs, opts: &HookOptions) -> Result<Code> {
    let started = Instant::now();
    let m = Masters::from_args(setup, args)?;
    let mut report = Report::new("master-ip-online-change", "start");
    report.orig_master = Some(m.orig.clone());
    report.new_master = Some(m.new.clone());
    let path = setup.journal_path();
    let mut journal = match Journal::open(&path)? {
        Some(j) if j.masters() == Some((m.orig.as_str(), m.new.as_str())) => Some(j),
        Some(j) => {
            report.warn(format!(
                "journal {} belongs to switch {:?}, not {} -> {}; grants are not restored here, run `mha-helper recover`",
                path.display(),
                j.masters(),
                m.orig,
                m.new
            ));
            None
        }
        None => {
            report.warn(format!(
                "no open journal at {}: nothing to give back on {} (stop did not block anything, or start already ran)",
                path.display(),
                m.orig
            ));
            None
        }
    };
    let pending = match &journal {
        Some(j) => Pending::from_journal(j),
        None => Pending {
            grants: None,
            block_started_ms: None,
        },
    };
    let specs = m.specs(setup, args)?;
    if opts.dry_run {
        report.outcome = format!(
            "dry-run: would turn read_only off on {} and restore {} account(s) on {}",
            m.new,
            pending.snapshots().len(),
            m.orig
        );
        emit(&report, opts.json);
        return Ok(Code::Ok);
    }
    if let Some(j) = journal.as_mut() {
        j.phase("start-begun")?;
    }
    crate::fault::point("after:start-begun")?;
    let socket = keeper::socket_path(&path);
    let _guard = keeper::Guard::new(&socket);
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    if keeper::available(&socket, &[&m.orig, &m.new]) {
        hosts = cluster::via_keeper(specs, &socket);
    } else {
        for r in cluster::connect(specs) {
            match r {
                Ok(h) => hosts.push(h),
                Err(e) => errors.push(e),
            }
        }
    }
    errors.extend(complete(&mut hosts, &m, &pending, &mut report));
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    for h in &hosts {
        if let Some(s) = h.conn.stats() {
            report.ssh.insert(h.spec.name.clone(), s);
        }
    }
    if errors.is_empty() {
        report.outcome = "new master writable, grants restored".into();
        if let Some(mut j) = journal {
            report.peak_rss_kb = crate::report::peak_rss_kb();
            j.note_lazy("start-report", serde_json::to_value(&report)?)?;
            report.journal = Some(j.close("completed")?.display().to_string());
        }
        emit(&report, opts.json);
        return Ok(Code::Ok);
    }
    report.outcome = "incomplete; MHA proceeds, run `mha-helper recover` to finish".into();
    for e in &errors {
        log::error!("{e:#}");
    }
    if let Some(j) = journal.as_mut() {
        j.note_lazy("start-report", serde_json::to_value(&report)?)?;
    }
    emit(&report, opts.json);
    Ok(Code::Proceed)
}
