//! Which way `recover` goes, decided from what the cluster says now, not
//! from how far the journal got. Pure: facts in, decision out (README
//! "What recover decides" is this table in words).
//!
//! The switch `orig -> new` has happened when the other hosts replicate
//! from `new` (MHA repoints them after `start`, and `new`'s own replication
//! is reset last); it has not when nobody replicates from `new` and the
//! others still follow `orig`. Once this switch opened `new` (its start made
//! it writable, and it still is), the switch has passed its point of no
//! return: it is finished forward, repointing whoever MHA did not get to,
//! when every such host can be proven by GTID to have nothing `new` lacks
//! (`ops::repoint` proves it for each before changing it). Anything else —
//! some replicas moved and some not without GTID, a third host as master, a
//! host that does not answer, a new master that took writes while it was
//! writable but the switch was not made — is for a person: recover refuses
//! and says what it saw.

use serde::Serialize;

pub use crate::state::journal::Kind;

pub use crate::topology::HostFacts;

/// Everything the decision looks at.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub kind: Kind,
    pub orig: String,
    pub new: String,
    pub hosts: Vec<HostFacts>,
    /// The new master's binary log position when the switch made it
    /// writable (journal), if it did; or, when the process died before it
    /// recorded that, where it stood read-only just before.
    pub new_binlog_at_writable: Option<String>,
    /// The journal says the switch made the new master writable.
    pub new_made_writable: bool,
    /// The switch was to make the old master replicate from the new one
    /// (MHA's `--orig_master_is_new_slave`).
    pub orig_follows_new: bool,
    /// MHA's `<app>.failover.complete` / `.failover.error`, newer than the
    /// journal.
    pub mha_complete: bool,
    pub mha_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// The switch did not happen: undo every recorded change; restart
    /// replication on `restart` if its threads are stopped.
    Undo { restart: Option<String> },
    /// The switch happened, or passed its point of no return: finish it
    /// (old master fenced, new master writable after the proof, VIP,
    /// grants back) and point the hosts in `repoint` at the new master.
    Complete { repoint: Vec<String> },
    /// Nothing to do on the hosts; close the journal.
    Close,
    /// The facts conflict or are missing: change nothing, tell a person.
    Refuse,
}

/// The decision, and the row of the table that gave it (for the report):
/// the rows in the order README gives them, the first that applies wins.
pub fn decide(f: &Facts) -> (Decision, String) {
    if f.kind == Kind::Fence {
        return (
            Decision::Close,
            "a fence is never undone; a pending fence stays for the fencer".into(),
        );
    }
    if let Some(row) = hosts_down(f) {
        return row;
    }
    if f.new.is_empty() {
        return decide_without_new(f);
    }
    let Some(v) = View::of(f) else {
        return (
            Decision::Refuse,
            format!("{} is not a host of this cluster any more", f.new),
        );
    };
    third_master(f)
        .or_else(|| forward(f, v.n, v.o, &v.others))
        .or_else(|| half_way(f, &v))
        .or_else(|| switched(f, &v))
        .or_else(|| stray_replicas(&v))
        .or_else(|| writes_since(f, &v))
        .or_else(|| not_switched(f, &v))
        .or_else(|| two_hosts(f, &v))
        .unwrap_or_else(|| cannot_tell(f, &v))
}

/// A row of the table: its decision and why, when it applies.
type Row = Option<(Decision, String)>;

/// The hosts of a switch as the rows look at them.
struct View<'a> {
    /// The new master and the old one.
    n: &'a HostFacts,
    o: Option<&'a HostFacts>,
    /// Every other host that answers.
    others: Vec<&'a HostFacts>,
    /// Which of them replicate from new, and from orig.
    on_new: Vec<&'a str>,
    on_orig: Vec<&'a str>,
    /// The old master replicates from new.
    orig_on_new: bool,
}

impl<'a> View<'a> {
    fn of(f: &'a Facts) -> Option<View<'a>> {
        let host = |n: &str| f.hosts.iter().find(|h| h.name == n);
        let n = host(&f.new)?;
        let o = host(&f.orig);
        let others: Vec<&HostFacts> = f
            .hosts
            .iter()
            .filter(|h| h.name != f.orig && h.name != f.new && h.down.is_none())
            .collect();
        let from = |m: &str| -> Vec<&'a str> {
            others
                .iter()
                .filter(|h| h.source.as_deref() == Some(m))
                .map(|h| h.name.as_str())
                .collect()
        };
        Some(View {
            n,
            o,
            on_new: from(&f.new),
            on_orig: from(&f.orig),
            orig_on_new: o
                .is_some_and(|o| o.down.is_none() && o.source.as_deref() == Some(f.new.as_str())),
            others,
        })
    }

    /// The hosts that replicate from new, the old master last.
    fn moved(&self, f: &'a Facts) -> Vec<&'a str> {
        self.on_new
            .iter()
            .copied()
            .chain(self.orig_on_new.then_some(f.orig.as_str()))
            .collect()
    }
}

/// Every host must answer, except a dead master in a failover.
fn hosts_down(f: &Facts) -> Row {
    let down: Vec<String> = f
        .hosts
        .iter()
        .filter(|h| h.down.is_some() && !(f.kind == Kind::Failover && h.name == f.orig))
        .map(|h| format!("{} ({})", h.name, h.down.as_deref().unwrap_or_default()))
        .collect();
    (!down.is_empty()).then(|| {
        (
            Decision::Refuse,
            format!(
                "{} not answering: what the cluster looks like cannot be known; bring it back and \
                 run recover again",
                down.join(", ")
            ),
        )
    })
}

/// A third host as master: someone replicates from it.
fn third_master(f: &Facts) -> Row {
    let third = f
        .hosts
        .iter()
        .filter(|h| h.down.is_none())
        .filter_map(|h| h.source.as_deref())
        .find(|s| *s != f.orig && *s != f.new)?;
    Some((
        Decision::Refuse,
        format!(
            "hosts replicate from {third}, which is neither {} nor {} of this journal: the master \
             moved since; settle the cluster by hand, then close this journal (recover --abandon)",
            f.orig, f.new
        ),
    ))
}

/// Some hosts follow new, others still orig (and no GTID to finish it).
fn half_way(f: &Facts, v: &View) -> Row {
    let moved = v.moved(f);
    (!moved.is_empty() && !v.on_orig.is_empty()).then(|| {
        (
            Decision::Refuse,
            format!(
                "MHA stopped half-way: {} replicate from {} but {} still from {}; finish the switch \
                 (repoint them) or undo it by hand, then run recover again",
                moved.join(", "),
                f.new,
                v.on_orig.join(", "),
                f.orig
            ),
        )
    })
}

/// The others (or orig) follow new, or MHA says the failover completed.
fn switched(f: &Facts, v: &View) -> Row {
    let moved = v.moved(f);
    (!moved.is_empty() || (f.kind == Kind::Failover && f.mha_complete)).then(|| {
        (
            Decision::Complete {
                repoint: Vec::new(),
            },
            format!(
                "switched: {} replicate from {}; completing",
                moved.join(", "),
                f.new
            ),
        )
    })
}

/// Nobody replicates from new, and some others from no host of the switch.
fn stray_replicas(v: &View) -> Row {
    (!v.others.is_empty() && v.on_orig.len() != v.others.len()).then(|| {
        (
            Decision::Refuse,
            format!(
                "{} replicate from no host of this switch; settle replication by hand, then run \
                 recover again",
                v.others
                    .iter()
                    .filter(|h| h.source.is_none())
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Nobody replicates from new, but new is writable and may have taken
/// writes since this switch made it so: undoing would strand them.
fn writes_since(f: &Facts, v: &View) -> Row {
    let n = v.n;
    let moved = match (&f.new_binlog_at_writable, &n.binlog) {
        (Some(then), Some(now)) => then != now,
        // Made writable, position unknown: assume it may have taken writes.
        _ => f.new_made_writable && !n.read_only,
    };
    (!n.read_only && moved).then(|| {
        (
            Decision::Refuse,
            format!(
                "{} is writable and may have taken writes (binary log {} since it was made writable \
                 at {}), but the switch was not made (nobody replicates from it): undoing would \
                 strand those writes; a person must reconcile {} with {}",
                f.new,
                n.binlog.as_deref().unwrap_or("unknown"),
                f.new_binlog_at_writable
                    .as_deref()
                    .unwrap_or("an unknown position"),
                f.new,
                f.orig
            ),
        )
    })
}

/// Nobody replicates from new, and everything says the switch was not
/// made: undo (restarting new's replication threads MHA stopped).
fn not_switched(f: &Facts, v: &View) -> Row {
    let n = v.n;
    let follows = n.source.as_deref() == Some(f.orig.as_str());
    if !(follows || (!v.others.is_empty() && n.read_only) || f.kind == Kind::Failover) {
        return None;
    }
    let restart = (f.kind == Kind::Online && follows && !n.replicating).then(|| f.new.clone());
    let why = if f.kind == Kind::Failover {
        format!(
            "not switched: nobody replicates from {}{}; undoing what this failover changed",
            f.new,
            if f.mha_error {
                " and MHA recorded a failover error"
            } else {
                ""
            }
        )
    } else if follows {
        format!(
            "not switched: {} still replicates from {} and nobody from it; undoing",
            f.new, f.orig
        )
    } else {
        format!(
            "not switched: {} no longer replicates (reset by hand?), but every other host still \
             follows {}; undoing ({} stays detached)",
            f.new, f.orig, f.new
        )
    };
    Some((Decision::Undo { restart }, why))
}

/// Two hosts only: new detached and writable, orig read-only.
fn two_hosts(f: &Facts, v: &View) -> Row {
    (v.n.source.is_none() && !v.n.read_only && v.o.is_some_and(|o| o.read_only)).then(|| {
        (
            Decision::Complete {
                repoint: Vec::new(),
            },
            format!(
                "switched (no replicas to tell): {} is detached and writable, {} read-only; \
                 completing",
                f.new, f.orig
            ),
        )
    })
}

fn cannot_tell(f: &Facts, v: &View) -> (Decision, String) {
    (
        Decision::Refuse,
        format!(
            "cannot tell whether {} -> {} happened ({} replicates from {}, read_only={}); settle \
             it by hand, then close this journal (recover --abandon)",
            f.orig,
            f.new,
            f.new,
            v.n.source.as_deref().unwrap_or("nobody"),
            u8::from(v.n.read_only)
        ),
    )
}

/// Past the point of no return — this switch made `n` writable and it still
/// is — the switch goes forward when every host left behind (the others not
/// replicating from `n`, and the old master when it was to follow `n`) and
/// `n` itself can be compared by GTID. None otherwise: the other rows
/// decide (undo when `n` took no writes, else refuse).
fn forward(
    f: &Facts,
    n: &HostFacts,
    o: Option<&HostFacts>,
    others: &[&HostFacts],
) -> Option<(Decision, String)> {
    if !f.new_made_writable || n.read_only {
        return None;
    }
    let done = |h: &HostFacts| h.source.as_deref() == Some(f.new.as_str()) && h.replicating;
    let old_master =
        o.filter(|o| f.kind == Kind::Online && f.orig_follows_new && o.down.is_none() && !done(o));
    let behind: Vec<&HostFacts> = others
        .iter()
        .copied()
        .filter(|h| !done(h))
        .chain(old_master)
        .collect();
    // Nobody left behind: the switch happened (the rows below say so).
    if behind.is_empty() || !n.gtid || behind.iter().any(|h| !h.gtid) {
        return None;
    }
    let repoint: Vec<String> = behind.iter().map(|h| h.name.clone()).collect();
    let why = format!(
        "{} was opened by this switch (its point of no return) and is writable; finishing the \
         switch forward: repointing {} to it once each is proven by GTID to have nothing it lacks",
        f.new,
        repoint.join(", ")
    );
    Some((Decision::Complete { repoint }, why))
}

impl Facts {
    /// A failover journal from before MHA named the new master: the one
    /// host the others now follow, if exactly one (besides the old master).
    pub fn with_inferred_new(mut self) -> Facts {
        if self.new.is_empty() {
            let mut sources: Vec<&str> = self
                .hosts
                .iter()
                .filter(|h| h.down.is_none())
                .filter_map(|h| h.source.as_deref())
                .filter(|s| *s != self.orig)
                .collect();
            sources.sort_unstable();
            sources.dedup();
            if let [one] = sources.as_slice() {
                self.new = one.to_string();
            }
        }
        self
    }
}

/// A failover journal from before MHA named the new master (stopssh only):
/// the new master is whichever host the others now follow, if any.
fn decide_without_new(f: &Facts) -> (Decision, String) {
    let mut sources: Vec<&str> = f
        .hosts
        .iter()
        .filter(|h| h.down.is_none())
        .filter_map(|h| h.source.as_deref())
        .filter(|s| *s != f.orig)
        .collect();
    sources.sort_unstable();
    sources.dedup();
    match sources.as_slice() {
        [] => (
            Decision::Undo { restart: None },
            format!(
                "not switched: MHA never got as far as a new master (every host still follows {}); \
                 undoing what this failover changed",
                f.orig
            ),
        ),
        [one] => decide(&Facts {
            new: one.to_string(),
            ..f.clone()
        }),
        many => (
            Decision::Refuse,
            format!(
                "hosts follow {} different masters ({}); settle replication by hand, then run recover again",
                many.len(),
                many.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, ro: bool, source: Option<&str>) -> HostFacts {
        HostFacts {
            name: name.into(),
            down: None,
            read_only: ro,
            source: source.map(String::from),
            replicating: source.is_some(),
            binlog: Some("mysql-bin.000001:100".into()),
            gtid: true,
        }
    }

    /// The same host without GTID (MySQL by file and position).
    fn no_gtid(mut h: HostFacts) -> HostFacts {
        h.gtid = false;
        h
    }

    fn complete(repoint: &[&str]) -> Decision {
        Decision::Complete {
            repoint: repoint.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn facts(kind: Kind, hosts: Vec<HostFacts>) -> Facts {
        Facts {
            kind,
            orig: "db1".into(),
            new: "db2".into(),
            hosts,
            new_binlog_at_writable: None,
            new_made_writable: false,
            orig_follows_new: false,
            mha_complete: false,
            mha_error: false,
        }
    }

    fn online(hosts: Vec<HostFacts>) -> Facts {
        facts(Kind::Online, hosts)
    }

    #[test]
    fn stop_done_mha_not_yet_switched_is_undone_and_replication_restarted() {
        // After stop: db1 read-only, db2 replicating from db1 with its SQL
        // thread stopped by MHA, db3 on db1.
        let mut db2 = h("db2", true, Some("db1"));
        db2.replicating = false;
        let f = online(vec![h("db1", true, None), db2, h("db3", true, Some("db1"))]);
        let (d, why) = decide(&f);
        assert_eq!(
            d,
            Decision::Undo {
                restart: Some("db2".into())
            },
            "{why}"
        );
    }

    #[test]
    fn mha_finished_the_switch_is_completed() {
        let f = online(vec![
            h("db1", true, Some("db2")),
            h("db2", false, None),
            h("db3", true, Some("db2")),
        ]);
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn mha_repointed_replicas_but_new_master_not_yet_reset_is_completed() {
        let f = online(vec![
            h("db1", true, None),
            h("db2", true, Some("db1")),
            h("db3", true, Some("db2")),
        ]);
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn mha_aborted_after_start_began_is_undone_without_gtid_when_the_new_master_took_no_writes() {
        let mut f = online(vec![
            no_gtid(h("db1", true, None)),
            no_gtid(h("db2", false, Some("db1"))),
            no_gtid(h("db3", true, Some("db1"))),
        ]);
        f.new_made_writable = true;
        f.new_binlog_at_writable = Some("mysql-bin.000001:100".into());
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Undo { restart: None }, "{why}");
    }

    #[test]
    fn new_master_that_took_writes_before_mha_aborted_is_refused_without_gtid() {
        let mut db2 = no_gtid(h("db2", false, Some("db1")));
        db2.binlog = Some("mysql-bin.000001:900".into());
        let mut f = online(vec![
            no_gtid(h("db1", true, None)),
            db2,
            no_gtid(h("db3", true, Some("db1"))),
        ]);
        f.new_made_writable = true;
        f.new_binlog_at_writable = Some("mysql-bin.000001:100".into());
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Refuse);
        assert!(why.contains("may have taken writes"), "{why}");
    }

    #[test]
    fn writable_new_master_with_no_recorded_position_is_refused_without_gtid() {
        let mut f = online(vec![
            no_gtid(h("db1", true, None)),
            no_gtid(h("db2", false, Some("db1"))),
            no_gtid(h("db3", true, Some("db1"))),
        ]);
        f.new_made_writable = true;
        assert_eq!(decide(&f).0, Decision::Refuse);
    }

    /// MHA killed (or the operator's Ctrl-C) after start opened db2, before
    /// it repointed anyone: with GTID the switch goes forward, whether db2
    /// took writes or not, and the old master follows db2 when the switch
    /// said so.
    #[test]
    fn mha_died_after_the_new_master_opened_is_finished_forward_with_gtid() {
        let mut db2 = h("db2", false, Some("db1"));
        db2.binlog = Some("mysql-bin.000001:900".into());
        db2.replicating = false;
        let mut f = online(vec![h("db1", true, None), db2, h("db3", true, Some("db1"))]);
        f.new_made_writable = true;
        f.new_binlog_at_writable = Some("mysql-bin.000001:100".into());
        let (d, why) = decide(&f);
        assert_eq!(d, complete(&["db3"]), "{why}");
        assert!(why.contains("point of no return"), "{why}");
        f.orig_follows_new = true;
        assert_eq!(decide(&f).0, complete(&["db3", "db1"]));
    }

    #[test]
    fn half_repointed_replicas_are_finished_forward_with_gtid_and_refused_without() {
        let hosts = vec![
            h("db1", true, None),
            h("db2", false, None),
            h("db3", true, Some("db2")),
            h("db4", true, Some("db1")),
        ];
        let mut f = online(hosts.clone());
        f.new_made_writable = true;
        f.orig_follows_new = true;
        assert_eq!(decide(&f).0, complete(&["db4", "db1"]));
        // a replica MHA pointed at db2 whose threads it had not started yet
        let mut stopped = f.clone();
        stopped.hosts[2].replicating = false;
        assert_eq!(decide(&stopped).0, complete(&["db3", "db4", "db1"]));
        // one host that cannot be compared by GTID: not forward
        let mut mixed = f.clone();
        mixed.hosts[3].gtid = false;
        let (d, why) = decide(&mixed);
        assert_eq!(d, Decision::Refuse, "{why}");
        assert!(why.contains("half-way"), "{why}");
    }

    #[test]
    fn a_new_master_this_switch_did_not_open_is_not_finished_forward() {
        // db2 writable, but not by this switch's start (no record of it)
        let f = online(vec![
            h("db1", true, None),
            h("db2", false, Some("db1")),
            h("db3", true, Some("db1")),
        ]);
        let (d, why) = decide(&f);
        assert!(
            matches!(d, Decision::Undo { .. } | Decision::Refuse),
            "{d:?}: {why}"
        );
        assert!(!matches!(d, Decision::Complete { .. }));
    }

    #[test]
    fn master_moved_to_a_third_host_since_is_refused() {
        let f = online(vec![
            h("db1", true, Some("db3")),
            h("db2", true, Some("db3")),
            h("db3", false, None),
        ]);
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Refuse);
        assert!(why.contains("db3, which is neither"), "{why}");
    }

    #[test]
    fn new_master_repointed_but_replicas_not_is_refused() {
        let f = facts(
            Kind::Online,
            vec![
                h("db1", true, None),
                h("db2", false, None),
                h("db3", true, Some("db2")),
                h("db4", true, Some("db1")),
            ],
        );
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Refuse);
        assert!(why.contains("half-way"), "{why}");
    }

    #[test]
    fn old_master_repointed_while_a_replica_still_follows_it_is_refused() {
        let f = online(vec![
            h("db1", true, Some("db2")),
            h("db2", true, Some("db1")),
            h("db3", true, Some("db1")),
        ]);
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Refuse);
        assert!(
            why.contains("db1 replicate from db2 but db3 still from db1"),
            "{why}"
        );
    }

    #[test]
    fn old_master_unreachable_is_refused() {
        let mut db1 = h("db1", true, None);
        db1.down = Some("no SSH".into());
        let f = online(vec![
            db1,
            h("db2", true, Some("db1")),
            h("db3", true, Some("db1")),
        ]);
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Refuse);
        assert!(why.contains("db1 (no SSH)"), "{why}");
    }

    #[test]
    fn a_replica_that_does_not_answer_is_refused() {
        let mut db3 = h("db3", true, Some("db1"));
        db3.down = Some("mysqld down".into());
        let f = online(vec![h("db1", true, None), h("db2", true, Some("db1")), db3]);
        assert_eq!(decide(&f).0, Decision::Refuse);
    }

    #[test]
    fn new_master_reset_by_hand_while_replicas_follow_the_old_master_is_undone() {
        let f = online(vec![
            h("db1", true, None),
            h("db2", true, None),
            h("db3", true, Some("db1")),
        ]);
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Undo { restart: None }, "{why}");
        assert!(why.contains("stays detached"), "{why}");
    }

    #[test]
    fn two_host_cluster_switched_without_the_old_master_as_replica_is_completed() {
        let f = online(vec![h("db1", true, None), h("db2", false, None)]);
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn two_host_cluster_with_both_read_only_and_detached_is_refused() {
        let f = online(vec![h("db1", true, None), h("db2", true, None)]);
        assert_eq!(decide(&f).0, Decision::Refuse);
    }

    #[test]
    fn failover_with_dead_old_master_and_replicas_on_the_new_one_is_completed() {
        let mut db1 = h("db1", false, None);
        db1.down = Some("no SSH".into());
        let f = facts(
            Kind::Failover,
            vec![db1, h("db2", true, None), h("db3", true, Some("db2"))],
        );
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn failover_mha_aborted_before_repointing_is_undone() {
        let mut db1 = h("db1", false, None);
        db1.down = Some("mysqld down".into());
        let mut f = facts(
            Kind::Failover,
            vec![
                db1,
                h("db2", true, Some("db1")),
                h("db3", true, Some("db1")),
            ],
        );
        f.mha_error = true;
        let (d, why) = decide(&f);
        assert_eq!(d, Decision::Undo { restart: None }, "{why}");
        assert!(why.contains("failover error"), "{why}");
    }

    #[test]
    fn failover_mha_complete_file_completes_even_with_no_replicas_left() {
        let mut db1 = h("db1", false, None);
        db1.down = Some("no SSH".into());
        let mut f = facts(Kind::Failover, vec![db1, h("db2", true, None)]);
        f.mha_complete = true;
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn failover_stopped_before_naming_a_new_master_is_undone_or_completed_by_who_follows_whom() {
        let mut f = facts(
            Kind::Failover,
            vec![
                h("db1", true, None),
                h("db2", true, Some("db1")),
                h("db3", true, Some("db1")),
            ],
        );
        f.new = String::new();
        assert_eq!(decide(&f).0, Decision::Undo { restart: None });
        f.hosts = vec![
            h("db1", true, None),
            h("db2", false, None),
            h("db3", true, Some("db2")),
        ];
        assert_eq!(decide(&f).0, complete(&[]));
    }

    #[test]
    fn a_fence_journal_is_closed_never_undone() {
        let f = facts(Kind::Fence, vec![h("db1", true, None)]);
        assert_eq!(decide(&f).0, Decision::Close);
    }
}
