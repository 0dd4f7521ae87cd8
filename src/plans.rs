//! The plans more than one phase builds: opening a new master and fencing
//! an old one. The failover hook, the fence, the online start and recover
//! all take them from here, so that each is built one way.

use crate::config::HostSettings;
use crate::step_id::StepId;
use crate::steps::read_only::{MakeWritable, SetReadOnly};
use crate::steps::sessions::KillSessions;
use crate::steps::vip::MoveVip;
use crate::steps::Step;

pub type Steps = Vec<Box<dyn Step>>;

/// Open `new`: writable once every other host is proven read-only (the
/// hosts in `required` must answer for the proof), its undo putting back
/// the read-only state `before`; then the writer VIP, when the host has
/// one configured.
pub fn open_new_master(
    new: &str,
    settings: &HostSettings,
    required: &[String],
    before: (bool, Option<bool>),
) -> Steps {
    let mut steps: Steps = vec![Box::new(
        MakeWritable::new(StepId::NewMasterWritable, new, required).undoing_to(before.0, before.1),
    )];
    if settings.writer_vip.is_some() {
        steps.push(Box::new(MoveVip::new(
            StepId::VipArriveNewMaster,
            new,
            true,
        )));
    }
    steps
}

/// How an old master is fenced.
pub struct Fence<'a> {
    /// The read-only step's name, and whether to set it (only when its
    /// mysqld answers).
    pub read_only: Option<StepId>,
    /// The VIP step's name (taken off when the host has one configured).
    pub vip: StepId,
    /// Kill the application's sessions, seen as the MHA account `admin`.
    pub kill_as: Option<&'a str>,
}

/// Fence `host`: read-only, the writer VIP off, its application sessions
/// killed — as far as `how` says.
pub fn fence(host: &str, settings: &HostSettings, how: Fence) -> Steps {
    let mut steps: Steps = Vec::new();
    if let Some(id) = how.read_only {
        steps.push(Box::new(SetReadOnly::new(
            id,
            host,
            settings.super_read_only,
        )));
    }
    if settings.writer_vip.is_some() {
        steps.push(Box::new(MoveVip::new(how.vip, host, false)));
    }
    if let Some(admin) = how.kill_as {
        steps.push(Box::new(KillSessions::new(host, admin)));
    }
    steps
}
