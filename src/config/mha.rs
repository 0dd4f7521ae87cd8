//! The MHA application file (`app1.cnf`), resolved exactly as MHA 0.58's `MHA::Config` resolves it.
//!
//! The hooks must see the same cluster MHA sees: the same servers in the same order, the same
//! inherited users and passwords, the same ssh options. So this module repeats `read_config` and
//! `parse_server` step by step, including their odd corners (each is pinned by a test):
//!
//! - Only the `[server default]` of the global file (`/etc/masterha_default.cnf`) is used; its other
//!   sections are ignored. A missing global file is skipped, even when named explicitly.
//! - Inheritance: global default -> app `[server default]` -> `init_conf_load_script` output -> each
//!   block. `hostname`, `ip`, `node_label`, `ssh_host`, `ssh_ip`, `ssh_options`, `candidate_master`,
//!   `no_master`, `ignore_fail` and `skip_init_ssh_check` are never inherited.
//! - Some defaults apply when the inherited value is empty or `0` (`port`, `ssh_port`, `user`,
//!   `ssh_user`, `log_level`, `ssh_connection_timeout`, `manager_workdir`, `remote_workdir`,
//!   `master_binlog_dir`), others only when nothing is set at all (`password`, the flags); a value
//!   written in the block itself is always kept as written, even empty.
//! - After resolution every value that is neither empty nor `0` loses a trailing quote and then one
//!   leading quote (`s/^['"]?(.*)['"]$/$1/`) — at every level, so inherited values are stripped again.
//!   `ssh_options` loses every quote character; `master_binlog_dir` loses every blank.
//! - `ssh_ip` is always computed (a configured `ssh_ip` is ignored); hosts are resolved with their raw,
//!   unstripped names; the ssh options MHA uses are global: the last parsed non-empty `ssh_options`.
//! - Blocks are sorted by name, then numerically when every `[server...]` name carries a number.
//!
//! On top of MHA, numbers the helper needs (`port`, `ssh_port`, `candidate_master`, `no_master`) are
//! checked at load, with the file and line of the value.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::ini::{error_at, is_blank, Ini, Loc, Section, ROOT};

/// The global file MHA reads when `--global_conf` is not given.
pub const DEFAULT_GLOBAL_CONF: &str = "/etc/masterha_default.cnf";

/// Every parameter MHA 0.58 accepts; any other key makes it refuse the file.
pub const PARAMS: &[&str] = &[
    "hostname",
    "ip",
    "port",
    "ssh_host",
    "ssh_ip",
    "ssh_port",
    "ssh_connection_timeout",
    "ssh_options",
    "node_label",
    "candidate_master",
    "no_master",
    "ignore_fail",
    "skip_init_ssh_check",
    "skip_reset_slave",
    "user",
    "password",
    "repl_user",
    "repl_password",
    "disable_log_bin",
    "master_pid_file",
    "handle_raw_binlog",
    "ssh_user",
    "remote_workdir",
    "master_binlog_dir",
    "log_level",
    "manager_workdir",
    "manager_log",
    "check_repl_delay",
    "check_repl_filter",
    "latest_priority",
    "multi_tier_slave",
    "ping_interval",
    "ping_type",
    "secondary_check_script",
    "master_ip_failover_script",
    "master_ip_online_change_script",
    "shutdown_script",
    "report_script",
    "init_conf_load_script",
    "client_bindir",
    "client_libdir",
    "use_gtid_auto_pos",
];

/// Parameters a block never takes from `[server default]` (accepted there, but without effect on
/// blocks; `ssh_options` still changes MHA's global ssh options).
pub const BLOCK_ONLY: &[&str] = &[
    "hostname",
    "ip",
    "node_label",
    "ssh_host",
    "ssh_ip",
    "ssh_options",
    "candidate_master",
    "no_master",
    "ignore_fail",
    "skip_init_ssh_check",
];

const REFUSED: &str = "(MHA would refuse this file)";

/// The resolved application file.
#[derive(Debug, Clone, PartialEq)]
pub struct MhaConfig {
    pub app_path: PathBuf,
    /// MHA's application name: the file name without its last extension (`app1.cnf` -> `app1`).
    pub app: String,
    /// The global file that was read, if one existed.
    pub global_path: Option<PathBuf>,
    /// `[server...]` blocks in MHA's order.
    pub servers: Vec<Server>,
    /// `[binlog...]` blocks (binlog servers), resolved like servers, in name order.
    pub binlog_servers: Vec<Server>,
    /// The merged `[server default]` (global, app, init_conf_load_script) after MHA's resolution.
    pub default: BTreeMap<String, String>,
    /// The ssh options MHA appends to its own for every host: the last non-empty `ssh_options` in
    /// parse order (global default, app default, script output, blocks by name), quotes removed.
    pub ssh_options: Option<String>,
    /// The `ConnectTimeout` MHA puts in its ssh check options (a global of MHA, set by the first
    /// block parsed after the last one that set `ssh_options`).
    pub ssh_check_connect_timeout: u64,
}

/// One `[server...]` or `[binlog...]` block after inheritance.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The block name, e.g. `server1`.
    pub block: String,
    pub hostname: String,
    pub ip: String,
    /// `port`; empty or `0` written in the block (which MHA keeps as written) means the client
    /// library's default, 3306.
    pub port: u16,
    pub ssh_host: String,
    pub ssh_ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    /// The options MHA actually gives ssh for this host (global in MHA, see
    /// [`MhaConfig::ssh_options`]); the block's own value, if any, is in `values["ssh_options"]`.
    pub ssh_options: Option<String>,
    pub ssh_connection_timeout: u64,
    pub user: String,
    pub password: String,
    pub repl_user: Option<String>,
    pub repl_password: Option<String>,
    pub candidate_master: bool,
    pub no_master: bool,
    pub ignore_fail: bool,
    pub manager_workdir: String,
    /// `None` when unset or empty (MHA tests these for truth before using them).
    pub manager_log: Option<String>,
    pub remote_workdir: String,
    pub master_binlog_dir: Option<String>,
    pub master_ip_failover_script: Option<String>,
    pub master_ip_online_change_script: Option<String>,
    pub report_script: Option<String>,
    /// Every resolved parameter with a value, as MHA holds it.
    pub values: BTreeMap<String, String>,
}

/// The global file: only its [server default], and only if it is a
/// regular file (MHA skips it otherwise). Which file was used, and its
/// defaults.
fn read_global(
    global_path: Option<&Path>,
    env: &mut Env,
) -> Result<(Option<PathBuf>, Option<Resolved>)> {
    let global_file =
        global_path.map_or_else(|| PathBuf::from(DEFAULT_GLOBAL_CONF), Path::to_path_buf);
    if global_file.is_file() {
        let ini = Ini::read_file(&global_file)?;
        let (params, at) = section_params(&ini, "server default");
        let sd = parse_server(&params, None, "[server default]", &at, env)?;
        return Ok((Some(global_file), Some(sd)));
    }
    if global_path.is_some() {
        log::warn!(
            "global configuration file {} not found, skipped (as MHA does)",
            global_file.display()
        );
    }
    Ok((None, None))
}

/// The application file's [server default] over the global one, then the
/// output of its `init_conf_load_script`, if it names one.
fn read_server_default(ini: &Ini, global: Option<&Resolved>, env: &mut Env) -> Result<Resolved> {
    let (params, at) = section_params(ini, "server default");
    let sd = parse_server(&params, global, "[server default]", &at, env)?;
    match sd.get("init_conf_load_script").map(|v| v.text.clone()) {
        Some(script) => {
            let (params, at) = run_init_conf_load_script(&script, &ini.origin)?;
            parse_server(&params, Some(&sd), "init_conf_load_script output", &at, env)
        }
        None => Ok(sd),
    }
}

/// A block of the application file, resolved over the defaults.
type Block<'a> = (&'a Section, Resolved, Loc);

/// The [server...] and [binlog...] blocks, in name order as MHA walks
/// them; any other section is refused, as MHA refuses it.
fn read_blocks<'a>(
    ini: &'a Ini,
    sd: &Resolved,
    env: &mut Env,
) -> Result<(Vec<Block<'a>>, Vec<Block<'a>>)> {
    let mut blocks: Vec<&Section> = ini
        .sections
        .iter()
        .filter(|s| s.name != "server default")
        .collect();
    blocks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut servers = Vec::new();
    let mut binlogs = Vec::new();
    for section in blocks {
        let at = ini.loc(section.first_line());
        let is_server = has_prefix_and_nonblank(&section.name, "server");
        if !is_server && !has_prefix_and_nonblank(&section.name, "binlog") {
            let fault = if section.name == ROOT && section.line == 0 {
                format!(
                    "parameter '{}' outside any section {REFUSED}",
                    section.entries.first().map_or("", |e| e.key.as_str())
                )
            } else {
                format!(
                    "unknown section [{}]: MHA accepts [server default], [server...] and \
                     [binlog...] {REFUSED}",
                    section.name
                )
            };
            return Err(error_at(&at.origin, at.line, fault));
        }
        let params = entries_params(ini, section);
        let label = format!("[{}]", section.name);
        let resolved = parse_server(&params, Some(sd), &label, &at, env)?;
        let item = (section, resolved, at);
        if is_server {
            servers.push(item);
        } else {
            binlogs.push(item);
        }
    }
    Ok((servers, binlogs))
}

/// The server blocks in MHA's order (by their numbers when every one has
/// one); at least one, each with a hostname, no two at the same ip:port.
fn order_and_check<'a>(ini: &Ini, mut servers: Vec<Block<'a>>) -> Result<Vec<Block<'a>>> {
    let numbers: Vec<Option<&str>> = servers
        .iter()
        .map(|(s, _, _)| block_number(&s.name))
        .collect();
    if numbers.iter().all(Option::is_some) {
        let mut keyed: Vec<_> = numbers.into_iter().flatten().zip(servers).collect();
        keyed.sort_by(|a, b| compare_digits(a.0, b.0));
        servers = keyed.into_iter().map(|(_, s)| s).collect();
    }
    if servers.is_empty() {
        return Err(anyhow!(
            "{}: no [server...] block defined {REFUSED}",
            ini.origin
        ));
    }
    for (section, resolved, at) in &servers {
        if !resolved.truthy("hostname") {
            return Err(error_at(
                &at.origin,
                at.line,
                format!("[{}] has no hostname {REFUSED}", section.name),
            ));
        }
    }
    for (i, (a, ra, _)) in servers.iter().enumerate() {
        for (b, rb, at) in &servers[i + 1..] {
            if ra.text("ip") == rb.text("ip") && ra.text("port") == rb.text("port") {
                return Err(error_at(
                    &at.origin,
                    at.line,
                    format!(
                        "[{}] (hostname {}) and [{}] (hostname {}) have the same ip:port {}:{} {REFUSED}",
                        a.name,
                        ra.text("hostname").unwrap_or(""),
                        b.name,
                        rb.text("hostname").unwrap_or(""),
                        ra.text("ip").unwrap_or(""),
                        ra.text("port").unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(servers)
}

impl MhaConfig {
    /// Reads `app_path` with the global file (`None`: [`DEFAULT_GLOBAL_CONF`]), resolving host names
    /// through the system resolver.
    pub fn load(app_path: &Path, global_path: Option<&Path>) -> Result<MhaConfig> {
        Self::load_with_resolver(app_path, global_path, &resolve_host)
    }

    /// As [`MhaConfig::load`], with a resolver from host name to address text (for tests).
    pub fn load_with_resolver(
        app_path: &Path,
        global_path: Option<&Path>,
        resolve: &dyn Fn(&str) -> Result<String>,
    ) -> Result<MhaConfig> {
        let mut env = Env {
            resolve,
            current_user: current_user(),
            ssh_options: None,
            timeout_pending: true,
            check_timeout: None,
        };
        let (global_used, global_sd) = read_global(global_path, &mut env)?;
        let ini = Ini::read_file(app_path)?;
        let sd = read_server_default(&ini, global_sd.as_ref(), &mut env)?;
        let (servers, binlogs) = read_blocks(&ini, &sd, &mut env)?;
        let servers = order_and_check(&ini, servers)?;
        let ssh_options = env.ssh_options.clone();
        let typed = |items: Vec<(&Section, Resolved, Loc)>| -> Result<Vec<Server>> {
            items
                .into_iter()
                .map(|(section, r, at)| to_server(&section.name, &r, &at, &ssh_options))
                .collect()
        };
        let servers = typed(servers)?;
        let binlog_servers = typed(binlogs)?;
        Ok(MhaConfig {
            app_path: app_path.to_path_buf(),
            app: app_name(app_path),
            global_path: global_used,
            servers,
            binlog_servers,
            default: sd.to_map(),
            ssh_options,
            ssh_check_connect_timeout: env.check_timeout.unwrap_or(5),
        })
    }

    /// The server whose hostname, else ip, else block name is `hostname`.
    pub fn server(&self, hostname: &str) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| s.hostname == hostname)
            .or_else(|| self.servers.iter().find(|s| s.ip == hostname))
            .or_else(|| self.servers.iter().find(|s| s.block == hostname))
    }
}

/// MHA's `get_ip`: the first address the system resolver returns (IPv4 or IPv6), as numeric text.
pub fn resolve_host(host: &str) -> Result<String> {
    let first = (host, 0u16)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve '{host}'"))?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve '{host}': no address"))?;
    Ok(match first {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) if a.scope_id() != 0 => {
            format!("{}%{}", a.ip(), scope_name(a.scope_id()))
        }
        SocketAddr::V6(a) => a.ip().to_string(),
    })
}

fn scope_name(id: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires; the result is NUL-terminated.
    unsafe {
        if libc::if_indextoname(id, buf.as_mut_ptr()).is_null() {
            id.to_string()
        } else {
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        }
    }
}

/// The effective user's login name (MHA's `getpwuid($>)`), else `$USER`.
fn current_user() -> Option<String> {
    // SAFETY: getpwuid_r writes only into pwd and buf, whose sizes are passed; pw_name then points
    // into buf, which outlives the read.
    let from_passwd = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            Some(CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
        } else {
            None
        }
    };
    from_passwd
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

/// MHA's application name (FileStatus `get_basename`): the file name without its last `.ext`; the
/// path as given when that leaves nothing.
fn app_name(path: &Path) -> String {
    let base = path.file_name().map_or_else(
        || path.to_string_lossy().into_owned(),
        |b| b.to_string_lossy().into_owned(),
    );
    let stem = match base.rfind('.') {
        Some(dot) => &base[..dot],
        None => base.as_str(),
    };
    if stem.is_empty() {
        path.to_string_lossy().into_owned()
    } else {
        stem.to_string()
    }
}

/// `^server\S+` / `^binlog\S+`: the prefix followed by at least one non-blank character.
fn has_prefix_and_nonblank(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.bytes().next())
        .is_some_and(|b| !is_blank(b))
}

/// `^server\D*(\d+)`: the first run of ASCII digits after `server`.
fn block_number(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("server")?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let digits = &rest[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    Some(&digits[..end])
}

/// Numeric order of two digit strings of any length.
fn compare_digits(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Perl truth of a defined string: anything but "" and "0".
fn truthy(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

/// MHA's final `s/^['"]?(.*)['"]$/$1/`: a trailing quote goes, and with it one leading quote.
fn strip_quotes(s: &str) -> String {
    match s.strip_suffix(['\'', '"']) {
        Some(rest) => rest.strip_prefix(['\'', '"']).unwrap_or(rest).to_string(),
        None => s.to_string(),
    }
}

/// A key of a block as MHA's hash holds it: `value: None` is a key without value (script output).
#[derive(Debug, Clone)]
struct Param {
    key: String,
    value: Option<String>,
    at: Loc,
}

/// A resolved value and where it was written (`None`: a built-in default).
#[derive(Debug, Clone)]
struct Val {
    text: String,
    at: Option<Loc>,
}

/// MHA's `%value` after `parse_server`: absent keys are undef.
#[derive(Debug, Clone, Default)]
struct Resolved {
    vals: BTreeMap<&'static str, Val>,
}

impl Resolved {
    fn get(&self, key: &str) -> Option<&Val> {
        self.vals.get(key)
    }
    fn text(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| v.text.as_str())
    }
    fn truthy(&self, key: &str) -> bool {
        self.text(key).is_some_and(truthy)
    }
    fn to_map(&self) -> BTreeMap<String, String> {
        self.vals
            .iter()
            .map(|(k, v)| (k.to_string(), v.text.clone()))
            .collect()
    }
}

/// State shared by all `parse_server` calls: the resolver and MHA's global ssh option strings.
struct Env<'a> {
    resolve: &'a dyn Fn(&str) -> Result<String>,
    current_user: Option<String>,
    ssh_options: Option<String>,
    /// MHA's check options still hold their `VAR_CONNECT_TIMEOUT` placeholder.
    timeout_pending: bool,
    check_timeout: Option<u64>,
}

fn section_params(ini: &Ini, name: &str) -> (Vec<Param>, Loc) {
    match ini.section(name) {
        Some(section) => (entries_params(ini, section), ini.loc(section.first_line())),
        None => (Vec::new(), ini.loc(0)),
    }
}

fn entries_params(ini: &Ini, section: &Section) -> Vec<Param> {
    section
        .entries
        .iter()
        .map(|e| Param {
            key: e.key.clone(),
            value: Some(e.value.clone()),
            at: ini.loc(e.line),
        })
        .collect()
}

fn val_error(v: &Val, block: &str, header: &Loc, fault: impl std::fmt::Display) -> anyhow::Error {
    let at = v.at.as_ref().unwrap_or(header);
    error_at(&at.origin, at.line, format_args!("{fault} (in {block})"))
}

/// MHA's `check_positive_int`: at least one digit and nothing but digits, not zero.
fn check_positive_int(key: &str, v: &Val, block: &str, header: &Loc) -> Result<u64> {
    let t = &v.text;
    let ok = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t.bytes().any(|b| b != b'0');
    let n = if ok { t.parse::<u64>().ok() } else { None };
    n.ok_or_else(|| {
        val_error(
            v,
            block,
            header,
            format_args!("{key} must be a positive integer, not '{t}' {REFUSED}"),
        )
    })
}

/// One call of MHA's `parse_server`: a block's own keys over `default`.
fn parse_server(
    params: &[Param],
    default: Option<&Resolved>,
    block: &str,
    header: &Loc,
    env: &mut Env,
) -> Result<Resolved> {
    for p in params {
        if !PARAMS.contains(&p.key.as_str()) {
            return Err(error_at(
                &p.at.origin,
                p.at.line,
                format!("unknown parameter '{}' in {block} {REFUSED}", p.key),
            ));
        }
    }
    let b = BlockValues {
        params,
        default,
        block,
        header,
    };
    let mut v: BTreeMap<&'static str, Option<Val>> = BTreeMap::new();
    b.addresses(&mut v, env)?;
    b.connection(&mut v, env)?;
    b.scripts_and_flags(&mut v);
    b.directories_and_roles(&mut v, env);
    b.ping(&mut v)?;
    let mut resolved = Resolved::default();
    for (key, val) in v {
        if let Some(mut val) = val {
            if truthy(&val.text) {
                val.text = strip_quotes(&val.text);
            }
            resolved.vals.insert(key, val);
        }
    }
    debug_assert!(resolved.vals.keys().all(|k| PARAMS.contains(k)));
    Ok(resolved)
}

/// One block's parameters over the defaults it inherits, looked up the
/// ways Config.pm does.
struct BlockValues<'a> {
    params: &'a [Param],
    default: Option<&'a Resolved>,
    block: &'a str,
    header: &'a Loc,
}

type Values = BTreeMap<&'static str, Option<Val>>;

fn builtin(text: &str) -> Val {
    Val {
        text: text.to_string(),
        at: None,
    }
}

impl BlockValues<'_> {
    /// The block's own value (the last one given).
    fn own(&self, key: &str) -> Option<Val> {
        let p = self.params.iter().rev().find(|p| p.key == key)?;
        p.value.as_ref().map(|text| Val {
            text: text.clone(),
            at: Some(p.at.clone()),
        })
    }

    fn inherited(&self, key: &str) -> Option<Val> {
        self.default.and_then(|d| d.get(key)).cloned()
    }

    /// Block value, else the default if it is true, else the built-in
    /// (`unless ($value{k})`).
    fn or_true_default(&self, key: &str, fallback: Option<Val>) -> Option<Val> {
        self.own(key)
            .or_else(|| self.inherited(key).filter(|v| truthy(&v.text)))
            .or(fallback)
    }

    /// Block value, else the default if defined, else the built-in (`if
    /// (!defined ...)`).
    fn or_defined_default(&self, key: &str, fallback: Option<Val>) -> Option<Val> {
        self.own(key).or_else(|| self.inherited(key)).or(fallback)
    }

    /// The address of `host`, through the resolver.
    fn ip_of(&self, host: Option<&Val>, env: &Env) -> Result<Option<Val>> {
        let Some(host) = host else { return Ok(None) };
        let result = if host.text.is_empty() {
            Err(anyhow!("empty host name"))
        } else {
            (env.resolve)(&host.text)
        };
        match result {
            Ok(ip) => Ok(Some(Val {
                text: ip,
                at: host.at.clone(),
            })),
            Err(e) => Err(val_error(
                host,
                self.block,
                self.header,
                format_args!("cannot get the IP address of host '{}': {e:#}", host.text),
            )),
        }
    }

    /// hostname, ip (resolved when not given), port, the SSH host and
    /// address (the same as the server's unless ssh_host differs).
    fn addresses(&self, v: &mut Values, env: &Env) -> Result<()> {
        let hostname = self.own("hostname");
        let mut ip = self.own("ip");
        if !ip.as_ref().is_some_and(|i| truthy(&i.text)) {
            ip = self.ip_of(hostname.as_ref(), env)?;
        }
        v.insert("node_label", self.own("node_label"));
        v.insert("port", self.or_true_default("port", Some(builtin("3306"))));
        let ssh_host = self.own("ssh_host").or_else(|| hostname.clone());
        let same_host = match (&hostname, &ssh_host) {
            (Some(h), Some(s)) => truthy(&h.text) && truthy(&s.text) && h.text == s.text,
            _ => false,
        };
        let ssh_ip = if same_host {
            ip.clone()
        } else {
            self.ip_of(ssh_host.as_ref(), env)?
        };
        v.insert("hostname", hostname);
        v.insert("ip", ip);
        v.insert("ssh_host", ssh_host);
        v.insert("ssh_ip", ssh_ip);
        Ok(())
    }

    /// ssh_port, ssh_options (quotes removed; the last block that sets
    /// them wins for every host, as in MHA), the connect timeout, the
    /// MySQL account.
    fn connection(&self, v: &mut Values, env: &mut Env) -> Result<()> {
        v.insert(
            "ssh_port",
            self.or_true_default("ssh_port", Some(builtin("22"))),
        );
        let mut ssh_options = self.own("ssh_options");
        if let Some(o) = ssh_options.as_mut().filter(|o| truthy(&o.text)) {
            o.text.retain(|c| c != '\'' && c != '"');
            if truthy(&o.text) {
                env.ssh_options = Some(o.text.clone());
                env.timeout_pending = true;
            }
        }
        v.insert("ssh_options", ssh_options);
        let timeout = self
            .or_true_default("ssh_connection_timeout", Some(builtin("5")))
            .expect("has a default");
        let seconds =
            check_positive_int("ssh_connection_timeout", &timeout, self.block, self.header)?;
        if env.timeout_pending {
            env.check_timeout = Some(seconds);
            env.timeout_pending = false;
        }
        v.insert("ssh_connection_timeout", Some(timeout));
        v.insert("user", self.or_true_default("user", Some(builtin("root"))));
        v.insert(
            "password",
            self.or_defined_default("password", Some(builtin(""))),
        );
        Ok(())
    }

    /// The replication account, the scripts, the log level and MHA's
    /// switches.
    fn scripts_and_flags(&self, v: &mut Values) {
        for key in [
            "repl_user",
            "repl_password",
            "master_pid_file",
            "init_conf_load_script",
            "secondary_check_script",
            "shutdown_script",
            "report_script",
            "master_ip_failover_script",
            "master_ip_online_change_script",
            "manager_log",
            "client_bindir",
            "client_libdir",
        ] {
            v.insert(key, self.or_defined_default(key, None));
        }
        v.insert(
            "log_level",
            self.or_true_default("log_level", Some(builtin("info"))),
        );
        for (key, fallback) in [
            ("disable_log_bin", "0"),
            ("handle_raw_binlog", "1"),
            ("check_repl_delay", "1"),
            ("check_repl_filter", "1"),
            ("latest_priority", "1"),
            ("multi_tier_slave", "0"),
            ("skip_reset_slave", "0"),
            ("use_gtid_auto_pos", "1"),
        ] {
            v.insert(key, self.or_defined_default(key, Some(builtin(fallback))));
        }
    }

    /// The binlog and work directories, the SSH user, and the block-only
    /// roles (never inherited).
    fn directories_and_roles(&self, v: &mut Values, env: &Env) {
        let mut binlog_dir = self.or_true_default(
            "master_binlog_dir",
            Some(builtin("/var/lib/mysql,/var/log/mysql")),
        );
        if let Some(d) = binlog_dir.as_mut().filter(|d| truthy(&d.text)) {
            d.text.retain(|c| !(c.is_ascii() && is_blank(c as u8)));
        }
        v.insert("master_binlog_dir", binlog_dir);
        v.insert(
            "manager_workdir",
            self.or_true_default("manager_workdir", Some(builtin("/var/tmp"))),
        );
        v.insert(
            "remote_workdir",
            self.or_true_default("remote_workdir", Some(builtin("/var/tmp"))),
        );
        let me = env.current_user.as_deref().map(builtin);
        v.insert("ssh_user", self.or_true_default("ssh_user", me));
        for key in [
            "candidate_master",
            "no_master",
            "ignore_fail",
            "skip_init_ssh_check",
        ] {
            v.insert(key, self.own(key).or(Some(builtin("0"))));
        }
    }

    /// ping_type (one of three) and ping_interval (a positive number).
    fn ping(&self, v: &mut Values) -> Result<()> {
        let mut ping_type = self
            .or_defined_default("ping_type", Some(builtin("SELECT")))
            .expect("has a default");
        ping_type.text.make_ascii_uppercase();
        if !matches!(ping_type.text.as_str(), "CONNECT" | "SELECT" | "INSERT") {
            return Err(val_error(
                &ping_type,
                self.block,
                self.header,
                format_args!(
                    "ping_type must be CONNECT, SELECT or INSERT, not '{}' {REFUSED}",
                    ping_type.text
                ),
            ));
        }
        v.insert("ping_type", Some(ping_type));
        let interval = self
            .or_defined_default("ping_interval", Some(builtin("3")))
            .expect("has a default");
        check_positive_int("ping_interval", &interval, self.block, self.header)?;
        v.insert("ping_interval", Some(interval));
        Ok(())
    }
}

/// Runs `init_conf_load_script` as MHA's backticks do (see [`super::backticks`]) and reads its output
/// as MHA does: each line split at `=`, the value being the text between the first and the second
/// `=`; a line without `=` names a key without value; an empty line kills MHA, so it is an error.
/// The script's exit status is ignored, as in MHA.
fn run_init_conf_load_script(script: &str, app_origin: &str) -> Result<(Vec<Param>, Loc)> {
    log::info!("updating application default configuration from {script}");
    let stdout = super::backticks::output(script)
        .with_context(|| format!("{app_origin}: cannot run init_conf_load_script '{script}'"))?;
    let origin = format!("init_conf_load_script '{script}' output");
    let text = String::from_utf8(stdout).map_err(|_| anyhow!("{origin}: not valid UTF-8"))?;
    let mut params = Vec::new();
    for (index, row) in text.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let row = row.strip_suffix('\n').unwrap_or(row);
        if row.is_empty() {
            return Err(error_at(
                &origin,
                line,
                "empty line: MHA dies on it (uninitialized hash key)",
            ));
        }
        let mut fields = row.splitn(3, '=');
        let key = fields.next().unwrap_or_default().to_string();
        let value = fields.next().map(str::to_string);
        params.push(Param {
            key,
            value,
            at: Loc {
                origin: origin.clone(),
                line,
            },
        });
    }
    Ok((params, Loc { origin, line: 0 }))
}

/// Perl's numeric reading of a whole string, for the flags MHA compares with `>= 1`.
fn perl_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii() && is_blank(c as u8));
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let mut parts = digits.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    t.parse::<f64>().ok()
}

fn to_server(
    block: &str,
    r: &Resolved,
    header: &Loc,
    ssh_options: &Option<String>,
) -> Result<Server> {
    let label = format!("[{block}]");
    let text = |key: &str| r.text(key).unwrap_or("").to_string();
    let optional = |key: &str| r.text(key).filter(|t| !t.is_empty()).map(str::to_string);
    let val = |key: &str| {
        r.get(key).cloned().unwrap_or(Val {
            text: String::new(),
            at: None,
        })
    };

    let port_val = val("port");
    let port = match port_val.text.as_str() {
        // MHA keeps an empty or zero port written in the block; the MySQL client then uses 3306.
        "" | "0" => 3306,
        t => t.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
            val_error(
                &port_val,
                &label,
                header,
                format_args!("port must be a number from 1 to 65535, not '{t}'"),
            )
        })?,
    };
    let ssh_port_val = val("ssh_port");
    let ssh_port = ssh_port_val
        .text
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            val_error(
                &ssh_port_val,
                &label,
                header,
                format_args!(
                "ssh_port must be a number from 1 to 65535, not '{}' (MHA would pass it to ssh -p)",
                ssh_port_val.text
            ),
            )
        })?;
    let flag = |key: &str| -> Result<bool> {
        let v = val(key);
        perl_number(&v.text).map(|n| n >= 1.0).ok_or_else(|| {
            val_error(
                &v,
                &label,
                header,
                format_args!(
                    "{key} must be a number such as 0 or 1, not '{}' (MHA compares it with >= 1 and \
                     would die during a switch)",
                    v.text
                ),
            )
        })
    };
    Ok(Server {
        block: block.to_string(),
        hostname: text("hostname"),
        ip: text("ip"),
        port,
        ssh_host: text("ssh_host"),
        ssh_ip: text("ssh_ip"),
        ssh_port,
        ssh_user: text("ssh_user"),
        ssh_options: ssh_options.clone(),
        ssh_connection_timeout: text("ssh_connection_timeout").parse().unwrap_or(5),
        user: text("user"),
        password: text("password"),
        repl_user: r.text("repl_user").map(str::to_string),
        repl_password: r.text("repl_password").map(str::to_string),
        candidate_master: flag("candidate_master")?,
        no_master: flag("no_master")?,
        ignore_fail: r.truthy("ignore_fail"),
        manager_workdir: text("manager_workdir"),
        manager_log: optional("manager_log"),
        remote_workdir: text("remote_workdir"),
        master_binlog_dir: optional("master_binlog_dir"),
        master_ip_failover_script: optional("master_ip_failover_script"),
        master_ip_online_change_script: optional("master_ip_online_change_script"),
        report_script: optional("report_script"),
        values: r.to_map(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn resolver(host: &str) -> Result<String> {
        match host {
            "db1" => Ok("192.0.2.1".into()),
            "db2" => Ok("192.0.2.2".into()),
            "db3" => Ok("192.0.2.3".into()),
            "ssh1" => Ok("198.51.100.1".into()),
            "ssh2" => Ok("198.51.100.2".into()),
            _ => Err(anyhow!("unknown host")),
        }
    }

    /// Loads `text` as app1.cnf with an optional global file; never reads /etc.
    fn load_pair(text: &str, global: Option<&str>) -> Result<MhaConfig> {
        let dir = TempDir::new();
        let app = dir.write("app1.cnf", text);
        let global = match global {
            Some(g) => dir.write("global.cnf", g),
            None => dir.0.join("no-global.cnf"),
        };
        MhaConfig::load_with_resolver(&app, Some(&global), &resolver)
    }

    fn load(text: &str) -> MhaConfig {
        load_pair(text, None).unwrap()
    }

    fn fails(text: &str) -> String {
        load_pair(text, None).unwrap_err().to_string()
    }

    const TWO: &str = "[server1]\nhostname=db1\n[server2]\nhostname=db2\n";

    #[test]
    fn minimal_file_gets_mha_defaults() {
        let c = load(TWO);
        assert_eq!(c.app, "app1");
        assert_eq!(c.servers.len(), 2);
        let s = &c.servers[0];
        assert_eq!(
            (s.block.as_str(), s.hostname.as_str(), s.ip.as_str()),
            ("server1", "db1", "192.0.2.1")
        );
        assert_eq!(
            (s.port, s.ssh_port, s.ssh_connection_timeout),
            (3306, 22, 5)
        );
        assert_eq!((s.user.as_str(), s.password.as_str()), ("root", ""));
        assert_eq!(
            (s.ssh_host.as_str(), s.ssh_ip.as_str()),
            ("db1", "192.0.2.1")
        );
        assert_eq!(s.ssh_user, current_user().unwrap());
        assert_eq!(
            (s.manager_workdir.as_str(), s.remote_workdir.as_str()),
            ("/var/tmp", "/var/tmp")
        );
        assert_eq!(
            s.master_binlog_dir.as_deref(),
            Some("/var/lib/mysql,/var/log/mysql")
        );
        assert_eq!(
            (
                s.repl_user.clone(),
                s.repl_password.clone(),
                s.manager_log.clone()
            ),
            (None, None, None)
        );
        assert!(!s.candidate_master && !s.no_master && !s.ignore_fail);
        assert_eq!(s.ssh_options, None);
        for (k, want) in [
            ("log_level", "info"),
            ("ping_type", "SELECT"),
            ("ping_interval", "3"),
            ("disable_log_bin", "0"),
            ("handle_raw_binlog", "1"),
            ("check_repl_delay", "1"),
            ("check_repl_filter", "1"),
            ("latest_priority", "1"),
            ("multi_tier_slave", "0"),
            ("skip_reset_slave", "0"),
            ("use_gtid_auto_pos", "1"),
            ("skip_init_ssh_check", "0"),
        ] {
            assert_eq!(s.values.get(k).map(String::as_str), Some(want), "{k}");
        }
        assert_eq!(c.ssh_check_connect_timeout, 5);
        assert_eq!(c.default.get("port").map(String::as_str), Some("3306"));
    }

    #[test]
    fn crlf_file_reads_like_lf() {
        let c = load("[server default]\r\nuser=mha\r\n[server1]\r\nhostname=db1\r\n");
        assert_eq!(c.servers[0].user, "mha");
        assert_eq!(c.servers[0].hostname, "db1");
    }

    #[test]
    fn spaced_section_header_is_a_server_block() {
        let c = load("[ server1 ]\nhostname = db1\n");
        assert_eq!(c.servers[0].block, "server1");
    }

    #[test]
    fn key_before_any_section_is_rejected() {
        let e = fails("\nuser=x\n[server1]\nhostname=db1\n");
        assert!(
            e.ends_with(&format!(
                "app1.cnf:2: parameter 'user' outside any section {REFUSED}"
            )),
            "{e}"
        );
    }

    #[test]
    fn error_names_file_line_and_key() {
        let e = fails("[server1]\nhostname=db1\nfoo=bar\n");
        assert!(
            e.ends_with(&format!(
                "app1.cnf:3: unknown parameter 'foo' in [server1] {REFUSED}"
            )),
            "{e}"
        );
    }

    #[test]
    fn repeated_key_last_wins() {
        let c = load("[server1]\nhostname=db1\nuser=a\nuser=b\n");
        assert_eq!(c.servers[0].user, "b");
    }

    #[test]
    fn inline_comment_needs_blanks_and_hash_is_kept() {
        let c = load("[server default]\npassword = p;w#1 ; the comment\nrepl_password = a ;b\n[server1]\nhostname=db1\n");
        assert_eq!(c.servers[0].password, "p;w#1");
        assert_eq!(c.servers[0].repl_password.as_deref(), Some("a ;b"));
    }

    #[test]
    fn quoted_value_with_spaces_loses_its_quotes() {
        let c = load("[server1]\nhostname=db1\npassword=\"two words\"\nuser='me'\n");
        assert_eq!(c.servers[0].password, "two words");
        assert_eq!(c.servers[0].user, "me");
    }

    #[test]
    fn trailing_quote_is_stripped_even_without_leading_quote() {
        let c = load("[server1]\nhostname=db1\npassword=abc\"\nrepl_password=\"abc\nuser='x\"\n");
        let s = &c.servers[0];
        assert_eq!(s.password, "abc");
        assert_eq!(s.repl_password.as_deref(), Some("\"abc"));
        assert_eq!(s.user, "x");
    }

    #[test]
    fn inherited_value_is_quote_stripped_again_at_each_level() {
        let c = load("[server default]\npassword=\"'x'\"\n[server1]\nhostname=db1\n[server2]\nhostname=db2\npassword=\"'x'\"\n");
        assert_eq!(c.default["password"], "'x'");
        assert_eq!(c.servers[0].password, "x");
        assert_eq!(c.servers[1].password, "'x'");
    }

    #[test]
    fn zero_and_empty_values_are_not_quote_stripped() {
        let c = load("[server1]\nhostname=db1\npassword=\"\"\nrepl_password=\"\n");
        assert_eq!(c.servers[0].password, "");
        assert_eq!(c.servers[0].repl_password.as_deref(), Some(""));
    }

    #[test]
    fn quotes_inside_ssh_options_are_all_removed() {
        let c = load("[server default]\nssh_options=\"-o 'ProxyCommand=ssh -W %h:%p \"jump\"' -i /k\"\n[server1]\nhostname=db1\n");
        assert_eq!(
            c.ssh_options.as_deref(),
            Some("-o ProxyCommand=ssh -W %h:%p jump -i /k")
        );
        assert_eq!(c.servers[0].ssh_options, c.ssh_options);
        // Not inherited as the block's own value.
        assert_eq!(c.servers[0].values.get("ssh_options"), None);
    }

    #[test]
    fn ssh_options_of_the_last_parsed_block_apply_to_every_host() {
        let c = load("[server default]\nssh_options=-p 1\n[server2]\nhostname=db2\nssh_options=-o B=2\n[server1]\nhostname=db1\nssh_options=-o A=1\n[server3]\nhostname=db3\nssh_options=''\n");
        // Name order: server1, server2, server3; server3's value is empty once quotes are gone.
        assert_eq!(c.ssh_options.as_deref(), Some("-o B=2"));
        assert!(c
            .servers
            .iter()
            .all(|s| s.ssh_options.as_deref() == Some("-o B=2")));
        assert_eq!(c.servers[0].values["ssh_options"], "-o A=1");
    }

    #[test]
    fn ssh_check_connect_timeout_follows_mha_global_placeholder() {
        // Set by the first parse (app default: 7); server1's ssh_options resets MHA's placeholder,
        // which server1's own timeout (8) then fills; later blocks no longer change it.
        let c = load("[server default]\nssh_connection_timeout=7\n[server1]\nhostname=db1\nssh_options=-o X=1\nssh_connection_timeout=8\n[server2]\nhostname=db2\nssh_connection_timeout=9\n[server3]\nhostname=db3\nssh_connection_timeout=11\n");
        assert_eq!(c.ssh_check_connect_timeout, 8);
        let c = load("[server default]\nssh_connection_timeout=7\n[server1]\nhostname=db1\n");
        assert_eq!(c.ssh_check_connect_timeout, 7);
        assert_eq!(c.servers[0].ssh_connection_timeout, 7);
    }

    #[test]
    fn password_with_dollar_backslash_quotes_and_spaces_is_kept() {
        let c = load("[server1]\nhostname=db1\npassword = p$a\\ss 'w\"o rd\\\n");
        assert_eq!(c.servers[0].password, "p$a\\ss 'w\"o rd\\");
    }

    #[test]
    fn unknown_parameter_in_server_default_is_rejected() {
        let e = fails("[server default]\n\nmaster_ip_failover = /x\n[server1]\nhostname=db1\n");
        assert!(
            e.ends_with(&format!(
                ":3: unknown parameter 'master_ip_failover' in [server default] {REFUSED}"
            )),
            "{e}"
        );
    }

    #[test]
    fn unknown_parameter_in_global_server_default_is_rejected() {
        let e = load_pair(TWO, Some("[server default]\nbogus=1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(&format!(
                "global.cnf:2: unknown parameter 'bogus' in [server default] {REFUSED}"
            )),
            "{e}"
        );
    }

    #[test]
    fn unknown_section_is_rejected_with_its_line() {
        let e = fails("[server1]\nhostname=db1\n\n[mha-helper]\nx=1\n");
        assert!(
            e.contains("app1.cnf:4: unknown section [mha-helper]"),
            "{e}"
        );
        assert!(fails("[server]\nhostname=db1\n").contains("unknown section [server]"));
        assert!(
            fails("[server default]\n[server  default]\n[server1]\nhostname=db1\n")
                .contains("unknown section [server  default]")
        );
    }

    #[test]
    fn section_name_only_needs_a_nonblank_after_server() {
        let c = load("[server1 extra words]\nhostname=db1\n[serverX]\nhostname=db2\n");
        assert_eq!(c.servers.len(), 2);
    }

    #[test]
    fn server_block_without_hostname_is_rejected() {
        let e = fails("[server1]\nhostname=db1\n[server2]\nip=192.0.2.9\n");
        assert!(
            e.ends_with(&format!("app1.cnf:3: [server2] has no hostname {REFUSED}")),
            "{e}"
        );
    }

    #[test]
    fn empty_hostname_fails_resolution() {
        let e = fails("[server1]\nhostname=\n");
        assert!(
            e.contains(
                "app1.cnf:2: cannot get the IP address of host '': empty host name (in [server1])"
            ),
            "{e}"
        );
    }

    #[test]
    fn unresolvable_hostname_names_host_and_block() {
        let e = fails("[server1]\nhostname=db1\n[server2]\nport=3307\nhostname=nowhere\n");
        assert!(e.ends_with("app1.cnf:5: cannot get the IP address of host 'nowhere': unknown host (in [server2])"), "{e}");
    }

    #[test]
    fn quoted_hostname_is_resolved_with_its_quotes() {
        let e = fails("[server1]\nhostname=\"db1\"\n");
        assert!(e.contains("host '\"db1\"'"), "{e}");
        // With ip given nothing is resolved, and the name loses its quotes afterwards.
        let c = load("[server1]\nhostname=\"db1\"\nip=192.0.2.1\nssh_host=db1\n");
        assert_eq!(c.servers[0].hostname, "db1");
    }

    #[test]
    fn bad_port_is_an_error_naming_file_line_and_key() {
        let e = fails("[server1]\nhostname=db1\nport=abc\n");
        assert!(
            e.ends_with(
                "app1.cnf:3: port must be a number from 1 to 65535, not 'abc' (in [server1])"
            ),
            "{e}"
        );
        let e = fails("[server default]\nport=70000\n[server1]\nhostname=db1\n");
        assert!(
            e.contains(
                "app1.cnf:2: port must be a number from 1 to 65535, not '70000' (in [server1])"
            ),
            "{e}"
        );
        let e = fails("[server1]\nhostname=db1\nssh_port=\n");
        assert!(
            e.contains("app1.cnf:3: ssh_port must be a number from 1 to 65535, not ''"),
            "{e}"
        );
    }

    #[test]
    fn empty_or_zero_port_in_server_default_falls_back_to_3306() {
        for port in ["", "0"] {
            let c = load(&format!(
                "[server default]\nport={port}\nssh_port={port}\n[server1]\nhostname=db1\n"
            ));
            assert_eq!(c.default["port"], port);
            assert_eq!(c.servers[0].values["port"], "3306");
            assert_eq!((c.servers[0].port, c.servers[0].ssh_port), (3306, 22));
        }
    }

    #[test]
    fn empty_port_in_block_is_kept_empty_by_mha_and_means_3306() {
        let c = load("[server default]\nport=3307\n[server1]\nhostname=db1\nport=\n[server2]\nhostname=db2\n");
        assert_eq!(c.servers[0].values["port"], "");
        assert_eq!(c.servers[0].port, 3306);
        assert_eq!(c.servers[1].port, 3307);
    }

    #[test]
    fn empty_user_in_block_stays_empty_but_in_default_falls_back_to_root() {
        let c = load(
            "[server default]\nuser=\n[server1]\nhostname=db1\n[server2]\nhostname=db2\nuser=\n",
        );
        assert_eq!(c.servers[0].user, "root");
        assert_eq!(c.servers[1].user, "");
    }

    #[test]
    fn empty_password_in_default_is_inherited_as_empty() {
        let c = load_pair(
            "[server1]\nhostname=db1\n",
            Some("[server default]\npassword=secret\n"),
        )
        .unwrap();
        assert_eq!(c.servers[0].password, "secret");
        let c = load_pair(
            "[server default]\npassword=\n[server1]\nhostname=db1\n",
            Some("[server default]\npassword=secret\n"),
        )
        .unwrap();
        assert_eq!(c.servers[0].password, "");
    }

    #[test]
    fn global_defaults_under_app_defaults_under_block() {
        let global = "[server default]\nuser=g_user\npassword=g_pw\nrepl_user=g_repl\nmanager_workdir=/g\n[server1]\nhostname=ignored\n[whatever]\nx=1\n";
        let app = "[server default]\npassword=a_pw\nrepl_user=a_repl\n[server1]\nhostname=db1\nrepl_user=b_repl\n[server2]\nhostname=db2\n";
        let c = load_pair(app, Some(global)).unwrap();
        assert!(c.global_path.is_some());
        let (s1, s2) = (&c.servers[0], &c.servers[1]);
        assert_eq!((s1.user.as_str(), s1.password.as_str()), ("g_user", "a_pw"));
        assert_eq!(s1.repl_user.as_deref(), Some("b_repl"));
        assert_eq!(s2.repl_user.as_deref(), Some("a_repl"));
        assert_eq!(s2.manager_workdir, "/g");
        assert_eq!(c.servers.len(), 2);
    }

    #[test]
    fn global_file_syntax_error_is_an_error() {
        let e = load_pair(TWO, Some("[server default]\noops\n"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("global.cnf:2: syntax error: 'oops'"), "{e}");
    }

    #[test]
    fn missing_global_file_is_skipped() {
        let c = load(TWO);
        assert_eq!(c.global_path, None);
    }

    #[test]
    fn per_block_only_keys_are_not_inherited() {
        let c = load("[server default]\nhostname=db3\nip=192.0.2.99\nssh_host=ssh1\nnode_label=L\ncandidate_master=1\nno_master=1\nignore_fail=1\nskip_init_ssh_check=1\n[server1]\nhostname=db1\n");
        let s = &c.servers[0];
        assert_eq!(
            (s.ip.as_str(), s.ssh_host.as_str(), s.ssh_ip.as_str()),
            ("192.0.2.1", "db1", "192.0.2.1")
        );
        assert!(!s.candidate_master && !s.no_master && !s.ignore_fail);
        assert_eq!(s.values.get("node_label"), None);
        assert_eq!(s.values["skip_init_ssh_check"], "0");
        // The default section itself resolved its hostname (MHA does).
        assert_eq!(c.default["ssh_ip"], "198.51.100.1");
    }

    #[test]
    fn empty_file_or_no_server_block_is_rejected() {
        assert!(fails("").ends_with(&format!("app1.cnf: no [server...] block defined {REFUSED}")));
        assert!(fails("[server default]\nuser=x\n[binlog1]\nhostname=db3\n")
            .contains("no [server...] block defined"));
    }

    #[test]
    fn ip_given_is_used_and_not_resolved() {
        let c = load("[server1]\nhostname=unresolvable\nip=10.1.1.1\n");
        assert_eq!(
            (c.servers[0].ip.as_str(), c.servers[0].ssh_ip.as_str()),
            ("10.1.1.1", "10.1.1.1")
        );
    }

    #[test]
    fn empty_or_zero_ip_is_resolved_from_hostname() {
        let c = load("[server1]\nhostname=db1\nip=0\n[server2]\nhostname=db2\nip=\n");
        assert_eq!(
            (c.servers[0].ip.as_str(), c.servers[1].ip.as_str()),
            ("192.0.2.1", "192.0.2.2")
        );
    }

    #[test]
    fn ssh_host_differing_from_hostname_gets_its_own_ssh_ip() {
        let c = load("[server1]\nhostname=db1\nip=10.0.0.1\nssh_host=ssh1\n[server2]\nhostname=db2\nip=10.0.0.2\nssh_host=db2\n");
        assert_eq!(
            (c.servers[0].ssh_host.as_str(), c.servers[0].ssh_ip.as_str()),
            ("ssh1", "198.51.100.1")
        );
        // Same name: ssh_ip is the given ip, not a fresh resolution.
        assert_eq!(c.servers[1].ssh_ip, "10.0.0.2");
    }

    #[test]
    fn configured_ssh_ip_is_ignored() {
        let c = load("[server1]\nhostname=db1\nssh_ip=203.0.113.7\n");
        assert_eq!(c.servers[0].ssh_ip, "192.0.2.1");
    }

    #[test]
    fn init_conf_load_script_output_is_merged_into_defaults() {
        let dir = TempDir::new();
        let script = dir.write(
            "conf.sh",
            "#!/bin/sh\necho 'password=from_script'\necho 'repl_password=a=b=c'\necho 'user'\nprintf 'manager_workdir=/w'\n",
        );
        let app = dir.write(
            "app1.cnf",
            &format!("[server default]\nuser=u\ninit_conf_load_script=sh {}\n[server1]\nhostname=db1\n[server2]\nhostname=db2\npassword=own\n", script.display()),
        );
        let c = MhaConfig::load_with_resolver(&app, Some(&dir.0.join("none")), &resolver).unwrap();
        assert_eq!(c.default["password"], "from_script");
        let (s1, s2) = (&c.servers[0], &c.servers[1]);
        assert_eq!(s1.password, "from_script");
        assert_eq!(s2.password, "own");
        // Only the text between the first and second '=' is the value.
        assert_eq!(s1.repl_password.as_deref(), Some("a"));
        // A key without '=' is undefined, so the earlier default stays.
        assert_eq!(s1.user, "u");
        assert_eq!(s1.manager_workdir, "/w");
    }

    #[test]
    fn init_conf_load_script_runs_like_perl_backticks() {
        let c = load("[server default]\ninit_conf_load_script=echo user=a && echo repl_user=$((1+1))\n[server1]\nhostname=db1\n");
        assert_eq!(c.servers[0].user, "a");
        assert_eq!(c.servers[0].repl_user.as_deref(), Some("2"));
    }

    #[test]
    fn init_conf_load_script_bad_output_is_an_error() {
        let dir = TempDir::new();
        let script = dir.write("conf.sh", "echo user=a\necho\necho port=1\n");
        let app = dir.write(
            "app1.cnf",
            &format!(
                "[server default]\ninit_conf_load_script=sh {}\n[server1]\nhostname=db1\n",
                script.display()
            ),
        );
        let e =
            MhaConfig::load_with_resolver(&app, Some(&dir.0.join("none")), &resolver).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("output:2: empty line: MHA dies on it (uninitialized hash key)"),
            "{e}"
        );
        let e = fails(
            "[server default]\ninit_conf_load_script=echo nonsense=1\n[server1]\nhostname=db1\n",
        );
        assert!(
            e.contains("output:1: unknown parameter 'nonsense' in init_conf_load_script output"),
            "{e}"
        );
    }

    #[test]
    fn init_conf_load_script_ending_in_a_quote_loses_it_before_running() {
        // MHA strips the trailing quote of every value, commands included; without shell
        // metacharacters left, Perl runs echo directly, so '#' is an argument, not a comment.
        let c = load(
            "[server default]\ninit_conf_load_script=echo user=a #'\n[server1]\nhostname=db1\n",
        );
        assert_eq!(c.default["init_conf_load_script"], "echo user=a #");
        assert_eq!(c.servers[0].user, "a #");
    }

    #[test]
    fn servers_are_ordered_numerically_when_all_names_have_numbers() {
        let c =
            load("[server10]\nhostname=db1\n[server2]\nhostname=db2\n[server_a1]\nhostname=db3\n");
        let order: Vec<_> = c.servers.iter().map(|s| s.block.as_str()).collect();
        assert_eq!(order, ["server_a1", "server2", "server10"]);
        let c =
            load("[server10]\nhostname=db1\n[server2]\nhostname=db2\n[serverX]\nhostname=db3\n");
        let order: Vec<_> = c.servers.iter().map(|s| s.block.as_str()).collect();
        assert_eq!(order, ["server10", "server2", "serverX"]);
    }

    #[test]
    fn duplicate_ip_and_port_is_rejected() {
        let e = fails("[server1]\nhostname=db1\n[server2]\nhostname=other\nip=192.0.2.1\n");
        assert!(e.contains("app1.cnf:3: [server1] (hostname db1) and [server2] (hostname other) have the same ip:port 192.0.2.1:3306"), "{e}");
        // Compared as MHA compares: text, so '' and '3306' differ.
        load("[server1]\nhostname=db1\n[server2]\nhostname=other\nip=192.0.2.1\nport=\n");
    }

    #[test]
    fn binlog_blocks_are_kept_apart_from_servers() {
        let c = load("[server1]\nhostname=db1\n[binlog1]\nhostname=db3\nmaster_binlog_dir=/b\n");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.binlog_servers.len(), 1);
        assert_eq!(c.binlog_servers[0].block, "binlog1");
        assert_eq!(c.binlog_servers[0].ip, "192.0.2.3");
        assert!(c.server("db3").is_none());
    }

    #[test]
    fn ssh_connection_timeout_must_be_a_positive_integer() {
        for bad in ["0", "", "5s", "-1", "\"5\""] {
            let e = fails(&format!(
                "[server1]\nhostname=db1\nssh_connection_timeout={bad}\n"
            ));
            assert!(
                e.contains(&format!(
                    "app1.cnf:3: ssh_connection_timeout must be a positive integer, not '{bad}'"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn ping_type_is_uppercased_and_checked() {
        let c = load("[server default]\nping_type=connect\n[server1]\nhostname=db1\n");
        assert_eq!(c.servers[0].values["ping_type"], "CONNECT");
        assert!(
            fails("[server default]\nping_type=tcp\n[server1]\nhostname=db1\n")
                .contains("app1.cnf:2: ping_type must be CONNECT, SELECT or INSERT, not 'TCP'")
        );
        assert!(
            fails("[server default]\nping_interval=0\n[server1]\nhostname=db1\n")
                .contains("app1.cnf:2: ping_interval must be a positive integer")
        );
    }

    #[test]
    fn master_binlog_dir_loses_all_blanks() {
        let c = load("[server1]\nhostname=db1\nmaster_binlog_dir = /a, /b c\n");
        assert_eq!(c.servers[0].master_binlog_dir.as_deref(), Some("/a,/bc"));
    }

    #[test]
    fn candidate_master_must_be_numeric_because_mha_compares_numbers() {
        let c = load("[server1]\nhostname=db1\ncandidate_master=1\nno_master=0\nignore_fail=yes\n[server2]\nhostname=db2\ncandidate_master=2\n");
        assert!(
            c.servers[0].candidate_master && !c.servers[0].no_master && c.servers[0].ignore_fail
        );
        assert!(c.servers[1].candidate_master);
        let e = fails("[server1]\nhostname=db1\ncandidate_master=yes\n");
        assert!(
            e.contains("app1.cnf:3: candidate_master must be a number such as 0 or 1, not 'yes'"),
            "{e}"
        );
    }

    #[test]
    fn app_name_is_file_name_without_last_extension() {
        assert_eq!(app_name(Path::new("/etc/mha/app1.cnf")), "app1");
        assert_eq!(app_name(Path::new("a.b.cnf")), "a.b");
        assert_eq!(app_name(Path::new("/etc/app1")), "app1");
        assert_eq!(app_name(Path::new("/etc/.cnf")), "/etc/.cnf");
    }

    #[test]
    fn server_lookup_by_hostname_then_ip_then_block() {
        let c = load("[server1]\nhostname=db1\n[server2]\nhostname=server1\nip=10.0.0.2\n");
        assert_eq!(c.server("db1").unwrap().block, "server1");
        assert_eq!(c.server("10.0.0.2").unwrap().block, "server2");
        assert_eq!(c.server("server1").unwrap().block, "server2");
        assert_eq!(c.server("server2").unwrap().block, "server2");
        assert!(c.server("nope").is_none());
    }

    #[test]
    fn default_resolver_returns_numeric_addresses() {
        assert_eq!(resolve_host("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(resolve_host("::1").unwrap(), "::1");
        assert!(resolve_host("").is_err());
    }

    #[test]
    fn real_load_reads_files_with_system_resolver() {
        let dir = TempDir::new();
        let app = dir.write("x.cnf", "[server1]\nhostname=127.0.0.1\n");
        let c = MhaConfig::load(&app, Some(&dir.0.join("nothing"))).unwrap();
        assert_eq!(c.servers[0].ip, "127.0.0.1");
        let e =
            MhaConfig::load(&dir.0.join("missing.cnf"), Some(&dir.0.join("nothing"))).unwrap_err();
        assert!(
            format!("{e:#}").contains("missing.cnf: cannot read"),
            "{e:#}"
        );
    }
}
