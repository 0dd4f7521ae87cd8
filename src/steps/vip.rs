//! Moving the writer VIP as a step of a switch (see `ops::vip`). The undo
//! puts the VIP back where it was found: on the host, or not.

use crate::step_id::StepId;
use anyhow::{anyhow, Result};

use super::{Applied, Ctx, Step, Undo};
use crate::listing::Planned;
use crate::ops::{self, vip::Change};
use crate::state::journal::Journal;

/// The detail of a removal that took the VIP off.
pub const REMOVED: &str = "VIP removed";

/// Move the writer VIP onto or off one host. Adding first proves the VIP
/// is on no other host that answers.
pub struct MoveVip {
    id: StepId,
    host: String,
    add: bool,
}

impl MoveVip {
    pub fn new(id: StepId, host: &str, add: bool) -> MoveVip {
        MoveVip {
            id,
            host: host.to_string(),
            add,
        }
    }
}

impl Step for MoveVip {
    fn id(&self) -> StepId {
        self.id
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        if self.add {
            "put the writer VIP here (once it is on no other host) and announce it".into()
        } else {
            "take the writer VIP off".into()
        }
    }
    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        let host = ctx.host(&self.host)?;
        let spec = ops::vip::spec(host)?
            .ok_or_else(|| anyhow!("{}: no writer_vip configured", self.host))?;
        let t = host.spec.settings.step_timeout;
        let here = ops::vip::present(host.conn.as_mut(), &spec, t)?;
        // The undo restores what was found; nothing to undo when the step
        // would change nothing.
        Ok((here != self.add).then(|| Undo::Vip {
            host: self.host.clone(),
            add: here,
        }))
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        ops::vip::plan(&ctx.hosts, &self.host, self.add)
    }
    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let t = ctx.host(&self.host)?.spec.settings.step_timeout;
        if self.add {
            let (_, mut others) = ops::read_only::split(&mut ctx.hosts, &self.host)?;
            ops::vip::prove_absent(&mut others, t)?;
        }
        let change = ops::vip::apply(ctx.host(&self.host)?, self.add, t)?;
        Ok(Applied::detail(match (self.add, change) {
            (true, Some(Change::Done)) => "VIP added and announced",
            (true, _) => "VIP was already here; announced",
            (false, Some(Change::Done)) => REMOVED,
            (false, _) => "VIP was already gone",
        }))
    }
}
