//! What both phases of the online hook share (and what the failover
//! hook, recover and the operator's commands use of them): MHA's two
//! masters, the hook's own options, the report's output, the lock a phase
//! works under, and the journal's marks of a switch.

use anyhow::{anyhow, Result};

use crate::cluster::HostSpec;
use crate::exit::bad_input;
use crate::mha_args::OnlineArgs;
use crate::setup::{ConfigPaths, Setup};
use crate::state::journal::note;

/// Options of the hook that are ours, not MHA's.
#[derive(Debug, Clone, Default)]
pub struct HookOptions {
    pub paths: ConfigPaths,
    pub dry_run: bool,
    pub json: bool,
    /// Put in the report what each step sent (`--show-sent`).
    pub show_sent: bool,
    /// Keep the reports here instead of printing them (a command that
    /// runs the hook in its own process and prints one document).
    pub capture: Option<crate::report::Captured>,
}

/// The two masters of an online switch, as MHA named them.
pub struct Masters {
    pub orig: String,
    pub new: String,
}

impl Masters {
    pub fn from_args(setup: &Setup, args: &OnlineArgs) -> Result<Masters> {
        let orig = setup.hostname(&args.orig.host)?;
        let new = setup.hostname(&args.new.host)?;
        if orig == new {
            return Err(bad_input(anyhow!("orig and new master are both {orig}")));
        }
        Ok(Masters { orig, new })
    }

    /// Specs of every host of the cluster, the two masters with the MySQL
    /// credentials MHA passed.
    pub fn cluster_specs(&self, setup: &Setup, args: &OnlineArgs) -> Result<Vec<HostSpec>> {
        let specs = setup.specs(&[]).map_err(bad_input)?;
        Ok(specs
            .into_iter()
            .map(|s| {
                if s.name == self.orig {
                    s.with_credentials(args.orig.user.as_deref(), args.orig.password.as_deref())
                } else if s.name == self.new {
                    s.with_credentials(args.new.user.as_deref(), args.new.password.as_deref())
                } else {
                    s
                }
            })
            .collect())
    }
}

/// Whether an operator's command (`mha-helper switchover` or `failover`)
/// runs this hook's switch and holds its lock: it then closes the journal
/// itself once it has seen MHA finish, so that a switch MHA does not finish
/// (MHA dies after the new master opened) stays open for it, and for
/// `recover`, to settle.
pub fn closed_by_operator(
    lock: &crate::state::lock::AppLock,
    journal: &crate::state::journal::Journal,
) -> bool {
    matches!(lock.held(), crate::state::lock::Held::Ancestor(o)
        if o.switch.is_some() && o.switch.as_deref() == journal.id())
}

/// The phase a journal reaches when the switch's own work is done but an
/// operator's command still has to see MHA finish (`closed_by_operator`).
pub const HOOKS_DONE: &str = "hooks-done";

/// The session keeper a journal names, if any.
pub fn keeper_of(journal: &crate::state::journal::Journal) -> Option<crate::cluster::KeeperRef> {
    serde_json::from_value(journal.note_value(note::KEEPER)?.clone()).ok()
}

/// Take the application's lock for a phase of the switch `journal`
/// records, or work under the lock its session keeper holds, once the
/// keeper has proven to be that switch's (same uid, recorded pid, same
/// switch id). Returns the lock and the keeper to use, if any. Someone else
/// holding the lock is a refusal.
pub fn phase_lock(
    state: &crate::state::StateDir,
    command: &str,
    journal: Option<&crate::state::journal::Journal>,
) -> Result<(
    crate::state::lock::AppLock,
    Option<crate::cluster::KeeperRef>,
)> {
    use crate::state::lock::{AppLock, Busy};
    let keeper = journal.and_then(keeper_of);
    let busy = match crate::ssh::keeper::acquire(state, command) {
        Ok(lock) => return Ok((lock, keeper)),
        Err(e) => e.downcast::<Busy>()?,
    };
    if let (Some(owner), Some(k), Some(j)) = (&busy.owner, &keeper, journal) {
        if owner.command == "keeper" && owner.pid == k.pid {
            match crate::ssh::keeper::ping(k) {
                Ok(st) if st.switch.as_deref() == j.id() => {
                    log::debug!(
                        "working under the lock of the session keeper (pid {})",
                        k.pid
                    );
                    return Ok((AppLock::under_keeper(state, owner.clone()), keeper));
                }
                Ok(st) => log::warn!(
                    "the session keeper (pid {}) serves switch {:?}, not {:?}",
                    k.pid,
                    st.switch,
                    j.id()
                ),
                Err(e) => log::warn!("{e:#}"),
            }
        }
    }
    Err(anyhow::Error::new(busy).context(crate::exit::Refused))
}
