//! After MHA has ended — finished, failed, killed, or stopped by the
//! operator's interrupt — find out what the switch left and settle it:
//!
//! * MHA finished and every host follows the new master: the switch's
//!   journal (kept open by the hooks for this command) is closed;
//! * anything else with the journal open: `recover` decides from the hosts
//!   — undo when the new master was never opened, finish forward (repoint
//!   whoever MHA did not get to) when it was, or refuse (exit 3);
//! * no journal: mha-helper changed nothing (MHA failed before the stop
//!   hook, or no hook of ours is configured).
//!
//! Whatever the ending, the cluster is read again at the end so that the
//! operator is told what it is, not what MHA's exit code suggests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::run::SwitchRun;
use crate::exit::NeedsRecover;
use crate::online::HOOKS_DONE;
use crate::recover::decide::Decision;
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::note;
use crate::state::journal::Journal;
use crate::state::StateDir;
use crate::topology::{self, HostFacts};

/// How the switch ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// MHA finished it; every host follows the new master.
    Switched,
    /// MHA did not finish, but the new master had been opened: mha-helper
    /// finished the switch, repointing these hosts.
    Finished { repointed: Vec<String> },
    /// MHA stopped before the new master was opened: mha-helper undid
    /// every change it had made.
    RolledBack,
    /// MHA failed before mha-helper changed anything.
    Untouched,
}

/// The settled switch.
#[derive(Debug)]
pub struct Settled {
    pub ending: Ending,
    pub orig: Option<String>,
    pub new: Option<String>,
    /// Every host as it is now.
    pub cluster: Vec<HostFacts>,
}

impl Settled {
    /// The name of the ending in the JSON output.
    pub fn outcome(&self) -> &'static str {
        match self.ending {
            Ending::Switched => "switched",
            Ending::Finished { .. } => "finished-by-mha-helper",
            Ending::RolledBack => "rolled-back",
            Ending::Untouched => "failed-unchanged",
        }
    }
}

/// Settle the switch `id` after MHA's `run`.
pub fn after_mha(
    paths: &ConfigPaths,
    setup: &Setup,
    state: &StateDir,
    id: &str,
    run: &SwitchRun,
) -> Result<Settled> {
    wait_for_hooks(id, Duration::from_secs(30))?;
    let Some(journal) = Journal::open(state)? else {
        return Ok(Settled {
            ending: if run.success {
                Ending::Switched
            } else {
                Ending::Untouched
            },
            orig: None,
            new: None,
            cluster: topology::read_cluster(setup, None)?,
        });
    };
    if journal.id() != Some(id) {
        return Err(anyhow!(
            "the open journal {} is not this switch's ({id}); run `mha-helper recover --conf {}`",
            journal.path().display(),
            setup.app_path().display()
        )
        .context(NeedsRecover));
    }
    let (orig, new) = journal
        .masters()
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .unwrap_or_default();
    let named = |ending: Ending, cluster: Vec<HostFacts>| Settled {
        ending,
        orig: Some(orig.clone()),
        new: Some(new.clone()).filter(|n| !n.is_empty()),
        cluster,
    };
    if run.success && journal.reached(HOOKS_DONE) {
        // Through the switch's session keeper, which start left for this.
        let keeper = crate::online::keeper_of(&journal);
        let cluster = topology::read_cluster(setup, keeper.as_ref());
        if let Some(k) = &keeper {
            crate::ssh::keeper::stop(k);
        }
        let cluster = cluster?;
        let problems = topology::unsettled(&cluster, &new, alone(&journal, &orig));
        if problems.is_empty() {
            journal.close(state, "completed")?;
            return Ok(named(Ending::Switched, cluster));
        }
        log::warn!(
            "MHA reports success, but the cluster is not settled on {new}: {}; settling it",
            problems.join("; ")
        );
    }
    let settled = crate::recover::settle(paths, crate::recover::Options::default())?;
    let ending = match settled.decision {
        Some(Decision::Complete { repoint }) => Ending::Finished { repointed: repoint },
        Some(Decision::Undo { .. }) => Ending::RolledBack,
        _ => Ending::Untouched,
    };
    Ok(named(ending, topology::read_cluster(setup, None)?))
}

/// The old master when it may stand alone after the switch: always after
/// a failover (it is dead), after an online switch unless it was to
/// follow the new master.
fn alone<'a>(journal: &Journal, orig: &'a str) -> Option<&'a str> {
    let follows = journal.kind() == Some(crate::state::journal::Kind::Online)
        && journal
            .note_value(note::ORIG_FOLLOWS_NEW)
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    (!follows).then_some(orig)
}

/// Wait until nothing of switch `id` runs any more: MHA may have died
/// while a hook ran, or while its own children repointed replicas, and
/// neither ends with it. They are found by the switch id in their
/// environment (the session keeper and a background fencer are started
/// without it: they outlive the switch by design).
fn wait_for_hooks(id: &str, wait: Duration) -> Result<()> {
    let until = Instant::now() + wait;
    let mut said = false;
    loop {
        let running = processes_of(id);
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(anyhow!(
                "processes of this switch (hooks, or MHA's children) still run after {:?} (pids \
                 {running:?}); the switch is left as it is: run `mha-helper recover` once they \
                 have ended",
                wait
            )
            .context(NeedsRecover));
        }
        if !said {
            log::info!("waiting for what is left of this switch to end (pids {running:?})");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of this user's processes (other than us) whose environment names
/// switch `id`.
fn processes_of(id: &str) -> Vec<u32> {
    let want = format!("{}={id}", crate::state::journal::SWITCH_ID_VAR);
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && crate::state::lock::alive(*pid))
        .filter(|pid| {
            let env = std::fs::read(PathBuf::from(format!("/proc/{pid}/environ")));
            env.is_ok_and(|e| e.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect()
}
