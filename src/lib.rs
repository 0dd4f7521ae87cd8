//! mha-helper: safe MySQL/MariaDB master switches around MHA.
//!
//! The binary (`src/main.rs`) only parses arguments and maps results to exit
//! codes; everything else lives here, one module per concern:
//! configuration (`config`, `setup`), transport (`ssh`), the remote client
//! (`mysql`), accounts (`grants`), the journal, the step engine (`steps`,
//! `engine`), the switches (`online`, `failover`, `recover`), the operator
//! commands (`check`, `mha`), and output (`report`, `logger`).

pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod exit;
pub mod failover;
pub mod fault;
pub mod grants;
pub mod journal;
pub mod keeper;
pub mod logger;
pub mod mha;
pub mod mha_args;
pub mod mysql;
pub mod online;
pub mod quote;
pub mod recover;
pub mod report;
pub mod scrub;
pub mod setup;
pub mod ssh;
pub mod steps;
#[cfg(test)]
pub mod testing;
pub mod vip;
