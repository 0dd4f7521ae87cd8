//! What every command starts from: the MHA application file (read as MHA
//! reads it), the helper's own settings, and where the journal lives.
//! Errors here are bad input: one line naming the file, line and fault.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::config::helper::HelperConfig;
use crate::config::mha::MhaConfig;
use crate::exit::bad_input;
use crate::journal::Journal;

/// The configuration files a command was pointed at.
#[derive(Debug, Clone, Default)]
pub struct ConfigPaths {
    pub conf: Option<PathBuf>,
    pub global: Option<PathBuf>,
    pub helper: Option<PathBuf>,
}

pub struct Setup {
    pub mha: MhaConfig,
    pub helper: HelperConfig,
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
        let helper_path = self.helper.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_HELPER_CONF);
            default.is_file().then_some(default)
        });
        let helper = HelperConfig::load(helper_path.as_deref()).map_err(bad_input)?;
        helper.warn_unknown_hosts(&mha);
        Ok(Setup { mha, helper })
    }
}

/// Read when no --helper-conf is given and the file exists.
pub const DEFAULT_HELPER_CONF: &str = "/etc/mha-helper/helper.cnf";

impl Setup {
    /// The journal file of this application.
    pub fn journal_path(&self) -> PathBuf {
        let workdir = self
            .mha
            .servers
            .first()
            .map(|s| s.manager_workdir.clone())
            .unwrap_or_else(|| "/var/tmp".to_string());
        let dir = self.helper.defaults().journal_dir_or(&workdir);
        Journal::path_for(&dir, &self.mha.app)
    }

    pub fn app_path(&self) -> &Path {
        &self.mha.app_path
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
