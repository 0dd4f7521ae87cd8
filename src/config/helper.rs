//! mha-helper's own settings file (optional), e.g. `/etc/mha-helper.cnf`.
//!
//! MHA refuses unknown keys and sections in its application file, so the helper's settings live in a
//! file of their own, read with the same line reader (same comment rules) as MHA's files. Sections:
//! `[default]`, and one per MHA hostname whose keys override `[default]` for that host. A section for a
//! host the current cluster does not have is only a warning ([`HelperConfig::warn_unknown_hosts`]):
//! one file may serve several clusters. Every setting has a default, so the file may be absent.
//!
//! Values: one pair of matching surrounding quotes is removed from single values; lists of accounts
//! take quotes per part. An empty value unsets an optional setting (so a host section can drop a
//! `[default]` one). Unknown keys and bad values are errors `FILE:LINE: ...` naming the key and what
//! it accepts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ini::{error_at, Ini, Section, ROOT};
use super::mha::{MhaConfig, Server};
use super::value::{parse_seconds, seconds};

/// Name of the section every host starts from.
pub const DEFAULT_SECTION: &str = "default";

/// Every key the helper file accepts.
pub const SETTINGS: &[&str] = &[
    "block_method",
    "grace_period",
    "exclude_accounts",
    "include_accounts",
    "super_read_only",
    "journal_dir",
    "mysql_client",
    "mysql_socket",
    "mysql_host",
    "mysql_defaults_file",
    "step_timeout",
    "undo_timeout",
    "long_transaction_limit",
    "writer_vip",
    "cluster_interface",
    "requires_sudo",
    "requires_arping",
    "shutdown_timeout",
    "power_off_command",
    "power_off_timeout",
];

/// Whether `key` is a setting: one of [`SETTINGS`] or of the `notify_*` group.
fn known_key(key: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .chain(super::notify::KEYS)
        .copied()
        .find(|k| *k == key)
}

/// How application writes are stopped on the old master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockMethod {
    /// Save the accounts' grants and revoke them; restore them on undo.
    Revoke,
    /// `ALTER USER ... ACCOUNT LOCK`; unlock on undo.
    AccountLock,
    /// Only `read_only` (accounts with SUPER / READ_ONLY ADMIN can still write).
    ReadOnlyOnly,
}

/// Whether `super_read_only` is set along with `read_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuperReadOnly {
    /// When the server has the variable.
    Auto,
    On,
    Off,
}

/// A MySQL account `user@host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountName {
    pub user: String,
    pub host: String,
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

impl FromStr for AccountName {
    type Err = String;

    /// `user@host`, split at the last `@`; each part may be quoted with `'`, `"` or `` ` ``; no `@` or
    /// an empty host means host `%`.
    fn from_str(s: &str) -> Result<AccountName, String> {
        let s = s.trim();
        let (user, host) = match s.rfind('@') {
            Some(at) => (&s[..at], &s[at + 1..]),
            None => (s, ""),
        };
        let user = unquote_part(user.trim())?;
        let host = unquote_part(host.trim())?;
        Ok(AccountName {
            user,
            host: if host.is_empty() {
                "%".to_string()
            } else {
                host
            },
        })
    }
}

/// The writer's virtual address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterVip {
    pub address: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for WriterVip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for WriterVip {
    type Err = String;

    fn from_str(s: &str) -> Result<WriterVip, String> {
        let (addr, prefix) = s.split_once('/').ok_or("missing /prefix")?;
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| format!("prefix '{prefix}' is not in 1..={max}"))?;
        Ok(WriterVip { address, prefix })
    }
}

impl Serialize for WriterVip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WriterVip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WriterVip, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The settings that apply to one host (or the defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSettings {
    pub block_method: BlockMethod,
    /// How long connections get to finish before they are killed.
    #[serde(serialize_with = "seconds")]
    pub grace_period: Duration,
    /// Accounts never blocked.
    pub exclude_accounts: Vec<AccountName>,
    /// If not empty, only these accounts are blocked.
    pub include_accounts: Vec<AccountName>,
    pub super_read_only: SuperReadOnly,
    /// The state directory (journal, lock, ...); `None`: `/var/lib/mha-helper`.
    pub journal_dir: Option<PathBuf>,
    /// The client run on the database host.
    /// The client program on the database hosts; None: `mariadb`, else
    /// `mysql`, whichever the host has (MariaDB 11 may have only the first).
    pub mysql_client: Option<String>,
    /// Socket path on the database host (exclusive with `mysql_host`).
    pub mysql_socket: Option<String>,
    /// Host the client connects to on the database host, with MHA's port.
    pub mysql_host: Option<String>,
    /// Option file on the database host.
    pub mysql_defaults_file: Option<String>,
    #[serde(serialize_with = "seconds")]
    pub step_timeout: Duration,
    #[serde(serialize_with = "seconds")]
    pub undo_timeout: Duration,
    /// Preflight refuses a switch while a transaction on the old master is open longer than this.
    #[serde(serialize_with = "seconds")]
    pub long_transaction_limit: Duration,
    pub writer_vip: Option<WriterVip>,
    /// Interface that carries the writer VIP (required with `writer_vip`).
    pub cluster_interface: Option<String>,
    pub requires_sudo: bool,
    pub requires_arping: bool,
    /// `mha-helper shutdown` (MHA's shutdown_script): how long mysqld gets
    /// to stop after SIGTERM before SIGKILL.
    #[serde(serialize_with = "seconds")]
    pub shutdown_timeout: Duration,
    /// Run on the manager when the dead master has no SSH: `{host}`, `{ip}`,
    /// `{port}`, `{ssh_host}` are replaced by shell-quoted values.
    pub power_off_command: Option<String>,
    #[serde(serialize_with = "seconds")]
    pub power_off_timeout: Duration,
    /// Where notifications go (`[default]` only).
    pub notify: super::notify::NotifySettings,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            block_method: BlockMethod::Revoke,
            grace_period: Duration::from_secs(5),
            exclude_accounts: Vec::new(),
            include_accounts: Vec::new(),
            super_read_only: SuperReadOnly::Auto,
            journal_dir: None,
            mysql_client: None,
            mysql_socket: None,
            mysql_host: None,
            mysql_defaults_file: None,
            step_timeout: Duration::from_secs(30),
            undo_timeout: Duration::from_secs(30),
            long_transaction_limit: Duration::from_secs(2),
            writer_vip: None,
            cluster_interface: None,
            requires_sudo: false,
            requires_arping: true,
            shutdown_timeout: Duration::from_secs(20),
            power_off_command: None,
            power_off_timeout: Duration::from_secs(60),
            notify: Default::default(),
        }
    }
}

/// The whole helper file: defaults and per-host settings (already merged over the defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HelperConfig {
    pub path: Option<PathBuf>,
    default: HostSettings,
    per_host: BTreeMap<String, HostSettings>,
}

impl HelperConfig {
    /// Reads the file; `None` gives the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<HelperConfig> {
        let Some(path) = path else {
            return Ok(HelperConfig {
                path: None,
                default: HostSettings::default(),
                per_host: BTreeMap::new(),
            });
        };
        let ini = Ini::read_file(path)?;
        let mut config = HelperConfig::from_ini(&ini)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    fn from_ini(ini: &Ini) -> Result<HelperConfig> {
        if let Some(root) = ini.section(ROOT) {
            let e = &root.entries[0];
            return Err(error_at(
                &ini.origin,
                e.line,
                format!(
                    "setting '{}' outside any section (put it under [{DEFAULT_SECTION}])",
                    e.key
                ),
            ));
        }
        let base = Layer::default();
        let default = match ini.section(DEFAULT_SECTION) {
            Some(section) => base.apply(ini, section)?,
            None => base,
        };
        let mut per_host = BTreeMap::new();
        for section in ini.sections.iter().filter(|s| s.name != DEFAULT_SECTION) {
            let host = default.apply(ini, section)?;
            per_host.insert(section.name.clone(), host.settings);
        }
        Ok(HelperConfig {
            path: None,
            default: default.settings,
            per_host,
        })
    }

    /// Settings for an MHA hostname: its own section, else `[default]`.
    pub fn for_host(&self, hostname: &str) -> &HostSettings {
        self.per_host.get(hostname).unwrap_or(&self.default)
    }

    /// Settings for a server: the section named by its hostname, else its ip, else its block name,
    /// else `[default]`.
    pub fn for_server(&self, server: &Server) -> &HostSettings {
        [&server.hostname, &server.ip, &server.block]
            .into_iter()
            .find_map(|name| self.per_host.get(name.as_str()))
            .unwrap_or(&self.default)
    }

    /// The `[default]` settings.
    pub fn defaults(&self) -> &HostSettings {
        &self.default
    }

    /// Names of the per-host sections.
    pub fn host_sections(&self) -> impl Iterator<Item = &str> {
        self.per_host.keys().map(String::as_str)
    }

    /// Logs a warning for each host section naming no server of `mha`, and returns those names.
    pub fn warn_unknown_hosts(&self, mha: &MhaConfig) -> Vec<String> {
        let unknown: Vec<String> = self
            .per_host
            .keys()
            .filter(|name| mha.server(name).is_none())
            .cloned()
            .collect();
        for name in &unknown {
            log::warn!(
                "{}: section [{name}] names no server of MHA application {}; ignored for it",
                self.path
                    .as_deref()
                    .unwrap_or(Path::new("helper config"))
                    .display(),
                mha.app
            );
        }
        unknown
    }
}

/// Settings plus the line each was last set on (for errors that involve two keys).
#[derive(Debug, Clone, Default)]
struct Layer {
    settings: HostSettings,
    lines: BTreeMap<&'static str, usize>,
}

impl Layer {
    /// This layer with a section's keys applied, checked as a whole.
    fn apply(&self, ini: &Ini, section: &Section) -> Result<Layer> {
        let mut layer = self.clone();
        let mut here = BTreeMap::new();
        for e in &section.entries {
            let key = known_key(&e.key).ok_or_else(|| {
                error_at(
                    &ini.origin,
                    e.line,
                    format!(
                        "unknown setting '{}' in [{}]; known: {}, notify_*",
                        e.key,
                        section.name,
                        SETTINGS.join(", ")
                    ),
                )
            })?;
            if key.starts_with("notify_") && section.name != DEFAULT_SECTION {
                return Err(error_at(
                    &ini.origin,
                    e.line,
                    format!(
                        "{key} in [{}]: notification settings belong in [{DEFAULT_SECTION}]",
                        section.name
                    ),
                ));
            }
            set(&mut layer.settings, key, &e.value).map_err(|fault| {
                error_at(
                    &ini.origin,
                    e.line,
                    format!("{key} = '{}': {fault}", e.value),
                )
            })?;
            layer.lines.insert(key, e.line);
            here.insert(key, e.line);
        }
        // Blame the line in this section when it is involved, else the inherited one.
        let blame = |keys: &[&str]| -> usize {
            let pick = |map: &BTreeMap<&'static str, usize>| {
                keys.iter().filter_map(|k| map.get(k)).max().copied()
            };
            pick(&here)
                .or_else(|| pick(&layer.lines))
                .unwrap_or(section.first_line())
        };
        let s = &layer.settings;
        if s.mysql_socket.is_some() && s.mysql_host.is_some() {
            return Err(error_at(
                &ini.origin,
                blame(&["mysql_socket", "mysql_host"]),
                format!(
                    "mysql_socket and mysql_host are mutually exclusive (both set for [{}]); empty one to unset it",
                    section.name
                ),
            ));
        }
        if let Err((keys, why)) = s.notify.check() {
            return Err(error_at(&ini.origin, blame(keys), why));
        }
        if s.writer_vip.is_some() && s.cluster_interface.is_none() {
            return Err(error_at(
                &ini.origin,
                blame(&["writer_vip", "cluster_interface"]),
                format!(
                    "writer_vip needs cluster_interface (the interface that carries the address) in [{}]",
                    section.name
                ),
            ));
        }
        Ok(layer)
    }
}

/// Sets one setting from its text, or says what is accepted.
fn set(s: &mut HostSettings, key: &str, raw: &str) -> Result<(), String> {
    let value = unquote_value(raw);
    match key {
        "block_method" => {
            s.block_method = match value.to_ascii_lowercase().as_str() {
                "revoke" => BlockMethod::Revoke,
                "account_lock" => BlockMethod::AccountLock,
                "read_only_only" => BlockMethod::ReadOnlyOnly,
                _ => return Err("expected revoke, account_lock or read_only_only".into()),
            }
        }
        "super_read_only" => {
            s.super_read_only = match value.to_ascii_lowercase().as_str() {
                "auto" => SuperReadOnly::Auto,
                "on" => SuperReadOnly::On,
                "off" => SuperReadOnly::Off,
                _ => return Err("expected auto, on or off".into()),
            }
        }
        "grace_period" => s.grace_period = parse_seconds(value, true)?,
        "step_timeout" => s.step_timeout = parse_seconds(value, false)?,
        "undo_timeout" => s.undo_timeout = parse_seconds(value, false)?,
        "long_transaction_limit" => s.long_transaction_limit = parse_seconds(value, true)?,
        "exclude_accounts" => s.exclude_accounts = parse_accounts(raw)?,
        "include_accounts" => s.include_accounts = parse_accounts(raw)?,
        "journal_dir" => s.journal_dir = optional(value, absolute)?.map(PathBuf::from),
        "mysql_client" => {
            s.mysql_client =
                Some(optional(value, any)?.ok_or("expected a path or a command name, e.g. mysql")?)
        }
        "mysql_socket" => s.mysql_socket = optional(value, absolute)?,
        "mysql_host" => s.mysql_host = optional(value, no_blanks)?,
        "mysql_defaults_file" => s.mysql_defaults_file = optional(value, absolute)?,
        "writer_vip" => {
            s.writer_vip = optional(value, any)?
                .map(|v| {
                    v.parse::<WriterVip>().map_err(|e| {
                        format!(
                            "{e}; expected address/prefix, e.g. 192.0.2.10/24 or 2001:db8::10/64"
                        )
                    })
                })
                .transpose()?
        }
        "cluster_interface" => s.cluster_interface = optional(value, interface_name)?,
        "requires_sudo" => s.requires_sudo = parse_bool(value)?,
        "requires_arping" => s.requires_arping = parse_bool(value)?,
        "shutdown_timeout" => s.shutdown_timeout = parse_seconds(value, false)?,
        "power_off_command" => s.power_off_command = optional(value, any)?,
        "power_off_timeout" => s.power_off_timeout = parse_seconds(value, false)?,
        k if k.starts_with("notify_") => s.notify.set(k, value)?,
        _ => unreachable!("key checked against SETTINGS"),
    }
    Ok(())
}

/// One pair of matching surrounding quotes removed.
fn unquote_value(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// Empty means unset; otherwise the value must pass `check`.
fn optional(
    value: &str,
    check: fn(&str) -> Result<&str, String>,
) -> Result<Option<String>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        check(value).map(|v| Some(v.to_string()))
    }
}

fn any(value: &str) -> Result<&str, String> {
    Ok(value)
}

fn absolute(value: &str) -> Result<&str, String> {
    if value.starts_with('/') {
        Ok(value)
    } else {
        Err("expected an absolute path (starting with /), or nothing".into())
    }
}

fn no_blanks(value: &str) -> Result<&str, String> {
    if value.chars().any(char::is_whitespace) {
        Err("expected a host name or address without blanks, e.g. 127.0.0.1".into())
    } else {
        Ok(value)
    }
}

fn interface_name(value: &str) -> Result<&str, String> {
    let ok = value.len() <= 15
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    if ok {
        Ok(value)
    } else {
        Err("expected an interface name of at most 15 characters (letters, digits, _ - . : @), e.g. eth0".into())
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err("expected yes, no, true, false, 1 or 0".into()),
    }
}

/// A comma-separated list of accounts; commas inside quotes do not split; empty items are skipped.
fn parse_accounts(raw: &str) -> Result<Vec<AccountName>, String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in raw.chars() {
        match (quote, c) {
            (None, ',') => items.push(std::mem::take(&mut current)),
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    if quote.is_some() {
        return Err("unbalanced quote; expected a comma-separated list of user@host".into());
    }
    items.push(current);
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.parse::<AccountName>()
                .map_err(|e| format!("'{i}': {e}; expected a comma-separated list of user@host, e.g. app@'10.%', 'root'@'localhost'"))
        })
        .collect()
}

/// A part of `user@host`, with optional matching quotes `'`, `"` or `` ` ``.
fn unquote_part(part: &str) -> Result<String, String> {
    let quotes = ['\'', '"', '`'];
    match part.chars().next() {
        Some(q) if quotes.contains(&q) => {
            if part.len() >= 2 && part.ends_with(q) {
                Ok(part[1..part.len() - 1].to_string())
            } else {
                Err(format!("unbalanced quote in {part}"))
            }
        }
        _ if part.ends_with(quotes) => Err(format!("unbalanced quote in {part}")),
        _ => Ok(part.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    fn load_text(text: &str) -> Result<HelperConfig> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "mha-helper-helpercfg-{}-{n}.cnf",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        let result = HelperConfig::load(Some(&path));
        let _ = std::fs::remove_file(&path);
        result
    }

    fn fails(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    #[test]
    fn notify_settings_load_in_default_only_and_are_checked_together() {
        let c = load_text(
            "[default]\nnotify_webhook_url = https://hooks.example.com/x\nnotify_timeout = 3\n",
        )
        .unwrap();
        assert_eq!(
            c.defaults().notify.webhook_url.as_deref(),
            Some("https://hooks.example.com/x")
        );
        assert_eq!(c.defaults().notify.timeout.as_secs(), 3);
        let e = fails("[default]\n[db1]\nnotify_command = true\n");
        assert!(
            e.contains(":3: notify_command in [db1]: notification settings belong in [default]"),
            "{e}"
        );
        let e =
            fails("[default]\nnotify_smtp_server = smtp.example.com\nnotify_mail_from = a@b.c\n");
        assert!(e.contains(":3: mail needs notify_smtp_server"), "{e}");
        let e = fails("[default]\nnotify_smtp_tls = maybe\n");
        assert!(
            e.contains(":2: notify_smtp_tls = 'maybe': expected starttls, tls or none"),
            "{e}"
        );
    }

    fn acct(user: &str, host: &str) -> AccountName {
        AccountName {
            user: user.into(),
            host: host.into(),
        }
    }

    #[test]
    fn no_file_gives_documented_defaults() {
        let c = HelperConfig::load(None).unwrap();
        let d = c.defaults();
        assert_eq!(d.block_method, BlockMethod::Revoke);
        assert_eq!(d.grace_period, Duration::from_secs(5));
        assert_eq!(d.super_read_only, SuperReadOnly::Auto);
        assert_eq!(d.mysql_client, None);
        assert_eq!(
            (d.step_timeout, d.undo_timeout),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
        assert_eq!(d.long_transaction_limit, Duration::from_secs(2));
        assert!(!d.requires_sudo && d.requires_arping);
        assert_eq!(d.journal_dir, None);
        assert!(d.exclude_accounts.is_empty() && d.include_accounts.is_empty());
        assert_eq!((d.writer_vip, d.cluster_interface.clone()), (None, None));
        assert_eq!(c.for_host("anything"), d);
    }

    #[test]
    fn host_section_overrides_default_for_that_host_only() {
        let c = load_text(
            "[default]\nblock_method = account_lock\ngrace_period = 2.5\nrequires_sudo = yes\n\n[db2]\ngrace_period = 10\nmysql_socket = /run/mysqld/mysqld.sock\n",
        )
        .unwrap();
        let d = c.defaults();
        assert_eq!(d.block_method, BlockMethod::AccountLock);
        assert_eq!(d.grace_period, Duration::from_millis(2500));
        let h = c.for_host("db2");
        assert_eq!(h.block_method, BlockMethod::AccountLock);
        assert!(h.requires_sudo);
        assert_eq!(h.grace_period, Duration::from_secs(10));
        assert_eq!(h.mysql_socket.as_deref(), Some("/run/mysqld/mysqld.sock"));
        assert_eq!(c.for_host("db1"), d);
        assert_eq!(c.host_sections().collect::<Vec<_>>(), ["db2"]);
    }

    #[test]
    fn unknown_setting_is_an_error_listing_known_ones() {
        let e = fails("[default]\n\nblock = revoke\n");
        assert!(
            e.contains("helpercfg")
                && e.contains(".cnf:3: unknown setting 'block' in [default]; known: block_method,"),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_value_names_key_and_accepted_values() {
        let e = fails("[default]\nblock_method = kill\n");
        assert!(
            e.ends_with(
                ":2: block_method = 'kill': expected revoke, account_lock or read_only_only"
            ),
            "{e}"
        );
        let e = fails("[db1]\nsuper_read_only = maybe\n");
        assert!(
            e.ends_with(":2: super_read_only = 'maybe': expected auto, on or off"),
            "{e}"
        );
    }

    #[test]
    fn enum_and_bool_values_ignore_case_and_quotes() {
        let c = load_text("[default]\nblock_method = \"Read_Only_Only\"\nsuper_read_only = ON\nrequires_arping = 'False'\n").unwrap();
        assert_eq!(c.defaults().block_method, BlockMethod::ReadOnlyOnly);
        assert_eq!(c.defaults().super_read_only, SuperReadOnly::On);
        assert!(!c.defaults().requires_arping);
    }

    #[test]
    fn bad_seconds_and_bools_are_errors() {
        for (line, want) in [
            (
                "grace_period = -1",
                "expected a number of seconds, e.g. 5 or 2.5",
            ),
            ("grace_period = 5s", "expected a number of seconds"),
            ("grace_period = 1e3", "expected a number of seconds"),
            ("step_timeout = 0", "expected a number of seconds above 0"),
            ("undo_timeout =", "expected a number of seconds above 0"),
            (
                "requires_sudo = maybe",
                "expected yes, no, true, false, 1 or 0",
            ),
        ] {
            let e = fails(&format!("[default]\n{line}\n"));
            assert!(e.contains(":2: ") && e.contains(want), "{line}: {e}");
        }
        let c = load_text("[default]\ngrace_period = 0\nlong_transaction_limit = 0.25\n").unwrap();
        assert_eq!(c.defaults().grace_period, Duration::ZERO);
        assert_eq!(
            c.defaults().long_transaction_limit,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn account_lists_split_at_last_at_with_optional_quotes() {
        let c = load_text(
            "[default]\nexclude_accounts = root@localhost, 'app'@'10.%', `weird@name`@`h`, \"q,c\"@h2, bare, nohost@,\ninclude_accounts =\n",
        )
        .unwrap();
        assert_eq!(
            c.defaults().exclude_accounts,
            vec![
                acct("root", "localhost"),
                acct("app", "10.%"),
                acct("weird@name", "h"),
                acct("q,c", "h2"),
                acct("bare", "%"),
                acct("nohost", "%"),
            ]
        );
        assert!(c.defaults().include_accounts.is_empty());
    }

    #[test]
    fn unbalanced_account_quote_is_an_error() {
        let e = fails("[default]\ninclude_accounts = 'app@%\n");
        assert!(
            e.contains(":2: include_accounts = ''app@%': unbalanced quote"),
            "{e}"
        );
        let e = fails("[default]\ninclude_accounts = app'@%\n");
        assert!(
            e.contains(":2: include_accounts = 'app'@%': unbalanced quote"),
            "{e}"
        );
        let e = fails("[default]\ninclude_accounts = 'app'x@%\n");
        assert!(e.contains("unbalanced quote in 'app'x"), "{e}");
    }

    #[test]
    fn mysql_socket_and_mysql_host_are_exclusive() {
        let e = fails("[default]\nmysql_socket = /tmp/s\nmysql_host = 127.0.0.1\n");
        assert!(
            e.contains(":3: mysql_socket and mysql_host are mutually exclusive"),
            "{e}"
        );
        // Inherited socket + host section's host: blamed on the host section's line.
        let e = fails("[default]\nmysql_socket = /tmp/s\n[db1]\nmysql_host = 127.0.0.1\n");
        assert!(
            e.contains(
                ":4: mysql_socket and mysql_host are mutually exclusive (both set for [db1])"
            ),
            "{e}"
        );
        // An empty value unsets the inherited one.
        let c = load_text(
            "[default]\nmysql_socket = /tmp/s\n[db1]\nmysql_socket =\nmysql_host = 127.0.0.1\n",
        )
        .unwrap();
        assert_eq!(c.for_host("db1").mysql_socket, None);
        assert_eq!(c.for_host("db1").mysql_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.defaults().mysql_socket.as_deref(), Some("/tmp/s"));
    }

    #[test]
    fn writer_vip_requires_cluster_interface() {
        let e = fails("[default]\nwriter_vip = 192.0.2.10/24\n");
        assert!(e.contains(":2: writer_vip needs cluster_interface"), "{e}");
        let c = load_text("[default]\nwriter_vip = 192.0.2.10/24\ncluster_interface = eth0\n[db1]\nwriter_vip = 2001:db8::10/64\n").unwrap();
        assert_eq!(
            c.defaults().writer_vip.unwrap().to_string(),
            "192.0.2.10/24"
        );
        assert_eq!(
            c.for_host("db1").writer_vip.unwrap().to_string(),
            "2001:db8::10/64"
        );
        assert_eq!(c.for_host("db1").cluster_interface.as_deref(), Some("eth0"));
    }

    #[test]
    fn bad_writer_vip_and_interface_are_errors() {
        for (line, want) in [
            ("writer_vip = 192.0.2.10", "missing /prefix"),
            ("writer_vip = 192.0.2.10/33", "prefix '33' is not in 1..=32"),
            ("writer_vip = vip.example/24", "is not an IP address"),
            (
                "cluster_interface = eth0; rm -rf /",
                "expected an interface name",
            ),
            (
                "cluster_interface = a-very-long-interface-name",
                "at most 15 characters",
            ),
        ] {
            let e = fails(&format!("[default]\ncluster_interface = eth0\n{line}\n"));
            assert!(e.contains(":3: ") && e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn paths_on_hosts_must_be_absolute() {
        let e = fails("[default]\njournal_dir = journals\n");
        assert!(
            e.contains(":2: journal_dir = 'journals': expected an absolute path"),
            "{e}"
        );
        let c = load_text("[default]\njournal_dir = /var/lib/mha-helper\nmysql_defaults_file = \"/etc/mysql/helper.cnf\"\nmysql_client = /usr/bin/mariadb\n").unwrap();
        assert_eq!(
            c.defaults().journal_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/mha-helper"))
        );
        assert_eq!(
            c.defaults().mysql_defaults_file.as_deref(),
            Some("/etc/mysql/helper.cnf")
        );
        assert_eq!(
            c.defaults().mysql_client.as_deref(),
            Some("/usr/bin/mariadb")
        );
        assert!(fails("[default]\nmysql_client =\n")
            .contains("mysql_client = '': expected a path or a command name"));
    }

    #[test]
    fn setting_outside_any_section_is_an_error() {
        let e = fails("grace_period = 1\n[default]\n");
        assert!(
            e.ends_with(":1: setting 'grace_period' outside any section (put it under [default])"),
            "{e}"
        );
    }

    #[test]
    fn helper_file_uses_config_tiny_comment_rules() {
        let c =
            load_text("  # comment\n[default]\nmysql_client = my#sql ; comment\n\r\n; another\n")
                .unwrap();
        assert_eq!(c.defaults().mysql_client.as_deref(), Some("my#sql"));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = HelperConfig::load(Some(Path::new("/nonexistent/helper.cnf"))).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/helper.cnf: cannot read"),
            "{e:#}"
        );
    }

    #[test]
    fn settings_serialize_to_json() {
        let c = load_text("[default]\nwriter_vip = 192.0.2.10/24\ncluster_interface = eth0\nexclude_accounts = a@b\ngrace_period = 1.5\n").unwrap();
        let json = serde_json::to_value(&c).unwrap();
        let d = &json["default"];
        assert_eq!(d["writer_vip"], "192.0.2.10/24");
        assert_eq!(d["grace_period"], 1.5);
        assert_eq!(d["block_method"], "revoke");
        assert_eq!(d["exclude_accounts"][0]["host"], "b");
        assert_eq!(d["journal_dir"], serde_json::Value::Null);
    }

    #[test]
    fn value_types_round_trip_through_json() {
        let vip: WriterVip = "2001:db8::10/64".parse().unwrap();
        let back: WriterVip = serde_json::from_value(serde_json::to_value(vip).unwrap()).unwrap();
        assert_eq!(back, vip);
        let m: BlockMethod = serde_json::from_str("\"account_lock\"").unwrap();
        assert_eq!(m, BlockMethod::AccountLock);
        let s: SuperReadOnly = serde_json::from_str("\"off\"").unwrap();
        assert_eq!(s, SuperReadOnly::Off);
        let a: AccountName = serde_json::from_str(r#"{"user":"u","host":"%"}"#).unwrap();
        assert_eq!(a, acct("u", "%"));
        assert!(serde_json::from_str::<WriterVip>("\"10.0.0.1\"").is_err());
    }

    #[test]
    fn unknown_host_sections_only_warn() {
        let dir = std::env::temp_dir().join(format!(
            "mha-helper-helpercfg-app-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let app = dir.join("app1.cnf");
        std::fs::write(&app, "[server1]\nhostname=127.0.0.1\n").unwrap();
        let mha =
            MhaConfig::load_with_resolver(&app, Some(&dir.join("none")), &|h| Ok(h.to_string()))
                .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let c = load_text("[127.0.0.1]\ngrace_period = 1\n[other-cluster-db]\ngrace_period = 2\n")
            .unwrap();
        assert_eq!(c.warn_unknown_hosts(&mha), ["other-cluster-db"]);
        assert_eq!(
            c.for_server(&mha.servers[0]).grace_period,
            Duration::from_secs(1)
        );
    }
}
