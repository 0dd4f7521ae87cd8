//! `mha-helper check`: look at every server block at once and say, per
//! host, whether the helper could act there — and if not, why and what to
//! do. Exit 0 only when every check passes.
//!
//! It reads the hosts and changes three things, each only when there is
//! cause, and says so in its output: it ends a session keeper orphaned by
//! a switch that is over (it would refuse the next switch), it fences an
//! old master a past failover left unfenced once that answers (read_only,
//! VIP off, sessions killed), and it records the master's application
//! grants in the state directory (`grants.json`, what a later failover
//! compares the new master with).
//!
//! Per host: SSH reachable with a verified host key; the mysql client is
//! there; the MHA credentials work; the MHA account has the privileges the
//! helper uses; role, read_only, replication threads and lag. Across hosts:
//! exactly one master, every other host replicating from it, and the
//! application accounts and grants of every candidate master equal to the
//! master's (a regrant after a switch is only exact when they match).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cluster::{self, Host, HostSpec};
use crate::config::helper::BlockMethod;
use crate::exit::Code;
use crate::grants::{self, Account, Digest, SavedGrants, Selection, Snapshot};
use crate::mysql::ServerInfo;
use crate::ops::{self, accounts};
use crate::setup::{ConfigPaths, Setup};
use crate::state::StateDir;

/// The privileges the helper uses, with what each is for.
const NEEDED: &[(&str, &str)] = &[
    ("SUPER|READ_ONLY ADMIN", "set read_only"),
    ("SUPER|CONNECTION ADMIN", "kill application sessions"),
    ("PROCESS", "see the processlist"),
    ("CREATE USER", "lock or change accounts"),
    ("GRANT OPTION", "revoke and give back grants"),
    (
        "REPLICATION CLIENT|BINLOG MONITOR|SLAVE MONITOR|REPLICA MONITOR",
        "read replication state",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub host: String,
    pub ok: bool,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
    pub application_accounts: usize,
    /// Whether this host holds the writer VIP (None: no VIP configured or
    /// not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_vip: Option<bool>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub ms: u64,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub app: String,
    pub master: Option<String>,
    /// Problems of the cluster as a whole (state directory, pending fence).
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub hosts: Vec<HostCheck>,
    pub elapsed_ms: u64,
    pub peak_rss_kb: u64,
}

struct Probe {
    check: HostCheck,
    snaps: Vec<Snapshot>,
    digest: Option<Digest>,
}

fn probe(h: &mut Host, sel: &Selection) -> Result<Probe> {
    let started = Instant::now();
    let mut c = HostCheck {
        host: h.name().to_string(),
        ok: true,
        role: "unknown".into(),
        server: None,
        application_accounts: 0,
        writer_vip: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        ms: 0,
    };
    match ops::vip::spec(h) {
        Ok(Some(spec)) => {
            let t = h.spec.settings.step_timeout;
            match ops::vip::present(h.conn.as_mut(), &spec, t) {
                Ok(p) => c.writer_vip = Some(p),
                Err(e) => c
                    .problems
                    .push(format!("{}: cannot check the writer VIP: {e:#}", c.host)),
            }
            if let Err(e) = ops::vip::check_rights(h.conn.as_mut(), &spec, t) {
                c.problems.push(format!("{e:#}"));
            }
        }
        Ok(None) => {}
        Err(e) => c.problems.push(format!("{e:#}")),
    }
    let r = match h.inspect(&|s| {
        s.query("mygrants", "SHOW GRANTS");
    }) {
        Ok(r) => r,
        Err(e) => {
            c.problems.push(crate::exit::message(&e));
            return Ok(Probe {
                check: c,
                snaps: Vec::new(),
                digest: None,
            });
        }
    };
    let info = h.info()?.clone();
    let mine = grants::grant_lines(&r, "mygrants");
    for (privs, why) in NEEDED {
        if !has_privilege(&mine, privs) {
            c.problems.push(format!(
                "{}: MHA account {} lacks {} (needed to {why}); GRANT it ON *.*",
                c.host,
                info.current_user,
                privs.replace('|', " or ")
            ));
        }
    }
    match accounts::load(h, sel) {
        Ok(loaded) => {
            if !loaded.roles_without_admin.is_empty()
                && h.spec.settings.block_method == BlockMethod::Revoke
            {
                c.problems.push(format!(
                    "{}: MHA account {} cannot revoke role(s) {} from application accounts; \
                     GRANT <role> TO it WITH ADMIN OPTION (or use block_method = account_lock)",
                    c.host,
                    info.current_user,
                    loaded.roles_without_admin.join(", ")
                ));
            }
            c.application_accounts = loaded.accounts.len();
            c.server = Some(info);
            c.ms = started.elapsed().as_millis() as u64;
            Ok(Probe {
                check: c,
                snaps: loaded.snapshots,
                digest: loaded.digest,
            })
        }
        Err(e) => {
            c.problems.push(format!(
                "{}: cannot read application accounts: {e:#}",
                c.host
            ));
            c.server = Some(info);
            Ok(Probe {
                check: c,
                snaps: Vec::new(),
                digest: None,
            })
        }
    }
}

fn failed(host: &str, role: &str, problem: String) -> Probe {
    Probe {
        check: HostCheck {
            host: host.to_string(),
            ok: false,
            role: role.to_string(),
            server: None,
            application_accounts: 0,
            writer_vip: None,
            problems: vec![problem],
            warnings: Vec::new(),
            ms: 0,
        },
        snaps: Vec::new(),
        digest: None,
    }
}

/// Whether the grant lines give one of the `|`-separated privileges on *.*.
pub fn has_privilege(lines: &[String], alternatives: &str) -> bool {
    lines.iter().any(|l| {
        let global = l.contains(" ON *.* ");
        let all = l.starts_with("GRANT ALL PRIVILEGES ON *.*");
        let grant_option = l.ends_with("WITH GRANT OPTION") || l.contains("WITH GRANT OPTION ");
        global
            && alternatives.split('|').any(|p| {
                if p == "GRANT OPTION" {
                    grant_option
                } else {
                    all || privilege_listed(l, p)
                }
            })
    })
}

fn privilege_listed(line: &str, p: &str) -> bool {
    let Some(list) = line
        .strip_prefix("GRANT ")
        .and_then(|r| r.split(" ON ").next())
    else {
        return false;
    };
    list.split(',').any(|x| x.trim() == p)
}

/// Compare replication and grants across hosts; fill roles and problems.
fn judge(setup: &Setup, probes: &mut [Probe]) -> Option<String> {
    let master = find_master(probes);
    let master_name = master.map(|i| probes[i].check.host.clone());
    let master_ip = master_name
        .as_deref()
        .and_then(|m| setup.mha.server(m))
        .map(|s| s.ip.clone())
        .unwrap_or_default();
    let master_snaps: Vec<Snapshot> = master.map(|i| probes[i].snaps.clone()).unwrap_or_default();
    for (i, p) in probes.iter_mut().enumerate() {
        let Some(info) = p.check.server.clone() else {
            continue;
        };
        let host = p.check.host.clone();
        if Some(i) == master {
            p.check.role = "master".into();
            if info.read_only {
                p.check.problems.push(format!(
                    "{host}: the master is read_only=1, so applications cannot write; \
                     if a switch was interrupted run `mha-helper recover`, else SET GLOBAL read_only=0"
                ));
            }
            continue;
        }
        judge_replica(setup, p, &info, (master_name.as_deref(), &master_ip));
        let candidate = setup.mha.server(&host).is_some_and(|s| !s.no_master);
        if candidate && master.is_some() {
            for d in compare_accounts(&master_snaps, &p.snaps) {
                p.check.problems.push(format!(
                    "{host}: {d} — a candidate master must have the master's application grants \
                     (copy them with sql_log_bin=0, or fix replication)"
                ));
            }
        }
    }
    master_name
}

/// The one host that is no replica; none (every host a replica, or more
/// than one master) is every host's problem.
fn find_master(probes: &mut [Probe]) -> Option<usize> {
    let masters: Vec<usize> = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.check.server.as_ref().is_some_and(|s| s.replica.is_none()))
        .map(|(i, _)| i)
        .collect();
    match masters.as_slice() {
        [one] => Some(*one),
        [] => {
            for p in probes.iter_mut().filter(|p| p.check.server.is_some()) {
                p.check.problems.push(format!(
                    "{}: no reachable host is a master (every one is a replica); find the real master",
                    p.check.host
                ));
            }
            None
        }
        many => {
            let names: Vec<String> = many.iter().map(|i| probes[*i].check.host.clone()).collect();
            for i in many {
                probes[*i].check.problems.push(format!(
                    "{}: more than one host is not a replica ({}); only one may be the master",
                    probes[*i].check.host,
                    names.join(", ")
                ));
            }
            None
        }
    }
}

/// A replica's role, source, threads, lag and read_only, against the
/// master `(name, ip)`.
fn judge_replica(setup: &Setup, p: &mut Probe, info: &ServerInfo, master: (Option<&str>, &str)) {
    let host = p.check.host.clone();
    let Some(rep) = &info.replica else { return };
    let source = setup
        .mha
        .server(&rep.master_host)
        .map(|s| s.hostname.clone())
        .unwrap_or_else(|| rep.master_host.clone());
    p.check.role = format!("replica of {source}");
    if let (Some(m), ip) = master {
        if rep.master_host != m && rep.master_host != ip {
            p.check.problems.push(format!(
                "{host}: replicates from {}, not from the master {m}; repoint it ({})",
                rep.master_host,
                info.dialect().change_source()
            ));
        }
    }
    if !rep.healthy() {
        p.check.problems.push(format!(
            "{host}: replication stopped (IO {}, SQL {}){}; {} after fixing the cause",
            rep.io_running,
            rep.sql_running,
            if rep.last_error.is_empty() {
                String::new()
            } else {
                format!(": {}", rep.last_error)
            },
            info.dialect().start_replica()
        ));
    } else if let Some(lag) = rep.seconds_behind.filter(|l| *l > 30) {
        p.check
            .warnings
            .push(format!("{host}: {lag} s behind its master"));
    }
    if !info.read_only {
        p.check.warnings.push(format!(
            "{host}: replica is writable (read_only=0); applications could write to it"
        ));
    }
}

/// The writer VIP must be on exactly one host, the master.
fn judge_vip(setup: &Setup, master: Option<&str>, probes: &mut [Probe]) {
    let Some(vip) = setup.helper.defaults().writer_vip.or_else(|| {
        setup
            .mha
            .servers
            .iter()
            .find_map(|s| setup.helper.for_host(&s.hostname).writer_vip)
    }) else {
        return;
    };
    let holders: Vec<String> = probes
        .iter()
        .filter(|p| p.check.writer_vip == Some(true))
        .map(|p| p.check.host.clone())
        .collect();
    match holders.as_slice() {
        [] => {
            let target = master.unwrap_or_default();
            if let Some(p) = probes.iter_mut().find(|p| p.check.host == target) {
                p.check.problems.push(format!(
                    "{target}: the writer VIP {vip} is on no host; applications cannot reach the master (add it here)"
                ));
            }
        }
        [one] if Some(one.as_str()) != master => {
            if let Some(p) = probes.iter_mut().find(|p| &p.check.host == one) {
                p.check.problems.push(format!(
                    "{one}: holds the writer VIP {vip} but the master is {}; move it to the master",
                    master.unwrap_or("unknown")
                ));
            }
        }
        [_] => {}
        many => {
            for p in probes.iter_mut().filter(|p| many.contains(&p.check.host)) {
                p.check.problems.push(format!(
                    "{}: the writer VIP {vip} is on {} hosts at once ({}); remove it from all but the master",
                    p.check.host,
                    many.len(),
                    many.join(", ")
                ));
            }
        }
    }
}

/// A host MHA failed over from is expected to be down: report it as such
/// instead of failing. Once it is back as a replica, forget the mark.
fn excuse_failed_over_host(state: &StateDir, mark: &crate::state::DeadMark, probes: &mut [Probe]) {
    let Some(p) = probes.iter_mut().find(|p| p.check.host == mark.host) else {
        return;
    };
    if p.check.server.is_none() {
        p.check.role = format!(
            "down (failed over {})",
            mark.at.get(..16).unwrap_or(&mark.at)
        );
        p.check.warnings.push(format!(
            "{}: down since MHA failed over to {} at {}; rebuild it as a replica of {}, or remove its block",
            mark.host, mark.new_master, mark.at, mark.new_master
        ));
        p.check.warnings.append(&mut p.check.problems);
    } else if p.check.role.starts_with("replica of") && p.check.problems.is_empty() {
        let _ = state.remove(&state.dead_mark());
    }
}

/// Account-by-account differences between the master and a candidate.
pub fn compare_accounts(master: &[Snapshot], other: &[Snapshot]) -> Vec<String> {
    let index = |v: &[Snapshot]| -> BTreeMap<Account, Vec<String>> {
        v.iter()
            .map(|s| (s.account.clone(), s.grants.clone()))
            .collect()
    };
    let (m, o) = (index(master), index(other));
    let mut out = Vec::new();
    for (a, g) in &m {
        match o.get(a) {
            None => out.push(format!("application account {} is missing", a.label())),
            Some(og) => {
                let d = grants::diff_lines(g, og);
                if !d.is_empty() {
                    out.push(format!(
                        "grants of {} differ from the master's: {d}",
                        a.label()
                    ));
                }
            }
        }
    }
    for a in o.keys().filter(|a| !m.contains_key(*a)) {
        out.push(format!(
            "application account {} exists here but not on the master",
            a.label()
        ));
    }
    out
}

fn table(r: &CheckReport) -> String {
    let mut t = String::new();
    for p in r
        .hosts
        .iter()
        .flat_map(|h| h.problems.iter())
        .filter(|p| p.starts_with("TWO WRITABLE"))
        .take(1)
    {
        let _ = writeln!(t, "FAIL {p}");
    }
    for p in &r.problems {
        let _ = writeln!(t, "FAIL {p}");
    }
    for w in &r.warnings {
        let _ = writeln!(t, "warn {w}");
    }
    let rows: Vec<Vec<String>> = r
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                match (h.ok, h.role.starts_with("down")) {
                    (false, _) => "FAIL",
                    (true, true) => "down",
                    (true, false) => "ok",
                }
                .into(),
                h.role.clone(),
                h.server
                    .as_ref()
                    .map(|s| s.label())
                    .unwrap_or_else(|| "-".into()),
                h.server
                    .as_ref()
                    .map(|s| s.read_only.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.application_accounts.to_string(),
                match h.writer_vip {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                }
                .into(),
                h.ms.to_string(),
            ]
        })
        .collect();
    t.push_str(&crate::table::render(
        &[
            "HOST",
            "RESULT",
            "ROLE",
            "SERVER",
            "READ_ONLY",
            "APP_ACCTS",
            "VIP",
            "MS",
        ],
        &rows,
    ));
    for h in &r.hosts {
        for p in &h.problems {
            let _ = writeln!(t, "FAIL {p}");
        }
        for w in &h.warnings {
            let _ = writeln!(t, "warn {w}");
        }
    }
    let _ = writeln!(
        t,
        "{}: {} host(s), master {}, {} ms",
        if r.ok { "OK" } else { "FAILED" },
        r.hosts.len(),
        r.master.as_deref().unwrap_or("?"),
        r.elapsed_ms
    );
    t
}

/// Keep the master's application grants (and the digest they were read
/// with) for a later failover to compare.
fn save_grants(state: &StateDir, snaps: &[Snapshot], digest: Option<&Digest>) {
    let text = serde_json::to_string(&SavedGrants {
        snapshots: snaps.to_vec(),
        digest: digest.cloned(),
    })
    .unwrap_or_default();
    if let Err(e) = state.write(&state.grants_snapshot(), text.as_bytes()) {
        log::warn!("cannot save the master's grants: {e:#}");
    }
}

/// More than one writable host is the worst a cluster can be in: it goes
/// first, on every writable host.
fn judge_writable(probes: &mut [Probe]) {
    let writable: Vec<String> = probes
        .iter()
        .filter(|p| p.check.server.as_ref().is_some_and(|s| !s.read_only))
        .map(|p| p.check.host.clone())
        .collect();
    if writable.len() < 2 {
        return;
    }
    for p in probes
        .iter_mut()
        .filter(|p| writable.contains(&p.check.host))
    {
        p.check.problems.insert(
            0,
            format!(
                "TWO WRITABLE HOSTS: {} all have read_only=0; applications may be writing to more than \
                 one master. Set read_only=1 on every host that is not the master now (mha-helper \
                 fence, or SET GLOBAL read_only=1), then reconcile what each took",
                writable.join(", ")
            ),
        );
    }
}

/// The report as the metrics need it.
fn findings(r: &CheckReport) -> crate::metrics::Findings {
    let host = |h: &HostCheck| crate::metrics::Host {
        name: h.host.clone(),
        ok: h.ok,
        read_only: h.server.as_ref().map(|s| s.read_only),
        replica: h.server.as_ref().and_then(|s| s.replica.as_ref()).map(|r| {
            let running = r.io_running == "Yes" && r.sql_running == "Yes";
            (running, r.seconds_behind)
        }),
    };
    crate::metrics::Findings {
        app: r.app.clone(),
        ok: r.ok,
        elapsed_ms: r.elapsed_ms,
        master: r.master.clone(),
        hosts: r.hosts.iter().map(host).collect(),
    }
}

/// How `check` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// A table.
    #[default]
    Text,
    /// One JSON record per host.
    Json,
    /// Prometheus' text format, for node_exporter's textfile collector.
    Prometheus,
}

pub fn run(paths: &ConfigPaths, output: Output, notify: bool) -> Result<Code> {
    let started = Instant::now();
    let setup = paths.load()?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let state = match setup.state() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(crate::exit::message(&e));
            None
        }
    };
    if let Some(st) = &state {
        manager_side(&setup, st, &mut problems, &mut warnings);
    }
    let bar = crate::logger::spinner(std::io::stderr().is_terminal(), "checking hosts");
    let mut probes = probe_all(&setup)?;
    let master = judge(&setup, &mut probes);
    judge_vip(&setup, master.as_deref(), &mut probes);
    judge_writable(&mut probes);
    if let Some(st) = &state {
        if let Some(mark) = st.read_dead_mark() {
            excuse_failed_over_host(st, &mark, &mut probes);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for p in probes.iter_mut() {
        p.check.ok = p.check.problems.is_empty();
    }
    if let (Some(m), Some(st)) = (&master, &state) {
        if let Some(p) = probes.iter().find(|p| &p.check.host == m) {
            save_grants(st, &p.snaps, p.digest.as_ref());
        }
    }
    let report = CheckReport {
        ok: problems.is_empty() && probes.iter().all(|p| p.check.ok),
        app: setup.mha.app.clone(),
        master,
        problems,
        warnings,
        hosts: probes.into_iter().map(|p| p.check).collect(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        peak_rss_kb: crate::report::peak_rss_kb(),
    };
    match output {
        Output::Json => crate::output::set(&report),
        Output::Text => print!("{}", table(&report)),
        Output::Prometheus => {
            let last = state
                .as_ref()
                .and_then(|st| crate::state::history::switches(st).into_iter().next());
            let ended = last
                .as_ref()
                .and_then(|s| std::fs::metadata(&s.journal).ok()?.modified().ok());
            print!(
                "{}",
                crate::metrics::render(&findings(&report), last.as_ref(), ended)
            );
        }
    }
    if notify && !report.ok {
        let count =
            report.problems.len() + report.hosts.iter().map(|h| h.problems.len()).sum::<usize>();
        crate::notify::alert::check_failed(&setup, count, &table(&report));
    }
    Ok(if report.ok { Code::Ok } else { Code::Failed })
}

/// What check does on the manager before it looks at the hosts: a session
/// keeper left holding the lock by a switch that ended would refuse every
/// switch until it idles out, so it is ended; an old master a failover
/// left unfenced is fenced if it answers now.
fn manager_side(
    setup: &Setup,
    st: &StateDir,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    match crate::ssh::keeper::end_if_orphaned(st) {
        Ok(Some(done)) => warnings.push(done),
        Ok(None) => {}
        Err(e) => problems.push(format!("{e:#}")),
    }
    match crate::fence::attempt(setup, st) {
        Ok(crate::fence::Attempt::Nothing) => {}
        Ok(crate::fence::Attempt::Fenced(r)) => {
            warnings.push(format!(
                "fenced the old master of a past failover: {}",
                r.outcome
            ));
            warnings.extend(r.warnings);
        }
        // It does not answer, so it takes no writes now.
        Ok(crate::fence::Attempt::NotYet(why)) => warnings.push(format!(
            "an old master a failover could not fence is not fenced yet ({why}); mha-helper \
             fences it as soon as it answers"
        )),
        Err(e) => problems.push(format!("fencing a past failover's old master: {e:#}")),
    }
}

/// Connect to every host and probe each (in parallel); a host that cannot
/// be reached is a failed probe.
fn probe_all(setup: &Setup) -> Result<Vec<Probe>> {
    let specs: Vec<HostSpec> = setup.specs(&[])?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut hosts = Vec::new();
    let mut probes: Vec<Option<Probe>> = Vec::new();
    for (name, r) in names.iter().zip(cluster::connect(specs)) {
        match r {
            Ok(h) => {
                hosts.push(h);
                probes.push(None);
            }
            Err(e) => probes.push(Some(failed(name, "unreachable", format!("{e:#}")))),
        }
    }
    let mut refs: Vec<&mut Host> = hosts.iter_mut().collect();
    let mut results = cluster::parallel(&mut refs, |h| {
        let sel = accounts::selection(setup, &h.spec);
        probe(h, &sel)
    })
    .into_iter();
    Ok(probes
        .into_iter()
        .zip(names.iter())
        .map(|(p, name)| match p {
            Some(p) => p,
            None => match results.next() {
                Some(Ok(p)) => p,
                Some(Err(e)) => failed(name, "unknown", format!("{name}: check failed: {e:#}")),
                None => failed(name, "unknown", format!("{name}: no result")),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_privileges_with_grant_option_is_enough() {
        let g = lines(&["GRANT ALL PRIVILEGES ON *.* TO `mha`@`%` IDENTIFIED BY PASSWORD '*X' WITH GRANT OPTION"]);
        for (p, _) in NEEDED {
            assert!(has_privilege(&g, p), "{p}");
        }
    }

    #[test]
    fn missing_privileges_are_found() {
        let g = lines(&[
            "GRANT PROCESS, REPLICATION CLIENT ON *.* TO `mha`@`%`",
            "GRANT ALL PRIVILEGES ON `appdb`.* TO `mha`@`%`",
        ]);
        assert!(has_privilege(&g, "PROCESS"));
        assert!(has_privilege(&g, "REPLICATION CLIENT|BINLOG MONITOR"));
        assert!(!has_privilege(&g, "SUPER|READ_ONLY ADMIN"));
        assert!(!has_privilege(&g, "GRANT OPTION"));
        assert!(!has_privilege(&g, "CREATE USER"));
    }

    #[test]
    fn account_comparison_names_missing_extra_and_different() {
        let s = |u: &str, g: &[&str]| Snapshot {
            account: Account::new(u, "%"),
            grants: lines(g),
            locked: false,
            default_roles: Vec::new(),
        };
        let master = vec![
            s("app", &["GRANT SELECT ON `appdb`.* TO `app`@`%`"]),
            s("gone", &["x"]),
        ];
        let other = vec![
            s("app", &["GRANT SELECT, INSERT ON `appdb`.* TO `app`@`%`"]),
            s("new", &["y"]),
        ];
        let d = compare_accounts(&master, &other);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("grants of 'app'@'%' differ"));
        assert!(d[1].contains("'gone'@'%' is missing"));
        assert!(d[2].contains("'new'@'%' exists here but not on the master"));
    }
}
