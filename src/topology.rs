//! What the cluster is now, host by host: whether it answers, whether it is
//! read-only, whom it replicates from and whether both threads run, and its
//! binary log position. One script per host, all hosts at once. `recover`
//! decides from it; the operator commands tell the operator from it what
//! MHA really left behind (and whether the switch is settled).

use serde::Serialize;

use crate::cluster::{self, Host};
use crate::mysql::{Flavor, Script};
use crate::setup::Setup;

/// One host as it is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostFacts {
    pub name: String,
    /// SSH and mysqld answered; otherwise why not.
    pub down: Option<String>,
    pub read_only: bool,
    /// The MHA hostname it replicates from (None: not a replica).
    pub source: Option<String>,
    /// Both replication threads run.
    pub replicating: bool,
    /// Its binary log position now (`file:pos`).
    pub binlog: Option<String>,
    /// Its transactions can be compared with another host's by GTID
    /// (MySQL with gtid_mode ON; MariaDB always tracks them).
    pub gtid: bool,
}

impl HostFacts {
    pub fn down(name: &str, why: String) -> HostFacts {
        HostFacts {
            name: name.to_string(),
            down: Some(why),
            read_only: false,
            source: None,
            replicating: false,
            binlog: None,
            gtid: false,
        }
    }

    /// `db1: read-only, replicates from db2 (both threads running)`.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.down {
            return format!("{}: does not answer ({why})", self.name);
        }
        let ro = if self.read_only {
            "read-only"
        } else {
            "writable"
        };
        match &self.source {
            None => format!("{}: {ro}, replicates from nobody", self.name),
            Some(s) => format!(
                "{}: {ro}, replicates from {s} ({})",
                self.name,
                if self.replicating {
                    "both threads running"
                } else {
                    "threads stopped"
                }
            ),
        }
    }
}

/// Read every host of `hosts` at once; `resolve` turns a replication
/// source (host or address) into an MHA hostname. Hosts with no
/// connection (`unreachable`) are listed as down.
pub fn read(
    hosts: &mut [Host],
    unreachable: &[(String, String)],
    resolve: &(dyn Fn(&str) -> String + Sync),
) -> Vec<HostFacts> {
    let mut refs: Vec<&mut Host> = hosts.iter_mut().collect();
    let read = cluster::parallel(&mut refs, |h| {
        let info = h.refresh_info()?.clone();
        let mut s = Script::new(h.spec.settings.step_timeout);
        crate::ops::read_only::add_binlog_position(&mut s, &info, "binlog");
        let r = h.run(&s)?;
        Ok((info, crate::ops::read_only::binlog_position(&r, "binlog")))
    });
    let mut out: Vec<HostFacts> = hosts
        .iter()
        .zip(read)
        .map(|(h, r)| match r {
            Ok((info, binlog)) => HostFacts {
                name: h.spec.name.clone(),
                down: None,
                read_only: info.read_only,
                source: info.replica.as_ref().map(|rep| resolve(&rep.master_host)),
                replicating: info.replica.as_ref().is_some_and(|r| r.healthy()),
                binlog,
                gtid: info.gtid_mode || info.flavor == Flavor::MariaDb,
            },
            Err(e) => HostFacts::down(&h.spec.name, crate::exit::message(&e)),
        })
        .collect();
    out.extend(
        unreachable
            .iter()
            .map(|(n, why)| HostFacts::down(n, why.clone())),
    );
    out
}

/// The MHA hostname of a replication source as a replica reports it (an
/// address or a name).
pub fn resolver(setup: &Setup) -> impl Fn(&str) -> String + Sync + '_ {
    |h: &str| {
        setup
            .mha
            .server(h)
            .map(|s| s.hostname.clone())
            .unwrap_or_else(|| h.to_string())
    }
}

/// Connect to every host of the cluster (through `keeper`, the switch's
/// session keeper, when it still runs) and read it.
pub fn read_cluster(
    setup: &Setup,
    keeper: Option<&cluster::KeeperRef>,
) -> anyhow::Result<Vec<HostFacts>> {
    let mut specs = setup.specs(&[])?;
    for s in &mut specs {
        s.target.keeper = keeper.cloned();
    }
    let (mut hosts, unreachable) = cluster::connect_split(specs);
    Ok(read(&mut hosts, &unreachable, &resolver(setup)))
}

/// What keeps the cluster from being settled on `master`: it writable and
/// nobody's replica, every other host answering, read-only and
/// replicating from it with both threads running — but for `alone` (the
/// old master of a switch that did not ask it to follow the new one, or
/// the dead one of a failover), which may also stand alone, read-only, or
/// not answer. Empty when settled.
pub fn unsettled(hosts: &[HostFacts], master: &str, alone: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let follows = h.source.as_deref() == Some(master) && h.replicating && h.read_only;
        let ok = if h.name == master {
            h.down.is_none() && !h.read_only && h.source.is_none()
        } else if Some(h.name.as_str()) == alone {
            // down (a dead master), or read-only on its own, or following
            h.down.is_some() || (h.source.is_none() && h.read_only) || follows
        } else {
            h.down.is_none() && follows
        };
        if !ok {
            let role = if h.name == master {
                " (the master)"
            } else if Some(h.name.as_str()) == alone {
                " (the old master)"
            } else {
                ""
            };
            out.push(format!("{}{role}", h.describe()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, ro: bool, source: Option<&str>, running: bool) -> HostFacts {
        HostFacts {
            name: name.into(),
            down: None,
            read_only: ro,
            source: source.map(String::from),
            replicating: running,
            binlog: None,
            gtid: true,
        }
    }

    #[test]
    fn a_switch_is_settled_only_when_every_host_follows_the_new_master() {
        let done = vec![
            h("db1", true, Some("db2"), true),
            h("db2", false, None, false),
            h("db3", true, Some("db2"), true),
        ];
        assert!(unsettled(&done, "db2", None).is_empty());
        // MHA died before repointing db3 and the old master
        let half = vec![
            h("db1", true, None, false),
            h("db2", false, Some("db1"), false),
            h("db3", true, Some("db1"), true),
        ];
        let u = unsettled(&half, "db2", None);
        assert_eq!(
            u,
            vec![
                "db1: read-only, replicates from nobody",
                "db2: writable, replicates from db1 (threads stopped) (the master)",
                "db3: read-only, replicates from db1 (both threads running)",
            ]
        );
        // the old master need not follow unless it was to
        let no_orig = vec![
            h("db1", true, None, false),
            h("db2", false, None, false),
            h("db3", true, Some("db2"), true),
        ];
        assert!(unsettled(&no_orig, "db2", Some("db1")).is_empty());
        assert_eq!(unsettled(&no_orig, "db2", None).len(), 1);
        let mut down = no_orig.clone();
        down[2] = HostFacts::down("db3", "no SSH".into());
        assert_eq!(
            unsettled(&down, "db2", Some("db1")),
            vec!["db3: does not answer (no SSH)".to_string()]
        );
        // a failover's dead master may stay down
        let mut dead = no_orig.clone();
        dead[0] = HostFacts::down("db1", "no SSH".into());
        assert!(unsettled(&dead, "db2", Some("db1")).is_empty());
    }
}
