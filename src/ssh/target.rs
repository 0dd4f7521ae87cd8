//! Where and how to log in to one host: MHA's address, port and user for
//! it, its ssh_options, and the session keeper to go through.

use std::path::PathBuf;
use std::time::Duration;

use super::options::{self, HostKeyPolicy, SshOptions};

/// A session keeper to talk to (see `keeper`): its socket and the pid it
/// must have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeeperRef {
    pub socket: PathBuf,
    pub pid: u32,
}

/// Where and how to log in to one database host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The MHA hostname, used in every message.
    pub name: String,
    pub ssh_host: String,
    pub ssh_ip: String,
    pub port: u16,
    pub user: String,
    pub options: SshOptions,
    /// MHA's ssh_connection_timeout, unless ssh_options set ConnectTimeout.
    pub connect_timeout: Duration,
    /// Where host keys learnt on first use go when the configured
    /// known_hosts cannot take them (`/dev/null`, unwritable); also read.
    pub own_known_hosts: Option<PathBuf>,
    /// Run commands through this session keeper (one SSH session per host
    /// for a whole switch), falling back to a direct session.
    pub keeper: Option<KeeperRef>,
}

impl Target {
    pub(super) fn known_hosts_files(&self) -> Vec<PathBuf> {
        let mut files = if self.options.known_hosts_files.is_empty() {
            let ssh = options::home_dir().join(".ssh");
            vec![ssh.join("known_hosts"), ssh.join("known_hosts2")]
        } else {
            self.options.known_hosts_files.clone()
        };
        if self.options.global_known_hosts_files.is_empty() {
            files.push("/etc/ssh/ssh_known_hosts".into());
            files.push("/etc/ssh/ssh_known_hosts2".into());
        } else {
            files.extend(self.options.global_known_hosts_files.iter().cloned());
        }
        if let Some(own) = &self.own_known_hosts {
            files.push(own.clone());
        }
        files
    }

    /// Give up connecting after `limit` at most, whatever is configured.
    pub fn cap_connect_timeout(&mut self, limit: Duration) {
        self.connect_timeout = self.connect_timeout.min(limit);
        if let Some(c) = self.options.connect_timeout.as_mut() {
            *c = (*c).min(limit);
        }
    }

    pub(super) fn policy(&self) -> HostKeyPolicy {
        self.options
            .host_key_policy
            .unwrap_or(HostKeyPolicy::Strict)
    }
}
