//! The SSH transport: one libssh2 session per database host per run
//! (`connection`, where to reach it: `target`, logged in by `login`,
//! through a jump host when ssh_options name one: `jump`), host keys
//! (`known_hosts`), MHA's ssh_options (`options`), and the session keeper that holds the sessions across the
//! two phases of an online switch (`keeper`).

pub mod connection;
mod jump;
pub mod keeper;
pub mod known_hosts;
mod login;
pub mod options;
mod target;

pub use connection::{open_all, Connection, Exec, KeeperRef, Output, Stats, Target};
pub use options::{HostKeyPolicy, SshOptions};
