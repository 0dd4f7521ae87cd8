//! Steps that change read_only: [`SetReadOnly`] (a host stops taking
//! writes, optionally proving the fence in the same round trip) and
//! [`MakeWritable`] (a host takes writes, only after every other host is
//! proven read-only).

use crate::state::journal::note;
use crate::step_id::StepId;
use std::time::Duration;

use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::config::helper::SuperReadOnly;
use crate::listing::Planned;
use crate::mysql::Script;
use crate::ops::{read_only, sessions};
use crate::state::journal::Journal;

/// Turn read-only on on one host.
pub struct SetReadOnly {
    id: StepId,
    host: String,
    mode: SuperReadOnly,
    stmts: Vec<String>,
    /// Also prove the fence in the same round trip (the MHA admin user,
    /// whose sessions are not the application's).
    fence: Option<String>,
}

impl SetReadOnly {
    pub fn new(id: StepId, host: &str, mode: SuperReadOnly) -> SetReadOnly {
        SetReadOnly {
            id,
            host: host.to_string(),
            mode,
            stmts: Vec::new(),
            fence: None,
        }
    }

    /// After setting read_only, check in the same script that no
    /// application session from before the block is left.
    pub fn proving_fence(mut self, admin: &str) -> SetReadOnly {
        self.fence = Some(admin.to_string());
        self
    }

    fn script(&self, ctx: &Ctx, timeout: Duration) -> Script {
        let mut s = Script::new(timeout);
        for st in &self.stmts {
            s.exec("set read_only", st);
        }
        s.query("ro", read_only::READ);
        if let Some(admin) = &self.fence {
            sessions::add_query(&mut s, "sessions", &ctx.app.accounts, admin);
        }
        s
    }
}

impl Step for SetReadOnly {
    fn id(&self) -> StepId {
        self.id
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        match &self.fence {
            Some(_) => "set read_only=1 and prove the fence holds".into(),
            None => "set read_only=1".into(),
        }
    }

    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        let host = ctx.host(&self.host)?;
        let info = host.info()?;
        self.stmts = read_only::statements(&self.host, info, true, self.mode)?;
        Ok(Some(Undo::ReadOnly {
            host: self.host.clone(),
            read_only: info.read_only,
            super_read_only: info.super_read_only,
        }))
    }

    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        let mut v = vec![Planned::once(&self.host, &self.script(ctx, t))];
        if let Some(admin) = &self.fence {
            v.extend(super::sessions::fence_plan(ctx, &self.host, admin));
        }
        v
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let timeout = ctx.host(&self.host)?.spec.settings.step_timeout;
        let script = self.script(ctx, timeout);
        let watermark = ctx.app.watermark;
        let host = ctx.host(&self.host)?;
        let r = host.run(&script)?;
        if read_only::read_back(&r, "ro") != Some(true) {
            anyhow::bail!("{}: read_only does not read 1 after setting it", self.host);
        }
        if let Some(info) = host.info.as_mut() {
            info.read_only = true;
        }
        let Some(admin) = self.fence.clone() else {
            return Ok(Applied::default());
        };
        super::sessions::prove_fence(ctx, &self.host, &r, watermark, &admin).map(Applied::detail)
    }
}

/// Make a host writable: prove every other host of the cluster read-only
/// (in parallel, reading this host's binary log position while it is
/// still read-only: journaled as `binlog-before-writable:<host>` before
/// anything opens it), then record the position again and turn read_only
/// off in one round trip (`binlog-at-writable:<host>`). The positions let
/// `recover` tell later whether the host took writes, and where a replica
/// of the old master starts in its log (the first, when the process died
/// before it recorded the second).
pub struct MakeWritable {
    id: StepId,
    host: String,
    /// Hosts that must answer for the proof (the old master of a switch).
    required: Vec<String>,
    /// What read-only state the undo puts back.
    before: (bool, Option<bool>),
    /// What `stage` proved and read, for `apply`.
    ready: Option<read_only::Ready>,
}

impl MakeWritable {
    pub fn new(id: StepId, host: &str, required: &[String]) -> MakeWritable {
        MakeWritable {
            id,
            host: host.to_string(),
            required: required.to_vec(),
            before: (true, None),
            ready: None,
        }
    }

    /// The read-only state to put back on undo (default: read_only=1).
    pub fn undoing_to(mut self, read_only: bool, super_read_only: Option<bool>) -> MakeWritable {
        self.before = (read_only, super_read_only);
        self
    }
}

impl Step for MakeWritable {
    fn id(&self) -> StepId {
        self.id
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        "prove every other host read-only, then set read_only=0".into()
    }

    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(Some(Undo::ReadOnly {
            host: self.host.clone(),
            read_only: self.before.0,
            super_read_only: self.before.1,
        }))
    }

    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        read_only::writable_plan(&ctx.hosts, &self.host, &self.required, t)
    }

    fn stage(&mut self, ctx: &mut Ctx) -> Result<Vec<(String, serde_json::Value)>> {
        let unreachable = ctx.unreachable_names();
        let (target, mut others) = read_only::split(&mut ctx.hosts, &self.host)?;
        let timeout = target.spec.settings.step_timeout;
        let ready = read_only::ready(target, &mut others, &unreachable, &self.required, timeout)?;
        let notes = ready
            .before
            .clone()
            .map(|pos| (note::binlog_before_writable(&self.host), pos.into()))
            .into_iter()
            .collect();
        self.ready = Some(ready);
        Ok(notes)
    }

    fn apply(&mut self, ctx: &mut Ctx, journal: &Journal) -> Result<Applied> {
        let ready = self.ready.take().ok_or_else(|| {
            anyhow::anyhow!("{}: {} applied before it was staged", self.host, self.id)
        })?;
        let target = ctx.host(&self.host)?;
        let timeout = target.spec.settings.step_timeout;
        let w = read_only::open(target, ready.proof, timeout)?;
        // The write outage of an online switch: first blocking statement to here.
        if let Some(b) = journal
            .note_value(note::BLOCK_STARTED_MS)
            .and_then(|v| v.as_u64())
        {
            ctx.report.write_block_ms = Some(w.at.saturating_sub(b));
        }
        Ok(Applied {
            detail: Some(format!("writable; {}", w.proof.describe())),
            notes: w
                .binlog
                .map(|pos| (note::binlog_at_writable(&self.host), pos.into()))
                .into_iter()
                .collect(),
            ..Applied::default()
        })
    }
}
