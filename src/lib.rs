//! mha-helper: safe MySQL/MariaDB master switches around MHA.
//!
//! The binary (`src/main.rs`) only parses arguments and maps results to exit
//! codes; everything else lives here, one module per concern:
//! configuration (`config`, `setup`), transport (`ssh`, with the session
//! keeper), the remote client (`mysql`), the files kept on the manager
//! (`state`: journal, lock), host operations (`ops`: read_only, accounts,
//! sessions, vip) and grant text (`grants`), the journaled steps over them
//! with their undos (`steps`, `undo`) and the engine that runs them
//! (`engine`; what a step will send and did send: `listing`), the switches (`online`, `failover`, `recover`, `fence`), what
//! the cluster is now (`topology`), the operator commands (`check`, `mha`),
//! and output (`report`, `logger`).

pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod docs;
pub mod engine;
pub mod exit;
pub mod failover;
pub mod fault;
pub mod fence;
pub mod grants;
pub mod listing;
pub mod local;
pub mod logger;
pub mod metrics;
pub mod mha;
pub mod mha_args;
pub mod mysql;
pub mod notify;
pub mod online;
pub mod ops;
pub mod output;
pub mod plans;
pub mod quote;
pub mod recover;
pub mod report;
pub mod runner;
pub mod scrub;
pub mod setup;
pub mod shutdown;
pub mod ssh;
pub mod state;
pub mod status;
pub mod step_id;
pub mod steps;
pub mod table;
#[cfg(test)]
pub mod testing;
pub mod topology;
pub mod undo;
