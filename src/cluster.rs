//! The hosts a command works on: MHA's server blocks joined with the
//! helper's per-host settings, turned into SSH targets and MySQL access,
//! then connected (in parallel, once per host per run).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::config::helper::{HelperConfig, HostSettings};
use crate::config::mha::{MhaConfig, Server};
use crate::listing::{Planned, Sent};
use crate::mysql::{self, Access, Results, Script, ServerInfo};
use crate::ssh::{self, Exec, SshOptions, Target};

pub use crate::ssh::KeeperRef;

/// Everything needed to reach one host, before any connection is made.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub server: Server,
    pub settings: HostSettings,
    pub target: Target,
    pub access: Access,
}

impl HostSpec {
    pub fn new(server: &Server, settings: &HostSettings) -> HostSpec {
        let mut options = server
            .ssh_options
            .as_deref()
            .map(SshOptions::parse)
            .unwrap_or_default();
        if let Some(p) = options.port.filter(|p| *p != server.ssh_port) {
            options.warnings.push(format!(
                "ssh_options: port {p} ignored: MHA's ssh_port {} wins, as in MHA's own ssh commands",
                server.ssh_port
            ));
        }
        let target = Target {
            name: server.hostname.clone(),
            ssh_host: server.ssh_host.clone(),
            ssh_ip: server.ssh_ip.clone(),
            port: server.ssh_port,
            user: server.ssh_user.clone(),
            options,
            connect_timeout: Duration::from_secs(server.ssh_connection_timeout.max(1)),
            own_known_hosts: None,
            keeper: None,
        };
        let access = Access {
            client: settings.mysql_client.clone(),
            socket: settings.mysql_socket.clone(),
            host: settings.mysql_host.clone(),
            port: server.port,
            defaults_file: settings.mysql_defaults_file.clone(),
            user: server.user.clone(),
            password: server.password.clone(),
            connect_timeout: server.ssh_connection_timeout.max(1),
        };
        HostSpec {
            name: server.hostname.clone(),
            server: server.clone(),
            settings: settings.clone(),
            target,
            access,
        }
    }

    /// Use the MySQL credentials MHA passed to a hook, when it passed them.
    pub fn with_credentials(mut self, user: Option<&str>, password: Option<&str>) -> HostSpec {
        if let Some(u) = user.filter(|u| !u.is_empty()) {
            self.access.user = u.to_string();
        }
        if let Some(p) = password {
            if !p.is_empty() || self.access.password.is_empty() {
                self.access.password = p.to_string();
            }
        }
        self
    }
}

/// The specs of the named hosts (every server block when `names` is empty).
pub fn specs(mha: &MhaConfig, helper: &HelperConfig, names: &[&str]) -> Result<Vec<HostSpec>> {
    let servers: Vec<&Server> = if names.is_empty() {
        mha.servers.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                mha.server(n).ok_or_else(|| {
                    anyhow!(
                        "host '{n}' is not a server block of {} (known: {})",
                        mha.app_path.display(),
                        mha.servers
                            .iter()
                            .map(|s| s.hostname.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    Ok(servers
        .into_iter()
        .map(|s| HostSpec::new(s, helper.for_server(s)))
        .collect())
}

/// A connected host.
pub struct Host {
    pub spec: HostSpec,
    pub conn: Box<dyn Exec>,
    pub info: Option<ServerInfo>,
    /// What was sent while recording is on (the engine turns it on around
    /// a step's apply when a run shows what it sent).
    pub sent: Option<Vec<Sent>>,
}

impl Host {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Keep what is about to be sent, when recording is on.
    pub fn record(&mut self, sent: Sent) {
        if let Some(v) = self.sent.as_mut() {
            v.push(sent);
        }
    }

    /// Run a script with this host's step_timeout.
    pub fn run(&mut self, script: &Script) -> Result<Results> {
        let t = self.spec.settings.step_timeout;
        self.run_with(script, t)
    }

    pub fn run_with(&mut self, script: &Script, timeout: Duration) -> Result<Results> {
        if self.sent.is_some() {
            let s = Sent::sql(self.name(), script);
            self.record(s);
        }
        let flavor = self.info.as_ref().map(|i| i.flavor);
        mysql::run_script(
            self.conn.as_mut(),
            &self.spec.access,
            script,
            timeout,
            flavor,
        )
    }

    /// Read (or re-read) what kind of server this is and its state.
    pub fn refresh_info(&mut self) -> Result<&ServerInfo> {
        self.inspect(&|_| {})?;
        self.info()
    }

    /// Read what kind of server this is and its state, with `extra`
    /// queries in the same script. The first time, the replica status is
    /// asked in the current form, and again in the old one only if the
    /// server predates it; after that, in the form the server has.
    pub fn inspect(&mut self, extra: &dyn Fn(&mut Script)) -> Result<Results> {
        let known_old = self
            .info
            .as_ref()
            .map(|i| i.dialect().replica_status() == crate::mysql::dialect::REPLICA_STATUS_OLD);
        let ask = |h: &mut Host, old: bool| {
            let mut s = h.info_script(old);
            extra(&mut s);
            h.run(&s)
        };
        let r = match ask(self, known_old.unwrap_or(false)) {
            Err(e) if known_old.is_none() && ServerInfo::needs_old_replica_status(&e) => {
                log::debug!(
                    "{}: no SHOW REPLICA STATUS; asking SHOW SLAVE STATUS",
                    self.name()
                );
                ask(self, true)?
            }
            r => r?,
        };
        let info =
            ServerInfo::parse(&r).with_context(|| format!("{}: server info", self.name()))?;
        self.info = Some(info);
        Ok(r)
    }

    /// The script that reads the server's kind and state, the replica
    /// status asked in its old form (`SHOW SLAVE STATUS`) or not.
    fn info_script(&self, old: bool) -> Script {
        let mut s = Script::new(self.spec.settings.step_timeout);
        ServerInfo::add_queries(&mut s, old);
        s
    }

    /// What [`Host::refresh_info`] sends, for a plan (`when`: how often).
    pub fn refresh_plan(&self, when: Option<&str>) -> Vec<Planned> {
        let plan = |s: &Script| match when {
            Some(w) => Planned::repeated(self.name(), s, w),
            None => Planned::once(self.name(), s),
        };
        match &self.info {
            Some(i) => {
                let old = i.dialect().replica_status() == crate::mysql::dialect::REPLICA_STATUS_OLD;
                vec![plan(&self.info_script(old))]
            }
            None => vec![
                plan(&self.info_script(false)),
                Planned::repeated(
                    self.name(),
                    &self.info_script(true),
                    "again, only if the server predates SHOW REPLICA STATUS",
                ),
            ],
        }
    }

    pub fn info(&self) -> Result<&ServerInfo> {
        self.info
            .as_ref()
            .ok_or_else(|| anyhow!("{}: server not inspected yet", self.spec.name))
    }
}

/// Open SSH sessions to all `specs` in parallel (or use their session
/// keeper). Hosts that could not be reached come back as errors, in the
/// same order.
pub fn connect(specs: Vec<HostSpec>) -> Vec<Result<Host>> {
    warn_options(&specs);
    let direct: Vec<Target> = specs
        .iter()
        .filter(|s| s.target.keeper.is_none())
        .map(|s| s.target.clone())
        .collect();
    let mut opened = ssh::open_all(&direct).into_iter();
    specs
        .into_iter()
        .map(|spec| {
            let conn: Box<dyn Exec> = match &spec.target.keeper {
                Some(k) => Box::new(ssh::keeper::KeeperExec::new(k, &spec.target)),
                None => Box::new(opened.next().expect("one result per direct target")?),
            };
            Ok(Host {
                spec,
                conn,
                info: None,
                sent: None,
            })
        })
        .collect()
}

/// Say which ssh_options each host will not honour (however it is reached).
fn warn_options(specs: &[HostSpec]) {
    for s in specs {
        for w in &s.target.options.warnings {
            log::warn!("{}: {w}", s.name);
        }
    }
}

/// Run `f` on every host at once (one thread per host; each thread has its
/// own session, none is shared) and return the results in order.
pub fn parallel<T: Send>(
    hosts: &mut [&mut Host],
    f: impl Fn(&mut Host) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = hosts.iter_mut().map(|h| s.spawn(move || f(h))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("worker thread panicked")))
            })
            .collect()
    })
}

/// Connect to every spec in parallel; the hosts that answered, and the
/// names of those that did not with why.
pub fn connect_split(specs: Vec<HostSpec>) -> (Vec<Host>, Vec<(String, String)>) {
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut hosts = Vec::new();
    let mut down = Vec::new();
    for (name, r) in names.into_iter().zip(connect(specs)) {
        match r {
            Ok(h) => hosts.push(h),
            Err(e) => down.push((name, format!("{e:#}"))),
        }
    }
    (hosts, down)
}
