//! Steps on the application's sessions on the old master: wait for them to
//! end (polling the processlist every 50 ms, up to the grace period), kill
//! those left, and prove the fence holds (see `ops::sessions`).

use crate::step_id::StepId;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Applied, Ctx, Step, Undo};
use crate::listing::{at_run, Planned};
use crate::ops::sessions;
use crate::report::{Session, SessionsAtBlock};
use crate::state::journal::Journal;

const POLL_EVERY: Duration = Duration::from_millis(50);

/// End the application sessions open at the block that are idle (no
/// statement, no open transaction) at once, and wait up to the grace
/// period for those with work in flight to end.
pub struct DrainSessions {
    host: String,
    admin: String,
    grace: Duration,
}

impl DrainSessions {
    pub fn new(host: &str, admin: &str, grace: Duration) -> DrainSessions {
        DrainSessions {
            host: host.to_string(),
            admin: admin.to_string(),
            grace,
        }
    }
}

/// The sessions of `remaining` from before the block (id up to
/// `watermark`): only those can be doing work worth waiting for; an
/// application that reconnects in a loop (through a VIP, say) logs in with
/// no rights and must not hold the drain.
fn pre_block(remaining: &[Session], watermark: u64) -> impl Iterator<Item = &Session> {
    remaining.iter().filter(move |s| s.id <= watermark)
}

impl Step for DrainSessions {
    fn id(&self) -> StepId {
        StepId::DrainSessions
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        format!(
            "end the idle application sessions open at the block, and wait up to {:.1} s for \
             those with work in flight (polling every {} ms)",
            self.grace.as_secs_f64(),
            POLL_EVERY.as_millis()
        )
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        let id = at_run("id of an idle session");
        let idle =
            sessions::end_idle_script(&ctx.app.accounts, &self.admin, std::slice::from_ref(&id), t);
        let when = format!(
            "every {} ms while sessions from before the block remain, up to {:.1} s",
            POLL_EVERY.as_millis(),
            self.grace.as_secs_f64()
        );
        let s = sessions::list_script(&ctx.app.accounts, &self.admin, t);
        vec![
            Planned::repeated(
                &self.host,
                &idle,
                "at once, and after a poll, while sessions from before the block are idle",
            )
            .each(&id, "per idle session"),
            Planned::repeated(&self.host, &s, &when),
            Planned::repeated(
                &self.host,
                &s,
                "listed again if an idle session ended by itself before its KILL",
            ),
        ]
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let deadline = Instant::now() + self.grace;
        let watermark = ctx.app.watermark;
        let accounts = ctx.app.accounts.clone();
        let open = pre_block(&ctx.app.remaining, watermark).count();
        let idle = pre_block(&ctx.app.remaining, watermark)
            .filter(|s| s.idle)
            .count();
        let busy = open - idle;
        ctx.report.sessions_at_block = Some(SessionsAtBlock { idle, busy });
        let (mut ended, mut polls) = (0, 0);
        loop {
            let idle: Vec<Session> = pre_block(&ctx.app.remaining, watermark)
                .filter(|s| s.idle)
                .cloned()
                .collect();
            if !idle.is_empty() {
                let (gone, now) =
                    sessions::end_idle(ctx.host(&self.host)?, &accounts, &self.admin, idle)?;
                ended += gone.len();
                ctx.report.killed_sessions.extend(gone);
                ctx.app.remaining = now;
            }
            let now = Instant::now();
            if pre_block(&ctx.app.remaining, watermark).next().is_none() || now >= deadline {
                break;
            }
            std::thread::sleep(POLL_EVERY.min(deadline - now));
            ctx.app.remaining = sessions::list(ctx.host(&self.host)?, &accounts, &self.admin)?;
            polls += 1;
        }
        Ok(Applied::detail(format!(
            "{open} open at the block ({idle} idle, {busy} with work in flight); {ended} ended \
             while idle; {} left after {polls} poll(s)",
            pre_block(&ctx.app.remaining, watermark).count()
        )))
    }
}

/// Kill the application sessions still there.
pub struct KillSessions {
    host: String,
    admin: String,
}

impl KillSessions {
    pub fn new(host: &str, admin: &str) -> KillSessions {
        KillSessions {
            host: host.to_string(),
            admin: admin.to_string(),
        }
    }
}

impl Step for KillSessions {
    fn id(&self) -> StepId {
        StepId::KillSessions
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        "kill the application sessions left after the grace period".into()
    }
    fn reversible(&self) -> bool {
        false
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let flavor = ctx
            .find(&self.host)
            .and_then(|h| h.info.as_ref())
            .map_or(crate::mysql::Flavor::MariaDb, |i| i.flavor);
        let when = format!(
            "up to {} rounds while application sessions remain after the grace period",
            sessions::KILL_ROUNDS
        );
        sessions::kill_plan(
            &self.host,
            flavor,
            &ctx.app.accounts,
            &self.admin,
            super::step_timeout(ctx, &self.host),
            &when,
        )
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let left = std::mem::take(&mut ctx.app.remaining);
        let accounts = ctx.app.accounts.clone();
        let (killed, still) = sessions::kill(ctx.host(&self.host)?, &accounts, &self.admin, left)?;
        ctx.app.remaining = still;
        let n = killed.len();
        ctx.report.killed_sessions.extend(killed);
        Ok(Applied::detail(format!("{n} session(s) killed")))
    }
}

/// What [`prove_fence`] may send after the fence was read: the kill of a
/// pre-block session that appeared late, and the fence read again.
pub fn fence_plan(ctx: &Ctx, host: &str, admin: &str) -> Vec<Planned> {
    let t = super::step_timeout(ctx, host);
    let flavor = ctx
        .find(host)
        .and_then(|h| h.info.as_ref())
        .map_or(crate::mysql::Flavor::MariaDb, |i| i.flavor);
    let late = "only if a session from before the block appears after the kill (it was still \
                logging in)";
    let mut v = sessions::kill_plan(host, flavor, &ctx.app.accounts, admin, t, late);
    v.push(Planned::repeated(
        host,
        &sessions::fence_script(&ctx.app.accounts, admin, t),
        "read again after such a kill",
    ));
    v
}

/// The fence holds (see `ops::sessions::check_fence`); newer sessions are
/// a warning in the report. Returns the step's detail line.
///
/// A connection that was still logging in when the drain and the kill
/// listed sessions (its id from before the block, its user not yet known
/// to the server) appears only now. It predates the block, so it is
/// killed like the others and the fence is read again; only a session
/// that survives that fails the step.
pub fn prove_fence(
    ctx: &mut Ctx,
    host: &str,
    r: &crate::mysql::Results,
    watermark: u64,
    admin: &str,
) -> Result<String> {
    let stragglers = sessions::pre_block(r, watermark);
    let again;
    let r = if stragglers.is_empty() {
        r
    } else {
        let accounts = ctx.app.accounts.clone();
        let h = ctx.host(host)?;
        let (killed, _) = sessions::kill(h, &accounts, admin, stragglers)?;
        let t = h.spec.settings.step_timeout;
        again = h.run(&sessions::fence_script(&accounts, admin, t))?;
        ctx.report.warn(format!(
            "{host}: {} session(s) from before the block appeared after the kill (still \
             logging in then); killed",
            killed.len()
        ));
        ctx.report.killed_sessions.extend(killed);
        &again
    };
    let newer = sessions::check_fence(host, r, watermark)?;
    if newer > 0 {
        ctx.report.warn(format!(
            "{host}: {newer} application session(s) logged in after the block; they have no write rights"
        ));
    }
    Ok(format!(
        "fence holds: read_only=1, 0 pre-block sessions, {newer} newer"
    ))
}

/// Prove the fence: read_only is on and no application session that was
/// connected before the block is still there.
pub struct VerifyFence {
    host: String,
    admin: String,
}

impl VerifyFence {
    pub fn new(host: &str, admin: &str) -> VerifyFence {
        VerifyFence {
            host: host.to_string(),
            admin: admin.to_string(),
        }
    }
}

impl Step for VerifyFence {
    fn id(&self) -> StepId {
        StepId::VerifyFence
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        "check read_only is on and no pre-block application session is left".into()
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn scripts(&self, ctx: &Ctx) -> Vec<Planned> {
        let t = super::step_timeout(ctx, &self.host);
        let mut v = vec![Planned::once(
            &self.host,
            &sessions::fence_script(&ctx.app.accounts, &self.admin, t),
        )];
        v.extend(fence_plan(ctx, &self.host, &self.admin));
        v
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &Journal) -> Result<Applied> {
        let accounts = ctx.app.accounts.clone();
        let watermark = ctx.app.watermark;
        let h = ctx.host(&self.host)?;
        let t = h.spec.settings.step_timeout;
        let r = h.run(&sessions::fence_script(&accounts, &self.admin, t))?;
        super::sessions::prove_fence(ctx, &self.host, &r, watermark, &self.admin)
            .map(Applied::detail)
    }
}
