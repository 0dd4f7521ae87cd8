//! Restarting replication on a host whose threads MHA stopped (its online
//! switch stops the new master's SQL thread before `start`), when a switch
//! is undone.

use anyhow::Result;

use super::{Ctx, Step, Undo};
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
    fn id(&self) -> &'static str {
        "restart-replication"
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
    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let h = ctx.host(&self.host)?;
        let start = h.info()?.dialect().start_replica();
        let mut s = Script::new(h.spec.settings.step_timeout);
        s.exec("restart replication", start);
        h.run(&s)?;
        Ok(None)
    }
}
