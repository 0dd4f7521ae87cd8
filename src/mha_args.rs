//! The arguments MHA 0.58 passes to `master_ip_failover_script` and
//! `master_ip_online_change_script`.
//!
//! MHA builds `<configured value> --name=value ...` and runs it with
//! `/bin/sh -c`. Any argument may be missing or empty, unknown ones must be
//! tolerated (newer MHA versions add some), `--orig_master_is_new_slave` is
//! a bare flag, and MySQL user and password values arrive shell-escaped
//! inside single quotes: a backslash before each special character. This
//! module turns that back into plain values.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookArgs {
    values: BTreeMap<String, Option<String>>,
    /// Words that were not `--name[=value]`, kept for a warning.
    pub stray: Vec<String>,
}

/// MHA escapes the MySQL user and password (not the SSH user).
fn is_escaped(name: &str) -> bool {
    name.ends_with("_password") || (name.ends_with("_user") && !name.ends_with("ssh_user"))
}

/// Undo MHA's `escape_for_shell` as seen after the shell: drop one
/// backslash and keep the next character as it is.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// A value as [`unescape`] reads it back: every backslash doubled (what
/// MHA's escaping leaves after the shell, for a value we pass ourselves).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
}

impl HookArgs {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> HookArgs {
        let mut h = HookArgs::default();
        for a in args {
            let a = a.as_ref();
            let Some(body) = a.strip_prefix("--") else {
                h.stray.push(a.to_string());
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let value = value.map(|v| if is_escaped(&name) { unescape(&v) } else { v });
            h.values.insert(name, value);
        }
        h
    }

    /// The value of `--name=...` (Some("") when given empty, None when
    /// absent or a bare flag).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.as_deref())
    }

    /// A non-empty value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn require(&self, name: &str) -> Result<&str> {
        match self.value(name) {
            Some(v) => Ok(v),
            None => bail!("missing --{name}= (MHA passes it in this phase; is the hook configured for the right script?)"),
        }
    }

    pub fn port(&self, name: &str) -> Result<Option<u16>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => bail!("--{name}={v} is not a port number"),
            },
        }
    }

    /// The arguments as text with passwords replaced, for logs.
    pub fn redacted(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| match v {
                None => format!("--{k}"),
                Some(_) if k.ends_with("password") => format!("--{k}=xxx"),
                Some(v) => format!("--{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One master as MHA names it to a hook: its host (as in the MHA file),
/// and the MySQL account MHA passes for it (None: not passed; Some(""):
/// passed empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MasterArg {
    pub host: String,
    pub ip: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl HookArgs {
    /// `--<who>_master_host` and its companions, when the host is there.
    fn master(&self, who: &str) -> Option<MasterArg> {
        let host = self.value(&format!("{who}_master_host"))?;
        Some(MasterArg {
            host: host.to_string(),
            ip: self.value(&format!("{who}_master_ip")).map(String::from),
            user: self.get(&format!("{who}_master_user")).map(String::from),
            password: self
                .get(&format!("{who}_master_password"))
                .map(String::from),
        })
    }

    fn required_master(&self, who: &str) -> Result<MasterArg> {
        match self.master(who) {
            Some(m) => Ok(m),
            None => bail!(
                "missing --{who}_master_host= (MHA passes it in this phase; is the hook configured \
                 for the right script?)"
            ),
        }
    }
}

/// What MHA passes to `master_ip_online_change_script` (both phases).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineArgs {
    pub command: String,
    pub orig: MasterArg,
    pub new: MasterArg,
    /// `--orig_master_is_new_slave`: the old master is to replicate from
    /// the new one.
    pub orig_is_new_slave: bool,
}

impl OnlineArgs {
    pub fn from(a: &HookArgs) -> Result<OnlineArgs> {
        Ok(OnlineArgs {
            command: a.require("command")?.to_string(),
            orig: a.required_master("orig")?,
            new: a.required_master("new")?,
            orig_is_new_slave: a.flag("orig_master_is_new_slave"),
        })
    }
}

/// What MHA passes to `master_ip_failover_script`: the dead master in
/// every phase, the new one in `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverArgs {
    pub command: String,
    pub orig: Option<MasterArg>,
    pub new: Option<MasterArg>,
}

impl FailoverArgs {
    pub fn from(a: &HookArgs) -> Result<FailoverArgs> {
        Ok(FailoverArgs {
            command: a.require("command")?.to_string(),
            orig: a.master("orig"),
            new: a.master("new"),
        })
    }

    /// The dead master (status, stop and stopssh need it).
    pub fn dead_master(&self) -> Result<&MasterArg> {
        match &self.orig {
            Some(m) => Ok(m),
            None => bail!("missing --orig_master_host= (MHA passes it in this phase)"),
        }
    }

    /// The new master (start needs it).
    pub fn new_master(&self) -> Result<&MasterArg> {
        match &self.new {
            Some(m) => Ok(m),
            None => bail!("missing --new_master_host= (MHA passes it in start)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// argv of the online `stop` call captured from MHA 0.58
    /// (shared/mha-hook-argv/03-online_switch.master_ip_online_change.log).
    const ONLINE_STOP: &[&str] = &[
        "--command=stop",
        "--orig_master_host=db1",
        "--orig_master_ip=198.51.100.11",
        "--orig_master_port=3306",
        "--orig_master_user=mha",
        "--new_master_host=db2",
        "--new_master_ip=198.51.100.12",
        "--new_master_port=3306",
        "--new_master_user=mha",
        "--orig_master_ssh_user=mha",
        "--new_master_ssh_user=mha",
        "--ssh_options=-o ServerAliveInterval=60 -o ServerAliveCountMax=20 -o StrictHostKeyChecking=no -o ConnectionAttempts=5 -o PasswordAuthentication=no -o BatchMode=yes -i /home/mha/.ssh/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=/home/mha/.ssh/known_hosts -o StrictHostKeyChecking=yes",
        "--orig_master_is_new_slave",
        "--orig_master_password=mha-Admin-Lab-1",
        "--new_master_password=mha-Admin-Lab-1",
    ];

    #[test]
    fn captured_online_stop_call_reads_as_typed_arguments() {
        let a = OnlineArgs::from(&HookArgs::parse(ONLINE_STOP)).unwrap();
        assert_eq!(a.command, "stop");
        assert_eq!(a.orig.host, "db1");
        assert_eq!(a.orig.ip.as_deref(), Some("198.51.100.11"));
        assert_eq!(a.new.user.as_deref(), Some("mha"));
        assert_eq!(a.new.password.as_deref(), Some("mha-Admin-Lab-1"));
        assert!(a.orig_is_new_slave);
        let missing = HookArgs::parse(&["--command=stop", "--orig_master_host=db1"]);
        let e = OnlineArgs::from(&missing).unwrap_err().to_string();
        assert!(e.contains("--new_master_host="), "{e}");
        let f = FailoverArgs::from(&HookArgs::parse(&[
            "--command=stop",
            "--orig_master_host=db1",
        ]))
        .unwrap();
        assert_eq!(f.dead_master().unwrap().host, "db1");
        assert!(f.new_master().is_err());
    }

    #[test]
    fn captured_online_stop_call_is_read_whole() {
        let a = HookArgs::parse(ONLINE_STOP);
        assert_eq!(a.get("command"), Some("stop"));
        assert_eq!(a.get("orig_master_host"), Some("db1"));
        assert_eq!(a.port("new_master_port").unwrap(), Some(3306));
        assert!(a.flag("orig_master_is_new_slave"));
        assert_eq!(a.get("new_master_password"), Some("mha-Admin-Lab-1"));
        assert!(a
            .get("ssh_options")
            .unwrap()
            .starts_with("-o ServerAliveInterval=60"));
        assert!(a.stray.is_empty());
    }

    #[test]
    fn captured_dead_master_stop_has_no_ssh_user() {
        let a = HookArgs::parse(&[
            "--orig_master_host=db1",
            "--orig_master_ip=198.51.100.11",
            "--orig_master_port=3306",
            "--command=stop",
            "--ssh_options=-o StrictHostKeyChecking=no -o ConnectTimeout=5",
        ]);
        assert_eq!(a.get("command"), Some("stop"));
        assert_eq!(a.get("ssh_user"), None);
        assert!(a.require("ssh_user").is_err());
    }

    #[test]
    fn mha_escaping_of_password_and_user_is_undone() {
        // password `pa$$ w'o"rd\` as MHA's escape_for_shell sends it, after sh
        let a = HookArgs::parse(&[
            "--new_master_password=pa\\$\\$\\ w'o\\\"rd\\\\",
            "--new_master_user=a\\ b",
            "--ssh_user=plain\\x",
        ]);
        assert_eq!(a.get("new_master_password"), Some("pa$$ w'o\"rd\\"));
        assert_eq!(a.get("new_master_user"), Some("a b"));
        assert_eq!(
            a.get("ssh_user"),
            Some("plain\\x"),
            "ssh_user is not escaped by MHA"
        );
    }

    #[test]
    fn empty_values_unknown_options_and_stray_words_are_tolerated() {
        let a = HookArgs::parse(&[
            "--new_master_password=",
            "--some_future_option=1",
            "stray",
            "--bare",
        ]);
        assert_eq!(a.get("new_master_password"), Some(""));
        assert_eq!(a.value("new_master_password"), None);
        assert_eq!(a.get("some_future_option"), Some("1"));
        assert!(a.flag("bare"));
        assert_eq!(a.stray, vec!["stray"]);
    }

    #[test]
    fn redacted_hides_passwords() {
        let a = HookArgs::parse(ONLINE_STOP);
        let r = a.redacted();
        assert!(!r.contains("mha-Admin-Lab-1"));
        assert!(r.contains("--orig_master_password=xxx"));
    }

    #[test]
    fn bad_port_is_an_error() {
        let a = HookArgs::parse(&["--orig_master_port=x"]);
        assert!(a.port("orig_master_port").is_err());
    }
}
