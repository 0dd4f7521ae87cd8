//! The names of the steps a switch is made of: one enum, so that a phase
//! that looks for another phase's step in the journal (start for stop's
//! read-only change, recover for start's opening) names it by type, not by
//! a string it could misspell. The journal keeps each name as its text.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepId {
    NewMasterReadOnly,
    BlockAccounts,
    DrainSessions,
    KillSessions,
    OldMasterReadOnly,
    VerifyFence,
    VipLeaveOldMaster,
    VipLeaveDeadMaster,
    NewMasterWritable,
    VipArriveNewMaster,
    RestoreGrants,
    FenceReadOnly,
    FenceOldMaster,
    DetachNewMaster,
    RepointReplica,
    RestartReplication,
    /// A journaled undo run by recover.
    Undo,
}

impl StepId {
    pub const ALL: [StepId; 17] = [
        StepId::NewMasterReadOnly,
        StepId::BlockAccounts,
        StepId::DrainSessions,
        StepId::KillSessions,
        StepId::OldMasterReadOnly,
        StepId::VerifyFence,
        StepId::VipLeaveOldMaster,
        StepId::VipLeaveDeadMaster,
        StepId::NewMasterWritable,
        StepId::VipArriveNewMaster,
        StepId::RestoreGrants,
        StepId::FenceReadOnly,
        StepId::FenceOldMaster,
        StepId::DetachNewMaster,
        StepId::RepointReplica,
        StepId::RestartReplication,
        StepId::Undo,
    ];

    /// The step's name in the journal, the report and fault points.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepId::NewMasterReadOnly => "new-master-read-only",
            StepId::BlockAccounts => "block-accounts",
            StepId::DrainSessions => "drain-sessions",
            StepId::KillSessions => "kill-sessions",
            StepId::OldMasterReadOnly => "old-master-read-only",
            StepId::VerifyFence => "verify-fence",
            StepId::VipLeaveOldMaster => "vip-leave-old-master",
            StepId::VipLeaveDeadMaster => "vip-leave-dead-master",
            StepId::NewMasterWritable => "new-master-writable",
            StepId::VipArriveNewMaster => "vip-arrive-new-master",
            StepId::RestoreGrants => "restore-grants",
            StepId::FenceReadOnly => "fence-read-only",
            StepId::FenceOldMaster => "fence-old-master",
            StepId::DetachNewMaster => "detach-new-master",
            StepId::RepointReplica => "repoint-replica",
            StepId::RestartReplication => "restart-replication",
            StepId::Undo => "undo",
        }
    }

    /// The step a journal name stands for.
    pub fn parse(name: &str) -> Option<StepId> {
        StepId::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_name_is_distinct_and_reads_back_as_its_step() {
        let mut names: Vec<&str> = StepId::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StepId::ALL.len());
        for s in StepId::ALL {
            assert_eq!(StepId::parse(s.as_str()), Some(s));
        }
        assert_eq!(StepId::parse("no-such-step"), None);
    }
}
