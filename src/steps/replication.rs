//! Replication steps of `recover`: restarting the threads MHA stopped on
//! the new master (its online switch stops the SQL thread before `start`)
//! when a switch is undone, and pointing hosts at the new master when MHA
//! died after opening it.

use crate::step_id::StepId;
use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::listing::Planned;
use crate::mysql::{Script, ServerInfo};
use crate::state::journal::Journal;
use std::time::Duration;

pub struct RestartReplication {
    host: String,
}

impl RestartReplication {
    pub fn new(host: &str) -> RestartReplication {
        RestartReplication {
            host: host.to_string(),
        }
    }

    fn script(info: &ServerInfo, timeout: Duration) -> Script {
        let mut s = Script::new(timeout);
        s.exec("restart replication", info.dialect().start_replica());
        s
    }
}

impl Step for RestartReplication {
    fn id(&self) -> StepId {
        StepId::RestartReplication
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        "start the replication threads MHA stopped".into()
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let Some(info) = ctx.find(&self.host).and_then(|h| h.info.as_ref()) else {
            return Vec::new();
        };
        let t = super::step_timeout(ctx, &self.host);
        vec![Planned::once(&self.host, &Self::script(info, t))]
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let s = Self::script(h.info()?, h.spec.settings.step_timeout);
        h.run(&s)?;
        Ok(Applied::default())
    }
}

/// Point a host at the new master, with the proof `ops::repoint` demands
/// (a switch MHA left half-way after the new master opened). Cannot be
/// undone: the host's data moves on with the new master.
pub struct RepointReplica {
    r: crate::ops::repoint::Repoint,
}

impl RepointReplica {
    pub fn new(r: crate::ops::repoint::Repoint) -> RepointReplica {
        RepointReplica { r }
    }
}

impl Step for RepointReplica {
    fn id(&self) -> StepId {
        StepId::RepointReplica
    }
    fn host(&self) -> &str {
        &self.r.host
    }
    fn what(&self) -> String {
        format!(
            "replicate from {} (once proven to have nothing it lacks)",
            self.r.src.name
        )
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.r.host);
        crate::ops::repoint::plan(&ctx.hosts, &self.r, t)
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let timeout = ctx.host(&self.r.host)?.spec.settings.step_timeout;
        crate::ops::repoint::repoint(&mut ctx.hosts, &self.r, timeout).map(Applied::detail)
    }
    fn reversible(&self) -> bool {
        false
    }
}

/// End the new master's own replication (MHA's last step of a switch:
/// RESET SLAVE ALL), so that it is nobody's replica.
pub struct DetachNewMaster {
    host: String,
}

impl DetachNewMaster {
    pub fn new(host: &str) -> DetachNewMaster {
        DetachNewMaster {
            host: host.to_string(),
        }
    }

    fn script(info: &ServerInfo, timeout: Duration) -> Script {
        let d = info.dialect();
        let reset = if d.stop_replica() == "STOP REPLICA" {
            "RESET REPLICA ALL"
        } else {
            "RESET SLAVE ALL"
        };
        let mut s = Script::new(timeout);
        s.exec("detach", d.stop_replica());
        s.exec("detach", reset);
        s
    }
}

impl Step for DetachNewMaster {
    fn id(&self) -> StepId {
        StepId::DetachNewMaster
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        "end its replication from the old master (MHA's last step)".into()
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let Some(info) = ctx.find(&self.host).and_then(|h| h.info.as_ref()) else {
            return Vec::new();
        };
        let t = super::step_timeout(ctx, &self.host);
        vec![Planned::once(&self.host, &Self::script(info, t))]
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let s = Self::script(h.info()?, h.spec.settings.step_timeout);
        h.run(&s)?;
        Ok(Applied::default())
    }
    fn reversible(&self) -> bool {
        false
    }
}
