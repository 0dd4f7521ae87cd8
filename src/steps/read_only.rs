//! read_only and super_read_only: set, clear, put back, and read back to be
//! sure. super_read_only is used where the server has it (MySQL 5.7+)
//! unless the helper setting says `off`; MariaDB has only read_only.

use std::time::Duration;

use anyhow::{bail, Result};

use super::{sessions, Ctx, Step, Undo};
use crate::cluster::Host;
use crate::config::helper::SuperReadOnly;
use crate::journal::Journal;
use crate::mysql::{Script, ServerInfo};

/// Opens a server for writes. On MySQL, turning read_only off also turns
/// super_read_only off, so this one statement is right for every flavour and
/// needs no knowledge of the server.
pub const WRITABLE: &str = "SET GLOBAL read_only = 0";

/// The statements that turn read-only on or off on `info`'s server.
pub fn statements(
    host: &str,
    info: &ServerInfo,
    on: bool,
    mode: SuperReadOnly,
) -> Result<Vec<String>> {
    let has_super = info.super_read_only.is_some();
    if !on {
        return Ok(vec![WRITABLE.into()]);
    }
    if mode == SuperReadOnly::On && !has_super {
        bail!(
            "{host}: super_read_only = on, but {} has no super_read_only; use auto or off",
            info.label()
        );
    }
    if has_super && mode != SuperReadOnly::Off {
        Ok(vec!["SET GLOBAL super_read_only = 1".into()])
    } else {
        Ok(vec!["SET GLOBAL read_only = 1".into()])
    }
}

/// Statements that put back a saved state.
pub fn restore_statements(read_only: bool, super_read_only: Option<bool>) -> Vec<String> {
    match (read_only, super_read_only) {
        (_, Some(true)) => vec!["SET GLOBAL super_read_only = 1".into()],
        (false, _) => vec![WRITABLE.into()],
        (true, Some(false)) => vec![
            "SET GLOBAL super_read_only = 0".into(),
            "SET GLOBAL read_only = 1".into(),
        ],
        (true, None) => vec!["SET GLOBAL read_only = 1".into()],
    }
}

/// Run `stmts`, then read read_only back and insist it is `expect`.
fn run_and_verify(
    host: &mut Host,
    stmts: &[String],
    expect: bool,
    timeout: Duration,
) -> Result<()> {
    let mut s = Script::new(timeout);
    for st in stmts {
        s.exec("set read_only", st);
    }
    s.query("check", "SELECT @@GLOBAL.read_only AS read_only");
    let r = host.run_with(&s, timeout)?;
    let now = r.set("check").records().next().map(|r| r.flag("read_only"));
    if now != Some(expect) {
        bail!(
            "{}: read_only reads {:?} after setting it to {}",
            host.name(),
            now,
            u8::from(expect)
        );
    }
    if let Some(info) = host.info.as_mut() {
        info.read_only = expect;
    }
    Ok(())
}

pub fn restore(
    host: &mut Host,
    read_only: bool,
    super_read_only: Option<bool>,
    timeout: Duration,
) -> Result<()> {
    let stmts = restore_statements(read_only, super_read_only);
    run_and_verify(
        host,
        &stmts,
        read_only || super_read_only == Some(true),
        timeout,
    )
}

/// Turn read-only on or off on one host.
pub struct SetReadOnly {
    id: &'static str,
    host: String,
    on: bool,
    mode: SuperReadOnly,
    stmts: Vec<String>,
    /// Also prove the fence in the same round trip (the MHA admin user,
    /// whose sessions are not the application's).
    fence: Option<String>,
}

impl SetReadOnly {
    pub fn new(id: &'static str, host: &str, on: bool, mode: SuperReadOnly) -> SetReadOnly {
        SetReadOnly {
            id,
            host: host.to_string(),
            on,
            mode,
            stmts: Vec::new(),
            fence: None,
        }
    }

    /// After setting read_only, check in the same script that no
    /// application session from before the block is left (see
    /// `sessions::check_fence`).
    pub fn proving_fence(mut self, admin: &str) -> SetReadOnly {
        self.fence = Some(admin.to_string());
        self
    }
}

impl Step for SetReadOnly {
    fn id(&self) -> &'static str {
        self.id
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn what(&self) -> String {
        match &self.fence {
            Some(_) => format!(
                "set read_only={} and prove the fence holds",
                u8::from(self.on)
            ),
            None => format!("set read_only={}", u8::from(self.on)),
        }
    }

    fn prepare(&mut self, ctx: &mut Ctx) -> Result<Option<Undo>> {
        let host = ctx.host(&self.host)?;
        let info = host.info()?;
        self.stmts = statements(&self.host, info, self.on, self.mode)?;
        Ok(Some(Undo::ReadOnly {
            host: self.host.clone(),
            read_only: info.read_only,
            super_read_only: info.super_read_only,
        }))
    }

    fn statements(&self, ctx: &Ctx) -> Vec<String> {
        let mut s = Script::new(Duration::from_secs(1));
        for st in &self.stmts {
            s.exec("set read_only", st);
        }
        s.query("ro", "SELECT @@GLOBAL.read_only AS read_only");
        if let Some(admin) = &self.fence {
            sessions::add_query(&mut s, "sessions", &ctx.app.accounts, admin);
        }
        s.statements().split_off(2)
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let Some(admin) = self.fence.clone() else {
            let host = ctx.host(&self.host)?;
            let t = host.spec.settings.step_timeout;
            run_and_verify(host, &self.stmts, self.on, t)?;
            return Ok(None);
        };
        let accounts = ctx.app.accounts.clone();
        let host = ctx.host(&self.host)?;
        let mut s = Script::new(host.spec.settings.step_timeout);
        for st in &self.stmts {
            s.exec("set read_only", st);
        }
        s.query("ro", "SELECT @@GLOBAL.read_only AS read_only");
        sessions::add_query(&mut s, "sessions", &accounts, &admin);
        let r = host.run(&s)?;
        if let Some(info) = host.info.as_mut() {
            info.read_only = true;
        }
        sessions::check_fence(ctx, &self.host, &r).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::Flavor;

    fn info(super_ro: Option<bool>) -> ServerInfo {
        ServerInfo {
            flavor: if super_ro.is_some() {
                Flavor::MySql
            } else {
                Flavor::MariaDb
            },
            version: "x".into(),
            version_number: (10, 11, 0),
            server_id: 1,
            read_only: false,
            super_read_only: super_ro,
            log_bin: true,
            connection_id: 1,
            current_user: "mha@%".into(),
            replica: None,
        }
    }

    #[test]
    fn mariadb_uses_plain_read_only() {
        let i = info(None);
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL read_only = 1"]
        );
        assert_eq!(
            statements("db1", &i, false, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL read_only = 0"]
        );
        assert!(statements("db1", &i, true, SuperReadOnly::On).is_err());
    }

    #[test]
    fn mysql_uses_super_read_only_unless_off() {
        let i = info(Some(false));
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL super_read_only = 1"]
        );
        assert_eq!(
            statements("db1", &i, true, SuperReadOnly::Off).unwrap(),
            vec!["SET GLOBAL read_only = 1"]
        );
        // read_only=0 clears super_read_only too on MySQL
        assert_eq!(
            statements("db1", &i, false, SuperReadOnly::Auto).unwrap(),
            vec![WRITABLE]
        );
    }

    #[test]
    fn restore_puts_back_each_saved_combination() {
        assert_eq!(
            restore_statements(true, None),
            vec!["SET GLOBAL read_only = 1"]
        );
        assert_eq!(restore_statements(false, None), vec![WRITABLE]);
        assert_eq!(
            restore_statements(true, Some(true)),
            vec!["SET GLOBAL super_read_only = 1"]
        );
        assert_eq!(restore_statements(false, Some(false)), vec![WRITABLE]);
        assert_eq!(
            restore_statements(true, Some(false)),
            vec!["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 1"]
        );
    }
}
