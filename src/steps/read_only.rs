//! read_only and super_read_only: set, clear, put back, and read back to be
//! sure. super_read_only is used where the server has it (MySQL 5.7+)
//! unless the helper setting says `off`; MariaDB has only read_only.

use std::time::Duration;

use anyhow::{bail, Result};

use super::{Ctx, Step, Undo};
use crate::cluster::Host;
use crate::config::helper::SuperReadOnly;
use crate::journal::Journal;
use crate::mysql::{Script, ServerInfo};

/// The statements that turn read-only on or off on `info`'s server.
pub fn statements(
    host: &str,
    info: &ServerInfo,
    on: bool,
    mode: SuperReadOnly,
) -> Result<Vec<String>> {
    let has_super = info.super_read_only.is_some();
    if on {
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
    } else if has_super {
        Ok(vec![
            "SET GLOBAL super_read_only = 0".into(),
            "SET GLOBAL read_only = 0".into(),
        ])
    } else {
        Ok(vec!["SET GLOBAL read_only = 0".into()])
    }
}

/// Statements that put back a saved state.
pub fn restore_statements(read_only: bool, super_read_only: Option<bool>) -> Vec<String> {
    match super_read_only {
        Some(true) => vec!["SET GLOBAL super_read_only = 1".into()],
        Some(false) => vec![
            "SET GLOBAL super_read_only = 0".into(),
            format!("SET GLOBAL read_only = {}", u8::from(read_only)),
        ],
        None => vec![format!("SET GLOBAL read_only = {}", u8::from(read_only))],
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
}

impl SetReadOnly {
    pub fn new(id: &'static str, host: &str, on: bool, mode: SuperReadOnly) -> SetReadOnly {
        SetReadOnly {
            id,
            host: host.to_string(),
            on,
            mode,
            stmts: Vec::new(),
        }
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
        format!("set read_only={}", u8::from(self.on))
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

    fn statements(&self, _ctx: &Ctx) -> Vec<String> {
        self.stmts.iter().map(|s| format!("{s};")).collect()
    }

    fn apply(&mut self, ctx: &mut Ctx, _journal: &mut Journal) -> Result<Option<String>> {
        let host = ctx.host(&self.host)?;
        let t = host.spec.settings.step_timeout;
        run_and_verify(host, &self.stmts, self.on, t)?;
        Ok(None)
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
        assert_eq!(
            statements("db1", &i, false, SuperReadOnly::Auto).unwrap(),
            vec!["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"]
        );
    }

    #[test]
    fn restore_puts_back_each_saved_combination() {
        assert_eq!(
            restore_statements(true, None),
            vec!["SET GLOBAL read_only = 1"]
        );
        assert_eq!(
            restore_statements(true, Some(true)),
            vec!["SET GLOBAL super_read_only = 1"]
        );
        assert_eq!(
            restore_statements(false, Some(false)),
            vec!["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"]
        );
    }
}
