//! What every command starts from: the MHA application file (read as MHA
//! reads it), the helper's own settings, and the state directory (journal,
//! lock, ...). Errors here are bad input: one line naming the file, line
//! and fault.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::cluster::{self, HostSpec};
use crate::config::helper::HelperConfig;
use crate::config::mha::MhaConfig;
use crate::exit::bad_input;
use crate::ssh::options::SshOptions;
use crate::state::StateDir;

/// The configuration files a command was pointed at.
#[derive(Debug, Clone, Default)]
pub struct ConfigPaths {
    pub conf: Option<PathBuf>,
    pub global: Option<PathBuf>,
    pub helper: Option<PathBuf>,
}

impl ConfigPaths {
    /// The same files as `--conf`, `--helper-conf`, `--global-conf`
    /// arguments, for a process we start (the session keeper).
    pub fn as_args(&self) -> Vec<std::ffi::OsString> {
        let mut v = Vec::new();
        for (flag, p) in [
            ("--conf", &self.conf),
            ("--helper-conf", &self.helper),
            ("--global-conf", &self.global),
        ] {
            if let Some(p) = p {
                v.push(flag.into());
                v.push(p.clone().into_os_string());
            }
        }
        v
    }
}

pub struct Setup {
    pub mha: MhaConfig,
    pub helper: HelperConfig,
    pub paths: ConfigPaths,
}

impl ConfigPaths {
    pub fn load(&self) -> Result<Setup> {
        let conf = self.conf.as_deref().ok_or_else(|| {
            bad_input(anyhow!(
                "no MHA configuration given: pass --conf=/etc/mha/app1.cnf (for hooks, inside the \
                 script setting: master_ip_failover_script = /usr/bin/mha-helper master-ip-failover \
                 --conf=/etc/mha/app1.cnf) or set MHA_CONF"
            ))
        })?;
        let mha = MhaConfig::load(conf, self.global.as_deref()).map_err(bad_input)?;
        refuse_rerouting(&mha)?;
        let helper_path = self.helper.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_HELPER_CONF);
            default.is_file().then_some(default)
        });
        let helper = HelperConfig::load(helper_path.as_deref()).map_err(bad_input)?;
        helper.warn_unknown_hosts(&mha);
        Ok(Setup {
            mha,
            helper,
            paths: self.clone(),
        })
    }
}

/// Refuse (bad input) ssh_options that send connections another way than
/// mha-helper's SSH client can go (see `SshOptions::refused`).
fn refuse_rerouting(mha: &MhaConfig) -> Result<()> {
    for s in &mha.servers {
        let options = s.ssh_options.as_deref().map(SshOptions::parse);
        if let Some(why) = options.and_then(|o| o.refused.into_iter().next()) {
            return Err(bad_input(anyhow!(
                "{} (server {}): {why}",
                mha.app_path.display(),
                s.hostname
            )));
        }
    }
    Ok(())
}

/// Read when no --helper-conf is given and the file exists.
pub const DEFAULT_HELPER_CONF: &str = "/etc/mha-helper/helper.cnf";

impl Setup {
    /// Where the state directory is (`journal_dir`, default
    /// `/var/lib/mha-helper`).
    pub fn state_path(&self) -> PathBuf {
        self.helper
            .defaults()
            .journal_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::state::DEFAULT_DIR))
    }

    /// The state directory, created if missing and checked (see `state`).
    pub fn state(&self) -> Result<StateDir> {
        StateDir::open(&self.state_path(), &self.mha.app).map_err(bad_input)
    }

    pub fn app_path(&self) -> &Path {
        &self.mha.app_path
    }

    /// Every server block's hostname.
    pub fn all_hosts(&self) -> Vec<String> {
        self.mha
            .servers
            .iter()
            .map(|s| s.hostname.clone())
            .collect()
    }

    /// Host specs for `names` (every server block when empty), with the
    /// helper's own known_hosts for keys learnt on first use.
    pub fn specs(&self, names: &[&str]) -> Result<Vec<HostSpec>> {
        let own = self.own_known_hosts();
        let mut specs = cluster::specs(&self.mha, &self.helper, names)?;
        for s in &mut specs {
            s.target.own_known_hosts = own.clone();
        }
        Ok(specs)
    }

    /// The state directory's known_hosts, only when the directory passes
    /// its checks and the file (if there) is a private file of ours: host
    /// keys another user could plant are never read.
    fn own_known_hosts(&self) -> Option<PathBuf> {
        let state = self.state().ok()?;
        let path = state.known_hosts();
        match crate::state::open_private(&path, false) {
            Ok(_) => Some(path),
            Err(e) => {
                log::warn!("{e:#}; not using it");
                None
            }
        }
    }

    /// The MHA hostname for a name MHA passed (hostname, ip or block).
    pub fn hostname(&self, name: &str) -> Result<String> {
        self.mha
            .server(name)
            .map(|s| s.hostname.clone())
            .ok_or_else(|| {
                bad_input(anyhow!(
                    "host '{name}' is not a server of {} (known: {})",
                    self.mha.app_path.display(),
                    self.mha
                        .servers
                        .iter()
                        .map(|s| s.hostname.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}
