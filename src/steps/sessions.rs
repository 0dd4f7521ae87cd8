//! The application's sessions on the old master: wait for them to end
//! (polling the processlist, at most 100 ms apart, up to the grace period),
//! kill those left, and prove the fence holds.
//!
//! Never touched: our own session, replication threads (`Binlog Dump`,
//! `Binlog Dump GTID`), `system user`, `event_scheduler` and the MHA
//! account, because only sessions of application users are selected.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{Ctx, Step, Undo};
use crate::grants::{self, Account};
use crate::journal::Journal;
use crate::mysql::{Flavor, Results, Script};
use crate::quote::sql_string;
use crate::report::Session;

const POLL_EVERY: Duration = Duration::from_millis(50);

/// Add a query named `name` listing application sessions.
pub fn add_query(script: &mut Script, name: &str, accounts: &[Account], admin_user: &str) {
    script.query(
        name,
        &format!(
            "SELECT ID AS id, USER AS user, HOST AS host, DB AS db, DB IS NULL AS db_null, \
             COMMAND AS command, TIME AS time, STATE AS state \
             FROM information_schema.PROCESSLIST \
             WHERE USER IN {} AND ID <> CONNECTION_ID() AND USER <> {} \
             AND USER NOT IN ('system user', 'event_scheduler') \
             AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon') ORDER BY ID",
            grants::user_list(accounts),
            sql_string(admin_user)
        ),
    );
}

pub fn parse(r: &Results, name: &str) -> Vec<Session> {
    r.set(name)
        .records()
        .map(|rec| Session {
            id: rec.num("id") as u64,
            user: rec.text("user"),
            host: rec.text("host"),
            db: (!rec.flag("db_null")).then(|| rec.text("db")),
            command: rec.text("command"),
            time: rec.num("time"),
            state: rec.get("state").map(str::to_string),
        })
        .collect()
}

fn poll(ctx: &mut Ctx, host: &str, admin: &str) -> Result<Vec<Session>> {
    let accounts = ctx.app.accounts.clone();
    let h = ctx.host(host)?;
    let mut s = Script::new(h.spec.settings.step_timeout);
    add_query(&mut s, "sessions", &accounts, admin);
    Ok(parse(&h.run(&s)?, "sessions"))
}

/// Wait up to the grace period for application sessions to end.
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

impl Step for DrainSessions {
    fn id(&self) -> &'static str {
        "drain-sessions"
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        format!(
            "wait up to {:.1} s for the application sessions open at the block to end (polling every {} ms)",
            self.grace.as_secs_f64(),
            POLL_EVERY.as_millis()
        )
    }
    fn prepare(&mut self, _ctx: &mut Ctx) -> Result<Option<Undo>> {
        Ok(None)
    }
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        let mut s = Script::new(Duration::from_secs(1));
        add_query(&mut s, "sessions", &ctx.app.accounts, &self.admin);
        s.statements().split_off(2)
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let deadline = Instant::now() + self.grace;
        let watermark = ctx.app.watermark;
        // Only sessions from before the block can be doing work worth
        // waiting for; an application that reconnects in a loop (through a
        // VIP, say) logs in with no rights and must not hold the drain.
        let pending = |ctx: &Ctx| ctx.app.remaining.iter().any(|s| s.id <= watermark);
        let at_start = ctx
            .app
            .remaining
            .iter()
            .filter(|s| s.id <= watermark)
            .count();
        let mut polls = 0;
        while pending(ctx) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(POLL_EVERY.min(deadline - now));
            ctx.app.remaining = poll(ctx, &self.host, &self.admin)?;
            polls += 1;
        }
        let left = ctx
            .app
            .remaining
            .iter()
            .filter(|s| s.id <= watermark)
            .count();
        Ok(Some(format!(
            "{at_start} open at the block, {left} of them left after {polls} poll(s)"
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

    /// MariaDB kills by user name (no race with sessions ending on their
    /// own); MySQL by id.
    fn kill_statements(flavor: Flavor, accounts: &[Account], left: &[Session]) -> Vec<String> {
        match flavor {
            Flavor::MariaDb => {
                let mut users: Vec<&str> = left.iter().map(|s| s.user.as_str()).collect();
                users.sort_unstable();
                users.dedup();
                users
                    .into_iter()
                    .filter(|u| accounts.iter().any(|a| a.user == *u))
                    .map(|u| format!("KILL USER {}", sql_string(u)))
                    .collect()
            }
            Flavor::MySql => left
                .iter()
                .map(|s| format!("KILL CONNECTION {}", s.id))
                .collect(),
        }
    }
}

impl Step for KillSessions {
    fn id(&self) -> &'static str {
        "kill-sessions"
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
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        let flavor = ctx
            .hosts
            .iter()
            .find(|h| h.spec.name == self.host)
            .and_then(|h| h.info.as_ref())
            .map(|i| i.flavor)
            .unwrap_or(Flavor::MariaDb);
        let left = if ctx.app.remaining.is_empty() {
            // Dry run: show what would happen to every application user.
            ctx.app
                .accounts
                .iter()
                .map(|a| Session {
                    id: 0,
                    user: a.user.clone(),
                    host: String::new(),
                    db: None,
                    command: String::new(),
                    time: 0,
                    state: None,
                })
                .collect()
        } else {
            ctx.app.remaining.clone()
        };
        Self::kill_statements(flavor, &ctx.app.accounts, &left)
            .into_iter()
            .map(|s| format!("{s};  -- only if still connected at the deadline"))
            .collect()
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let mut killed_total = Vec::new();
        for _attempt in 0..5 {
            if ctx.app.remaining.is_empty() {
                break;
            }
            let left = std::mem::take(&mut ctx.app.remaining);
            let accounts = ctx.app.accounts.clone();
            let h = ctx.host(&self.host)?;
            let flavor = h.info()?.flavor;
            let mut s = Script::new(h.spec.settings.step_timeout);
            for k in Self::kill_statements(flavor, &accounts, &left) {
                s.exec("kill session", &k);
            }
            add_query(&mut s, "sessions", &accounts, &self.admin);
            match h.run(&s) {
                Ok(r) => {
                    let still = parse(&r, "sessions");
                    killed_total.extend(
                        left.into_iter()
                            .filter(|l| !still.iter().any(|s| s.id == l.id)),
                    );
                    ctx.app.remaining = still;
                }
                Err(e) => {
                    // A session that ended by itself between poll and KILL
                    // gives "Unknown thread id" (1094): look again.
                    let benign = e.downcast_ref::<crate::mysql::Error>().is_some_and(|m| {
                        m.kind == crate::mysql::ErrorKind::Statement { code: 1094 }
                    });
                    if !benign {
                        return Err(e);
                    }
                    ctx.app.remaining = poll(ctx, &self.host, &self.admin)?;
                    killed_total.extend(
                        left.into_iter()
                            .filter(|l| !ctx.app.remaining.iter().any(|s| s.id == l.id)),
                    );
                }
            }
        }
        let n = killed_total.len();
        ctx.report.killed_sessions.extend(killed_total);
        Ok(Some(format!("{n} session(s) killed")))
    }
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
    fn id(&self) -> &'static str {
        "verify-fence"
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
    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        fence_script(&ctx.app.accounts, &self.admin, Duration::from_secs(1))
            .statements()
            .split_off(2)
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let accounts = ctx.app.accounts.clone();
        let h = ctx.host(&self.host)?;
        let r = h.run(&fence_script(
            &accounts,
            &self.admin,
            h.spec.settings.step_timeout,
        ))?;
        check_fence(ctx, &self.host, &r).map(Some)
    }
}

/// The queries [`check_fence`] reads.
fn fence_script(accounts: &[Account], admin: &str, timeout: Duration) -> Script {
    let mut s = Script::new(timeout);
    s.query("ro", "SELECT @@GLOBAL.read_only AS read_only");
    add_query(&mut s, "sessions", accounts, admin);
    s
}

/// The fence holds when read_only reads 1 (result set `ro`) and no
/// application session from before the block is left (result set
/// `sessions`); newer sessions logged in without write rights and are only
/// reported.
pub fn check_fence(ctx: &mut Ctx, host: &str, r: &Results) -> Result<String> {
    let ro = r
        .set("ro")
        .records()
        .next()
        .is_some_and(|r| r.flag("read_only"));
    let sessions = parse(r, "sessions");
    let watermark = ctx.app.watermark;
    let old: Vec<&Session> = sessions.iter().filter(|s| s.id <= watermark).collect();
    if !ro {
        bail!("{host}: read_only is off after it was set");
    }
    if !old.is_empty() {
        bail!(
            "{host}: {} application session(s) from before the block are still connected (ids {:?})",
            old.len(),
            old.iter().map(|s| s.id).collect::<Vec<_>>()
        );
    }
    let newer = sessions.len();
    if newer > 0 {
        ctx.report.warn(format!(
            "{host}: {newer} application session(s) logged in after the block; they have no write rights"
        ));
    }
    Ok(format!(
        "fence holds: read_only=1, 0 pre-block sessions, {newer} newer"
    ))
}
