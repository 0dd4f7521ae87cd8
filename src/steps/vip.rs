//! Moving the writer VIP as a step of a switch (see `crate::vip`).

use std::time::Duration;

use anyhow::{anyhow, Result};

use super::{Ctx, Step, Undo};
use crate::cluster::Host;
use crate::journal::Journal;
use crate::vip::{self, Change, VipSpec};

/// The host's VIP settings, when a writer VIP is configured.
pub fn spec(host: &Host) -> Result<Option<VipSpec>> {
    VipSpec::for_host(host.name(), &host.spec.settings)
}

/// Add (`true`) or remove the VIP on `host`; a no-op without a VIP.
pub fn apply(host: &mut Host, add: bool, timeout: Duration) -> Result<Option<Change>> {
    let Some(spec) = spec(host)? else {
        return Ok(None);
    };
    let change = if add {
        vip::add(host.conn.as_mut(), &spec, timeout)?
    } else {
        vip::remove(host.conn.as_mut(), &spec, timeout)?
    };
    Ok(Some(change))
}

/// Move the writer VIP onto or off one host.
pub struct MoveVip {
    id: &'static str,
    host: String,
    add: bool,
    script: String,
}

impl MoveVip {
    pub fn new(id: &'static str, host: &str, add: bool) -> MoveVip {
        MoveVip {
            id,
            host: host.to_string(),
            add,
            script: String::new(),
        }
    }
}

impl Step for MoveVip {
    fn id(&self) -> &'static str {
        self.id
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        if self.add {
            "put the writer VIP here and announce it".into()
        } else {
            "take the writer VIP off".into()
        }
    }
    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        let host = ctx.host(&self.host)?;
        let spec = spec(host)?.ok_or_else(|| anyhow!("{}: no writer_vip configured", self.host))?;
        self.script = if self.add {
            spec.add_script()
        } else {
            spec.remove_script()
        };
        Ok(Some(Undo::Vip {
            host: self.host.clone(),
            add: !self.add,
        }))
    }
    fn statements(&self, _ctx: &Ctx) -> Vec<String> {
        vec![format!("(shell) {}", self.script.replace('\n', "; "))]
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let host = ctx.host(&self.host)?;
        let t = host.spec.settings.step_timeout;
        let change = apply(host, self.add, t)?;
        Ok(Some(match (self.add, change) {
            (true, Some(Change::Done)) => "VIP added and announced".into(),
            (true, _) => "VIP was already here; announced".into(),
            (false, Some(Change::Done)) => "VIP removed".into(),
            (false, _) => "VIP was already gone".into(),
        }))
    }
}
