//! Replication steps of `recover`: restarting the threads MHA stopped on
//! the new master (its online switch stops the SQL thread before `start`)
//! when a switch is undone, and pointing hosts at the new master when MHA
//! died after opening it.

use crate::step_id::StepId;
use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::mysql::Script;
use crate::state::journal::Journal;

pub struct RestartReplication {
    host: String,
}

impl RestartReplication {
    pub fn new(host: &str) -> RestartReplication {
        RestartReplication {
            host: host.to_string(),
        }
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
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        let start = ctx
            .find(&self.host)
            .and_then(|h| h.info.as_ref())
            .map_or("START REPLICA", |i| i.dialect().start_replica());
        vec![format!("{start};")]
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let start = h.info()?.dialect().start_replica();
        let mut s = Script::new(h.spec.settings.step_timeout);
        s.exec("restart replication", start);
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
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        let Some(info) = ctx.find(&self.r.host).and_then(|h| h.info.as_ref()) else {
            return Vec::new();
        };
        let from = match &self.r.opened_at {
            Some((file, pos)) if info.flavor == crate::mysql::Flavor::MariaDb => {
                crate::ops::repoint::StartAt::Position {
                    file: file.clone(),
                    pos: *pos,
                }
            }
            _ => crate::ops::repoint::StartAt::Auto,
        };
        let (_, shown) = crate::ops::repoint::change_sql(info.dialect(), &self.r.src, &from);
        vec![
            format!("{shown};"),
            format!("{};", info.dialect().start_replica()),
        ]
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

    fn stmts(info: &crate::mysql::ServerInfo) -> [String; 2] {
        let d = info.dialect();
        let reset = if d.stop_replica() == "STOP REPLICA" {
            "RESET REPLICA ALL"
        } else {
            "RESET SLAVE ALL"
        };
        [d.stop_replica().to_string(), reset.to_string()]
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
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        ctx.find(&self.host)
            .and_then(|h| h.info.as_ref())
            .map(|i| Self::stmts(i).iter().map(|s| format!("{s};")).collect())
            .unwrap_or_default()
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let h = ctx.host(&self.host)?;
        let mut s = Script::new(h.spec.settings.step_timeout);
        for st in Self::stmts(h.info()?) {
            s.exec("detach", &st);
        }
        h.run(&s)?;
        Ok(Applied::default())
    }
    fn reversible(&self) -> bool {
        false
    }
}
