//! Host operations: what mha-helper does to one database host, and reads
//! from it, independent of any switch. The switches (`online`, `failover`,
//! `recover`) and `check` all go through these; `steps/` wraps the ones
//! that change a host into journaled, undoable steps.
//!
//! * `read_only` — set, put back, read, and prove other hosts read-only;
//! * `accounts` — which accounts are the application's, their grants,
//!   blocking and giving back;
//! * `sessions` — the application's connections: list, drain, kill, and
//!   the proof that the fence holds;
//! * `repoint` — a host pointed at the new master after a switch, only with
//!   a proof that it has nothing the new master lacks;
//! * `vip` — the writer virtual IP: add, remove, where it is, and whether
//!   the SSH user may move it.

pub mod accounts;
pub mod read_only;
pub mod repoint;
pub mod sessions;
pub mod vip;
