//! Which replica MHA 0.58 would make the new master of a dead-master
//! failover when none is named, for `failover --dry-run`: its rules
//! (ServerManager::select_new_master), in its order, over what the hosts
//! say now. MHA decides again when it runs; this says what it would pick
//! from the cluster as it stands.
//!
//! A replica is *latest* when it has read the dead master's binary log
//! furthest (file, then position); it is *bad* when `no_master` is set or
//! it logs no binary log. MHA's further "too far behind" rule (relay log
//! not applied) is not read here.

use anyhow::{anyhow, Result};

use crate::cluster::Host;
use crate::setup::Setup;

/// One live replica of the dead master, in the configuration's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// How far it has read the dead master's binary log.
    pub read: (String, u64),
    /// `candidate_master = 1`.
    pub preferred: bool,
    /// Why it cannot be the new master (`no_master`, no binary log).
    pub bad: Option<String>,
}

/// MHA's pick among `all`, with the rule that chose it.
pub fn choose(all: &[Candidate]) -> Result<(String, &'static str)> {
    let newest = all
        .iter()
        .map(|c| &c.read)
        .max()
        .ok_or_else(|| anyhow!("no live replica of the dead master to promote"))?;
    let latest = |c: &Candidate| &c.read == newest;
    let good = |c: &Candidate| c.bad.is_none();
    let first = |rule: &dyn Fn(&Candidate) -> bool, why: &'static str| {
        all.iter().find(|c| rule(c)).map(|c| (c.name.clone(), why))
    };
    first(
        &|c| latest(c) && c.preferred && good(c),
        "a candidate_master that has the latest events",
    )
    .or_else(|| first(&|c| c.preferred && good(c), "a candidate_master"))
    .or_else(|| {
        first(
            &|c| latest(c) && good(c),
            "a replica that has the latest events",
        )
    })
    .or_else(|| first(&good, "a replica"))
    .ok_or_else(|| {
        anyhow!(
            "no replica can be the new master: {}",
            all.iter()
                .map(|c| format!("{} ({})", c.name, c.bad.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The live replicas of `dead` among `hosts` (read now, in parallel), in
/// the configuration's order.
pub fn candidates(setup: &Setup, hosts: &mut [Host], dead: &str) -> Vec<Candidate> {
    let resolve = crate::topology::resolver(setup);
    let mut refs: Vec<&mut Host> = hosts.iter_mut().collect();
    let infos = crate::cluster::parallel(&mut refs, |h| h.refresh_info().cloned());
    let mut out = Vec::new();
    for name in setup.all_hosts() {
        let Some(i) = hosts.iter().position(|h| h.name() == name) else {
            continue;
        };
        let Ok(info) = &infos[i] else { continue };
        let Some(r) = info
            .replica
            .as_ref()
            .filter(|r| resolve(&r.master_host) == dead)
        else {
            continue;
        };
        let server = setup.mha.server(&name);
        let bad = if server.is_some_and(|s| s.no_master) {
            Some("no_master".to_string())
        } else if !info.log_bin {
            Some("no binary log".to_string())
        } else {
            None
        };
        out.push(Candidate {
            name,
            read: (r.master_log_file.clone(), r.read_master_log_pos),
            preferred: server.is_some_and(|s| s.candidate_master),
            bad,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, file: &str, pos: u64, preferred: bool, bad: Option<&str>) -> Candidate {
        Candidate {
            name: name.into(),
            read: (file.into(), pos),
            preferred,
            bad: bad.map(String::from),
        }
    }

    #[test]
    fn the_rules_apply_in_mhas_order() {
        let cases: &[(&str, Vec<Candidate>, &str)] = &[
            (
                "latest, first in the file, without preferences",
                vec![
                    c("db2", "b.2", 9, false, None),
                    c("db3", "b.2", 9, false, None),
                ],
                "db2",
            ),
            (
                "a later file wins over a larger position",
                vec![
                    c("db2", "b.1", 900, false, None),
                    c("db3", "b.2", 4, false, None),
                ],
                "db3",
            ),
            (
                "a latest candidate_master before a latest replica",
                vec![
                    c("db2", "b.2", 9, false, None),
                    c("db3", "b.2", 9, true, None),
                ],
                "db3",
            ),
            (
                "a candidate_master even when behind",
                vec![
                    c("db2", "b.2", 9, false, None),
                    c("db3", "b.2", 5, true, None),
                ],
                "db3",
            ),
            (
                "a bad candidate_master is passed over",
                vec![
                    c("db2", "b.2", 5, false, None),
                    c("db3", "b.2", 9, true, Some("no_master")),
                ],
                "db2",
            ),
        ];
        for (what, all, want) in cases {
            assert_eq!(choose(all).unwrap().0, *want, "{what}");
        }
    }

    #[test]
    fn no_replica_or_only_bad_ones_is_an_error_naming_them() {
        assert!(choose(&[]).is_err());
        let e = choose(&[c("db2", "b.1", 4, false, Some("no binary log"))]).unwrap_err();
        assert!(e.to_string().contains("db2 (no binary log)"), "{e}");
    }
}
