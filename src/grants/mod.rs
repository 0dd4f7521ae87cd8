//! Which accounts are the application's, what they may do (their exact
//! `SHOW GRANTS`), and the SQL that blocks them and gives everything back.
//!
//! Blocking is one of three methods: `revoke` (save grants, revoke all
//! privileges and role grants, clear the default role), `account_lock`
//! (`ALTER USER ... ACCOUNT LOCK`) or `read_only_only` (touch no account).
//! Giving back replays the saved `SHOW GRANTS` lines verbatim, which the
//! server itself wrote, so the round trip is exact; it is checked by reading
//! `SHOW GRANTS` again.

pub mod digest;

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::config::helper::{AccountName, BlockMethod};
use crate::mysql::{Flavor, Results, Script};
use crate::quote::{sql_account, sql_string};

pub use digest::Digest;

/// Accounts the server itself owns; never touched.
const SYSTEM_USERS: &[&str] = &[
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
    "mariadb.sys",
    "debian-sys-maint",
    "root",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Account {
    pub user: String,
    pub host: String,
}

impl Account {
    pub fn new(user: &str, host: &str) -> Account {
        Account {
            user: user.to_string(),
            host: host.to_string(),
        }
    }
    pub fn sql(&self) -> String {
        sql_account(&self.user, &self.host)
    }
    /// `'user'@'host'` for messages.
    pub fn label(&self) -> String {
        format!("'{}'@'{}'", self.user, self.host)
    }
}

/// Who counts as an application account.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The MHA admin user (all its hosts are excluded).
    pub admin_user: String,
    /// MHA's repl_user (all its hosts are excluded).
    pub repl_user: Option<String>,
    pub exclude: Vec<AccountName>,
    pub include: Vec<AccountName>,
}

impl Selection {
    fn listed(list: &[AccountName], a: &Account) -> bool {
        list.iter().any(|n| n.user == a.user && n.host == a.host)
    }

    /// Users whose rows a grants digest leaves out: never application
    /// accounts, and they may differ from host to host.
    pub fn digest_skip(&self) -> Vec<&str> {
        let mut v: Vec<&str> = SYSTEM_USERS.to_vec();
        v.push(&self.admin_user);
        v.extend(self.repl_user.as_deref());
        v
    }

    /// Whether `a` (with its replication privilege flag) is blocked.
    pub fn is_application(&self, a: &Account, has_repl_priv: bool) -> bool {
        if SYSTEM_USERS.contains(&a.user.as_str())
            || a.user == self.admin_user
            || self.repl_user.as_deref() == Some(a.user.as_str())
            || has_repl_priv
            || Self::listed(&self.exclude, a)
        {
            return false;
        }
        self.include.is_empty() || Self::listed(&self.include, a)
    }
}

/// The query listing candidate accounts (roles left out).
pub fn add_account_query(script: &mut Script, flavor: Flavor, has_roles: bool) {
    let sql = match (flavor, has_roles) {
        (Flavor::MariaDb, true) => {
            "SELECT User AS user, Host AS host, Repl_slave_priv AS repl FROM mysql.user \
             WHERE is_role = 'N' ORDER BY User, Host"
        }
        (Flavor::MySql, true) => {
            // Roles: granted to someone (role_edges), or as CREATE ROLE left
            // them, locked with no password (nobody logs in as those).
            "SELECT u.User AS user, u.Host AS host, u.Repl_slave_priv AS repl FROM mysql.user u \
             WHERE NOT EXISTS (SELECT 1 FROM mysql.role_edges e \
             WHERE e.FROM_USER = u.User AND e.FROM_HOST = u.Host) \
             AND NOT (u.account_locked = 'Y' AND u.authentication_string = '') \
             ORDER BY u.User, u.Host"
        }
        (_, false) => {
            "SELECT User AS user, Host AS host, Repl_slave_priv AS repl FROM mysql.user \
             ORDER BY User, Host"
        }
    };
    script.query("accounts", sql);
}

/// The application accounts among the listed ones.
pub fn select(results: &Results, selection: &Selection) -> Vec<Account> {
    results
        .set("accounts")
        .records()
        .map(|r| {
            (
                Account::new(&r.text("user"), &r.text("host")),
                r.text("repl") == "Y",
            )
        })
        .filter(|(a, repl)| selection.is_application(a, *repl))
        .map(|(a, _)| a)
        .collect()
}

/// One account as it was before we touched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub account: Account,
    /// `SHOW GRANTS` lines, in the server's order.
    pub grants: Vec<String>,
    /// Whether the account was locked (`mysql.user.account_locked`).
    pub locked: bool,
    /// MySQL: the account's default roles (`mysql.default_roles`; MySQL's
    /// `SHOW GRANTS` does not list them, and revoking a role drops it from
    /// them). MariaDB's default role is a `SHOW GRANTS` line instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_roles: Vec<Account>,
}

/// What `check` keeps of the master's application grants, for a later
/// failover to compare the new master with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGrants {
    pub snapshots: Vec<Snapshot>,
    /// The digest the snapshots were read with.
    #[serde(default)]
    pub digest: Option<Digest>,
}

impl SavedGrants {
    /// Read a saved file: this form, or the bare list of snapshots that
    /// versions before 0.6 wrote.
    pub fn parse(text: &str) -> Option<SavedGrants> {
        serde_json::from_str(text).ok().or_else(|| {
            serde_json::from_str(text)
                .ok()
                .map(|snapshots| SavedGrants {
                    snapshots,
                    digest: None,
                })
        })
    }
}

/// A role granted to an account, read from its `SHOW GRANTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    /// The role as the server printed it (already quoted).
    pub role: String,
}

/// Roles granted in `SHOW GRANTS` lines (`GRANT <role> TO <account>`;
/// MySQL lists all of an account's roles in one line, comma-separated).
pub fn roles_in(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|g| {
            let rest = g.strip_prefix("GRANT ")?;
            if rest.contains(" ON ") && !rest.starts_with('`') {
                return None;
            }
            let (roles, _) = rest.split_once(" TO ")?;
            if roles.contains(" ON ") || roles.starts_with("PROXY") {
                return None;
            }
            Some(split_quoted_list(roles))
        })
        .flatten()
        .collect()
}

/// `a,b` split at the commas outside backquotes and quotes.
fn split_quoted_list(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in list.chars() {
        match (quote, c) {
            (None, '`' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, ',') => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out.retain(|r| !r.is_empty());
    out
}

/// Whether grant lines let their holder write despite read_only: one of
/// the server's `bypass` privileges (SUPER, CONNECTION_ADMIN, READ_ONLY
/// ADMIN: see `Dialect::read_only_bypass`), or ALL PRIVILEGES, on *.*.
pub fn lines_bypass_read_only(lines: &[String], bypass: &[&str]) -> bool {
    lines.iter().any(|g| {
        let Some((privs, _)) = g
            .strip_prefix("GRANT ")
            .and_then(|rest| rest.split_once(" ON *.* "))
        else {
            return false;
        };
        privs
            .split(',')
            .map(str::trim)
            .any(|p| p == "ALL PRIVILEGES" || p == "ALL" || bypass.contains(&p))
    })
}

impl Snapshot {
    /// Roles granted to the account (`GRANT <role> TO <account>` lines).
    pub fn roles(&self) -> Vec<RoleGrant> {
        roles_in(&self.grants)
            .into_iter()
            .map(|role| RoleGrant { role })
            .collect()
    }

    pub fn has_default_role(&self) -> bool {
        self.grants
            .iter()
            .any(|g| g.starts_with("SET DEFAULT ROLE "))
    }

    /// Whether the account's own grants give write access despite
    /// read_only (see also roles: `ops::accounts`).
    pub fn bypasses_read_only(&self, bypass: &[&str]) -> bool {
        lines_bypass_read_only(&self.grants, bypass)
    }
}

/// The roles (as the server quotes them) granted to any of `snaps`.
pub fn roles_needed(snaps: &[Snapshot]) -> BTreeSet<String> {
    snaps
        .iter()
        .flat_map(|s| s.roles())
        .map(|r| r.role)
        .collect()
}

/// MariaDB: the roles our own account may grant and revoke (result set
/// `admin_roles`). Revoking a role from an account needs its ADMIN OPTION.
pub fn add_admin_roles_query(script: &mut Script) {
    script.query(
        "admin_roles",
        "SELECT Role AS role FROM mysql.roles_mapping WHERE Admin_option = 'Y' \
         AND User = SUBSTRING(CURRENT_USER(), 1, CHAR_LENGTH(CURRENT_USER()) \
         - CHAR_LENGTH(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)) - 1) \
         AND Host = SUBSTRING_INDEX(CURRENT_USER(), '@', -1)",
    );
}

/// Roles in `needed` that the admin account cannot revoke, given the
/// `admin_roles` result set.
pub fn roles_without_admin(needed: &BTreeSet<String>, results: &Results) -> Vec<String> {
    let admin: BTreeSet<String> = results
        .set("admin_roles")
        .records()
        .map(|r| crate::quote::sql_ident(&r.text("role")))
        .collect();
    needed
        .iter()
        .filter(|r| !admin.contains(*r))
        .cloned()
        .collect()
}

/// Queries for each account's grants, named by index, the locked accounts
/// (one query: MySQL's `mysql.user.account_locked`, MariaDB 10.4+'s
/// `account_locked` in `mysql.global_priv`) and (`default_roles_table`:
/// MySQL 8.0+) the default roles of all of them.
pub fn add_snapshot_queries(
    script: &mut Script,
    flavor: Flavor,
    accounts: &[Account],
    default_roles_table: bool,
) {
    if default_roles_table {
        add_default_roles_query(script, DEFAULT_ROLES, accounts);
    }
    script.query(
        LOCKED,
        match flavor {
            Flavor::MySql => {
                "SELECT User AS user, Host AS host FROM mysql.user WHERE account_locked = 'Y'"
            }
            Flavor::MariaDb => {
                "SELECT User AS user, Host AS host FROM mysql.global_priv \
                 WHERE JSON_VALUE(Priv, '$.account_locked') IN ('1', 'true')"
            }
        },
    );
    for (i, a) in accounts.iter().enumerate() {
        script.query(
            &format!("grants:{i}"),
            &format!("SHOW GRANTS FOR {}", a.sql()),
        );
    }
}

/// Result set of the locked accounts.
const LOCKED: &str = "locked";

/// Result set names of the default-roles queries.
const DEFAULT_ROLES: &str = "default_roles";
const DEFAULT_ROLES_AFTER: &str = "after_default_roles";

fn add_default_roles_query(script: &mut Script, name: &str, accounts: &[Account]) {
    script.query(
        name,
        &format!(
            "SELECT USER AS user, HOST AS host, DEFAULT_ROLE_USER AS role_user, \
             DEFAULT_ROLE_HOST AS role_host FROM mysql.default_roles WHERE USER IN {} \
             ORDER BY USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST",
            user_list(accounts)
        ),
    );
}

/// The default roles of `a` in a default-roles result set.
fn default_roles_of(results: &Results, name: &str, a: &Account) -> Vec<Account> {
    results
        .set(name)
        .records()
        .filter(|r| r.text("user") == a.user && r.text("host") == a.host)
        .map(|r| Account::new(&r.text("role_user"), &r.text("role_host")))
        .collect()
}

pub fn parse_snapshots(results: &Results, accounts: &[Account]) -> Result<Vec<Snapshot>> {
    let locked: BTreeSet<(String, String)> = results
        .set(LOCKED)
        .records()
        .map(|r| (r.text("user"), r.text("host")))
        .collect();
    accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let grants = grant_lines(results, &format!("grants:{i}"));
            if grants.is_empty() {
                return Err(anyhow!("SHOW GRANTS for {} returned nothing", a.label()));
            }
            let locked = locked.contains(&(a.user.clone(), a.host.clone()));
            Ok(Snapshot {
                account: a.clone(),
                grants,
                locked,
                default_roles: default_roles_of(results, DEFAULT_ROLES, a),
            })
        })
        .collect()
}

/// The single column of a SHOW GRANTS result set.
pub fn grant_lines(results: &Results, name: &str) -> Vec<String> {
    results
        .set(name)
        .rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .collect()
}

/// Accounts per multi-account statement: one `REVOKE ... FROM a, b, ...`
/// costs about what a single-account one does, so blocking 5,000 accounts
/// takes a few statements instead of 5,000 (measured on MariaDB 10.11:
/// 0.25 s instead of 2.9 s).
const BATCH: usize = 500;

/// Accounts per `REVOKE <privileges> ON <object>`: fewer, longer
/// statements cost less on MariaDB (11.8, 5,000 accounts: 0.19 s in
/// statements of 500, 0.14 s of 2,500; MySQL 9.7 the same either way).
const REVOKE_BATCH: usize = 2_500;

fn account_list(snaps: &[&Snapshot]) -> String {
    snaps
        .iter()
        .map(|s| s.account.sql())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the revoke method takes rights away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    /// `REVOKE ALL PRIVILEGES, GRANT OPTION`: whatever the account holds,
    /// snapshot or not. MySQL walks every table grant of the server for
    /// each account (0.39 s for 5,000 accounts on the lab's MySQL 9.7).
    All,
    /// Exactly the snapshot's privileges, grouped by grant line (0.17 s
    /// for the same 5,000): only where the block's script has just proven
    /// the snapshot true (the digest guard); an account with a line this
    /// cannot take apart gets `REVOKE ALL` still.
    Snapshot,
}

/// The statements that block the accounts: role grants and default roles
/// per account, then the revoke (or lock) for many accounts per statement.
pub fn add_block(
    script: &mut Script,
    method: BlockMethod,
    revoke: Revoke,
    flavor: Flavor,
    snaps: &[Snapshot],
) {
    match method {
        BlockMethod::Revoke => {
            for s in snaps {
                let acct = s.account.sql();
                let label = format!("block {}", s.account.label());
                for r in s.roles() {
                    script.exec(&label, &format!("REVOKE {} FROM {acct}", r.role));
                }
                if s.has_default_role() && flavor == Flavor::MariaDb {
                    script.exec(&label, &format!("SET DEFAULT ROLE NONE FOR {acct}"));
                }
            }
            let (groups, all) = match revoke {
                Revoke::All => (Default::default(), snaps.iter().collect()),
                Revoke::Snapshot => revoke_groups(snaps),
            };
            for (what, accts) in &groups {
                for chunk in accts.chunks(REVOKE_BATCH) {
                    script.exec(
                        "block accounts",
                        &format!("REVOKE {what} FROM {}", account_list(chunk)),
                    );
                }
            }
            for chunk in all.chunks(BATCH) {
                script.exec(
                    "block accounts",
                    &format!(
                        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM {}",
                        account_list(chunk)
                    ),
                );
            }
        }
        BlockMethod::AccountLock => add_account_lock(script, snaps, true),
        BlockMethod::ReadOnlyOnly => {}
    }
}

/// `ALTER USER ... ACCOUNT LOCK` (or `UNLOCK`) for the accounts that were
/// not locked before the block, many per statement.
fn add_account_lock(script: &mut Script, snaps: &[Snapshot], lock: bool) {
    let (label, word) = if lock {
        ("lock accounts", "LOCK")
    } else {
        ("unlock accounts", "UNLOCK")
    };
    let open: Vec<&Snapshot> = snaps.iter().filter(|s| !s.locked).collect();
    for chunk in open.chunks(BATCH) {
        script.exec(
            label,
            &format!("ALTER USER {} ACCOUNT {word}", account_list(chunk)),
        );
    }
}

/// Accounts by what to revoke from them (`<privileges> ON <object>`, as
/// their grant lines name it), and the accounts that need `REVOKE ALL`
/// because a line of theirs cannot be taken apart.
type RevokeGroups<'a> = (
    std::collections::BTreeMap<String, Vec<&'a Snapshot>>,
    Vec<&'a Snapshot>,
);

fn revoke_groups(snaps: &[Snapshot]) -> RevokeGroups<'_> {
    let mut groups: std::collections::BTreeMap<String, Vec<&Snapshot>> = Default::default();
    let mut all = Vec::new();
    for s in snaps {
        let acct = s.account.sql();
        let mut mine = Vec::new();
        let mut whole = true;
        for g in &s.grants {
            if roles_in(std::slice::from_ref(g)).is_empty() && !g.starts_with("SET DEFAULT ROLE ") {
                match revoke_of(g, &acct) {
                    Some(Some(what)) => mine.push(what),
                    Some(None) => {}
                    None => whole = false,
                }
            }
        }
        if whole {
            for what in mine {
                groups.entry(what).or_default().push(s);
            }
        } else {
            all.push(s);
        }
    }
    (groups, all)
}

/// What takes one `SHOW GRANTS` line of `acct_sql` away: `Some(Some(x))`
/// for `REVOKE x FROM ...`, `Some(None)` where there is nothing to take
/// (`USAGE`), None for a line not understood (roles and default roles are
/// not asked for). Passwords, `REQUIRE` and limits that MariaDB prints
/// after the account are no privilege; `GRANT OPTION` after it is.
fn revoke_of(line: &str, acct_sql: &str) -> Option<Option<String>> {
    let rest = line.strip_prefix("GRANT ")?;
    let at = rest.find(&format!(" TO {acct_sql}"))?;
    let (what, after) = (&rest[..at], &rest[at + 4 + acct_sql.len()..]);
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    let (privs, object) = what.split_once(" ON ")?;
    if privs.starts_with("PROXY") {
        return None;
    }
    let option = after.contains("WITH GRANT OPTION");
    Some(match (privs, option) {
        ("USAGE", false) => None,
        ("USAGE", true) => Some(format!("GRANT OPTION ON {object}")),
        (_, true) => Some(format!("{privs}, GRANT OPTION ON {object}")),
        (_, false) => Some(format!("{privs} ON {object}")),
    })
}

/// A saved grant line split for replay: lines that only name privileges on
/// an object for this account can be replayed for many accounts in one
/// statement; the `USAGE` line without GRANT OPTION carries only what a
/// revoke leaves alone (password, limits, REQUIRE) and needs no replay;
/// anything else (roles, default role, GRANT OPTION, IDENTIFIED ...) is
/// replayed as the server printed it.
enum Replay<'a> {
    Grouped(&'a str),
    Skip,
    Verbatim(&'a str),
}

fn replay_of<'a>(line: &'a str, acct_sql: &str) -> Replay<'a> {
    if line.starts_with("GRANT USAGE ON *.* TO ") && !line.contains("GRANT OPTION") {
        return Replay::Skip;
    }
    let suffix = format!(" TO {acct_sql}");
    match line.strip_suffix(suffix.as_str()) {
        Some(prefix)
            if prefix.starts_with("GRANT ")
                && prefix.contains(" ON ")
                && !prefix.starts_with("GRANT PROXY") =>
        {
            Replay::Grouped(prefix)
        }
        _ => Replay::Verbatim(line),
    }
}

/// The statements that give everything back (many accounts per statement
/// where the grant is the same), then read the grants again (result sets
/// `after:<i>`) so the caller can compare. If a grouped statement fails,
/// `add_restore_each` restores account by account.
pub fn add_restore(script: &mut Script, method: BlockMethod, snaps: &[Snapshot]) {
    add_give_back(script, method, snaps);
    add_readback(script, snaps);
}

/// The statements of [`add_restore`] without the read-back.
pub fn add_give_back(script: &mut Script, method: BlockMethod, snaps: &[Snapshot]) {
    match method {
        BlockMethod::Revoke => {
            let mut groups: std::collections::BTreeMap<&str, Vec<&Snapshot>> = Default::default();
            let mut verbatim: Vec<(&Snapshot, &str)> = Vec::new();
            for s in snaps {
                let acct = s.account.sql();
                for g in &s.grants {
                    match replay_of(g, &acct) {
                        Replay::Grouped(prefix) => groups.entry(prefix).or_default().push(s),
                        Replay::Skip => {}
                        Replay::Verbatim(line) => verbatim.push((s, line)),
                    }
                }
            }
            for (prefix, accts) in &groups {
                for chunk in accts.chunks(BATCH) {
                    script.exec(
                        "restore grants",
                        &format!("{prefix} TO {}", account_list(chunk)),
                    );
                }
            }
            for (s, line) in verbatim {
                script.exec(&format!("restore {}", s.account.label()), line);
            }
            for s in snaps {
                if let Some(sql) = default_roles_sql(s) {
                    script.exec(&format!("restore {}", s.account.label()), &sql);
                }
            }
        }
        BlockMethod::AccountLock => add_account_lock(script, snaps, false),
        BlockMethod::ReadOnlyOnly => {}
    }
}

/// The same as [`add_restore`], one account at a time with every saved
/// line replayed verbatim: slower, but a failure names its account.
pub fn add_restore_each(script: &mut Script, method: BlockMethod, snaps: &[Snapshot]) {
    for (i, s) in snaps.iter().enumerate() {
        let acct = s.account.sql();
        let label = format!("restore {}", s.account.label());
        match method {
            BlockMethod::Revoke => {
                for g in &s.grants {
                    script.exec(&label, g);
                }
                if let Some(sql) = default_roles_sql(s) {
                    script.exec(&label, &sql);
                }
            }
            BlockMethod::AccountLock => {
                if !s.locked {
                    script.exec(&label, &format!("ALTER USER {acct} ACCOUNT UNLOCK"));
                }
            }
            BlockMethod::ReadOnlyOnly => {}
        }
        script.query(&format!("after:{i}"), &format!("SHOW GRANTS FOR {acct}"));
    }
    add_default_roles_readback(script, snaps);
}

/// MySQL: the statement that gives an account its default roles back.
fn default_roles_sql(s: &Snapshot) -> Option<String> {
    if s.default_roles.is_empty() {
        return None;
    }
    let roles: Vec<String> = s.default_roles.iter().map(Account::sql).collect();
    Some(format!(
        "ALTER USER {} DEFAULT ROLE {}",
        s.account.sql(),
        roles.join(", ")
    ))
}

/// Where any snapshot holds MySQL default roles, read them back too.
fn add_default_roles_readback(script: &mut Script, snaps: &[Snapshot]) {
    if snaps.iter().any(|s| !s.default_roles.is_empty()) {
        let accounts: Vec<Account> = snaps.iter().map(|s| s.account.clone()).collect();
        add_default_roles_query(script, DEFAULT_ROLES_AFTER, &accounts);
    }
}

/// Accounts whose grants read back differ from the snapshot (as sets: the
/// server may list equal grants in another order), default roles included
/// where they were read back.
pub fn differences(results: &Results, snaps: &[Snapshot]) -> Vec<String> {
    let roles_read = snaps.iter().any(|s| !s.default_roles.is_empty());
    snaps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let after = grant_lines(results, &format!("after:{i}"));
            let mut diff = diff_lines(&s.grants, &after);
            if roles_read {
                let now = default_roles_of(results, DEFAULT_ROLES_AFTER, &s.account);
                if now != s.default_roles {
                    let names = |v: &[Account]| v.iter().map(Account::label).collect::<Vec<_>>();
                    if !diff.is_empty() {
                        diff.push_str("; ");
                    }
                    diff.push_str(&format!(
                        "default roles {:?}, expected {:?}",
                        names(&now),
                        names(&s.default_roles)
                    ));
                }
            }
            (!diff.is_empty()).then(|| format!("{}: {}", s.account.label(), diff))
        })
        .collect()
}

/// Which account of `part` a failed [`add_restore_each`] statement
/// (labelled `restore 'u'@'h'` or `after:<i>`) belongs to.
pub fn restore_step_index(step: &str, part: &[Snapshot]) -> Option<usize> {
    if let Some(i) = step.strip_prefix("after:") {
        return i.parse().ok();
    }
    let label = step.strip_prefix("restore ")?;
    part.iter().position(|s| s.account.label() == label)
}

/// Only read the grants back (result sets `after:<i>`), for [`differences`].
pub fn add_readback(script: &mut Script, snaps: &[Snapshot]) {
    for (i, s) in snaps.iter().enumerate() {
        script.query(
            &format!("after:{i}"),
            &format!("SHOW GRANTS FOR {}", s.account.sql()),
        );
    }
    add_default_roles_readback(script, snaps);
}

/// A grant line in a form where equal grants read equal: MariaDB lists the
/// columns of a column grant in no stable order (`SELECT (val, id)` comes
/// back as `SELECT (id, val)` after a regrant), so column lists are sorted.
pub fn normalize(line: &str) -> String {
    let Some(rest) = line.strip_prefix("GRANT ") else {
        return line.to_string();
    };
    let Some(on) = rest.find(" ON ") else {
        return line.to_string();
    };
    let (privs, tail) = rest.split_at(on);
    let mut out = String::from("GRANT ");
    let mut chars = privs.chars();
    while let Some(c) = chars.next() {
        if c != '(' {
            out.push(c);
            continue;
        }
        let mut cols = String::new();
        for d in chars.by_ref() {
            if d == ')' {
                break;
            }
            cols.push(d);
        }
        let mut list: Vec<&str> = cols.split(',').map(str::trim).collect();
        list.sort_unstable();
        out.push('(');
        out.push_str(&list.join(", "));
        out.push(')');
    }
    out.push_str(tail);
    out
}

/// `missing [..]; extra [..]` between two grant lists (compared as sets of
/// [`normalize`]d lines), or empty if equal.
pub fn diff_lines(expected: &[String], actual: &[String]) -> String {
    let e: BTreeSet<String> = expected.iter().map(|l| normalize(l)).collect();
    let a: BTreeSet<String> = actual.iter().map(|l| normalize(l)).collect();
    let missing: Vec<&String> = e.difference(&a).collect();
    let extra: Vec<&String> = a.difference(&e).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {missing:?}"));
    }
    if !extra.is_empty() {
        parts.push(format!("extra {extra:?}"));
    }
    parts.join("; ")
}

/// A SQL list `('u1','h1'),('u2','h2')` for `(USER, HOST) IN (...)`-style
/// filters; empty accounts give a list that matches nothing.
pub fn user_list(accounts: &[Account]) -> String {
    let users: BTreeSet<&str> = accounts.iter().map(|a| a.user.as_str()).collect();
    if users.is_empty() {
        return "(NULL)".to_string();
    }
    let items: Vec<String> = users.iter().map(|u| sql_string(u)).collect();
    format!("({})", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::output;

    fn results(text: &str) -> Results {
        Results {
            sets: output::parse(text).unwrap(),
            elapsed: Default::default(),
        }
    }

    fn name(u: &str, h: &str) -> AccountName {
        AccountName {
            user: u.into(),
            host: h.into(),
        }
    }

    #[test]
    fn selection_leaves_out_admin_replication_system_and_excluded() {
        let sel = Selection {
            admin_user: "mha".into(),
            repl_user: Some("repl".into()),
            exclude: vec![name("dba", "%")],
            include: vec![],
        };
        let r = results(
            "mha-helper-marker\nmha-helper:accounts\nuser\thost\trepl\n\
             app\t%\tN\napp\t198.51.100.%\tN\nmha\t%\tN\nrepl\t%\tY\nrepl2\t%\tY\n\
             root\tlocalhost\tN\nmariadb.sys\tlocalhost\tN\ndba\t%\tN\ndba\tlocalhost\tN\no'brien\t%\tN\n",
        );
        let got: Vec<String> = select(&r, &sel).iter().map(|a| a.label()).collect();
        assert_eq!(
            got,
            vec![
                "'app'@'%'",
                "'app'@'198.51.100.%'",
                "'dba'@'localhost'",
                "'o'brien'@'%'"
            ]
        );
    }

    #[test]
    fn include_list_restricts_to_those_accounts() {
        let sel = Selection {
            admin_user: "mha".into(),
            include: vec![name("app", "%")],
            ..Default::default()
        };
        assert!(sel.is_application(&Account::new("app", "%"), false));
        assert!(!sel.is_application(&Account::new("app", "localhost"), false));
        assert!(!sel.is_application(&Account::new("mha", "%"), false));
    }

    fn snap(lines: &[&str]) -> Snapshot {
        Snapshot {
            account: Account::new("roleuser", "%"),
            grants: lines.iter().map(|s| s.to_string()).collect(),
            locked: false,
            default_roles: Vec::new(),
        }
    }

    #[test]
    fn roles_and_default_role_are_read_from_mariadb_grants() {
        let s = snap(&[
            "GRANT `app_writer` TO `roleuser`@`%`",
            "GRANT USAGE ON *.* TO `roleuser`@`%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SELECT ON `appdb`.* TO `roleuser`@`%`",
            "SET DEFAULT ROLE `app_writer` FOR `roleuser`@`%`",
        ]);
        assert_eq!(
            s.roles(),
            vec![RoleGrant {
                role: "`app_writer`".into()
            }]
        );
        assert!(s.has_default_role());
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_block(
            &mut script,
            BlockMethod::Revoke,
            Revoke::All,
            Flavor::MariaDb,
            &[s],
        );
        let stmts = script.statements();
        assert_eq!(
            &stmts[2..],
            &[
                "REVOKE `app_writer` FROM `roleuser`@`%`;",
                "SET DEFAULT ROLE NONE FOR `roleuser`@`%`;",
                "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `roleuser`@`%`;",
            ]
        );
    }

    #[test]
    fn mysql8_role_grant_with_host_is_a_role() {
        let s = snap(&[
            "GRANT `app_writer`@`%` TO `roleuser`@`%`",
            "GRANT PROXY ON ''@'' TO `x`@`%`",
        ]);
        assert_eq!(
            s.roles(),
            vec![RoleGrant {
                role: "`app_writer`@`%`".into()
            }]
        );
    }

    #[test]
    fn restore_groups_shared_grants_skips_plain_usage_and_replays_the_rest_verbatim() {
        let a = Snapshot {
            account: Account::new("a", "%"),
            grants: vec![
                "GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*AA'".into(),
                "GRANT SELECT, INSERT ON `appdb`.* TO `a`@`%`".into(),
            ],
            locked: false,
            default_roles: Vec::new(),
        };
        let b = Snapshot {
            account: Account::new("b", "%"),
            grants: vec![
                "GRANT SELECT ON *.* TO `b`@`%` IDENTIFIED BY PASSWORD '*BB'".into(),
                "GRANT SELECT, INSERT ON `appdb`.* TO `b`@`%`".into(),
                "GRANT `app_writer` TO `b`@`%`".into(),
                "SET DEFAULT ROLE `app_writer` FOR `b`@`%`".into(),
            ],
            locked: false,
            default_roles: Vec::new(),
        };
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_restore(&mut script, BlockMethod::Revoke, &[a.clone(), b.clone()]);
        assert_eq!(
            &script.statements()[2..],
            &[
                "GRANT SELECT, INSERT ON `appdb`.* TO `a`@`%`, `b`@`%`;",
                "GRANT SELECT ON *.* TO `b`@`%` IDENTIFIED BY PASSWORD '*BB';",
                "GRANT `app_writer` TO `b`@`%`;",
                "SET DEFAULT ROLE `app_writer` FOR `b`@`%`;",
                "SHOW GRANTS FOR `a`@`%`;",
                "SHOW GRANTS FOR `b`@`%`;",
            ]
        );
        // account by account, every line as saved
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_restore_each(&mut script, BlockMethod::Revoke, &[a]);
        assert_eq!(
            &script.statements()[2..],
            &[
                "GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*AA';",
                "GRANT SELECT, INSERT ON `appdb`.* TO `a`@`%`;",
                "SHOW GRANTS FOR `a`@`%`;",
            ]
        );
    }

    #[test]
    fn usage_line_with_grant_option_is_replayed() {
        let line = "GRANT USAGE ON *.* TO `a`@`%` WITH GRANT OPTION";
        assert!(matches!(replay_of(line, "`a`@`%`"), Replay::Verbatim(_)));
    }

    #[test]
    fn block_revokes_many_accounts_per_statement() {
        let snaps: Vec<Snapshot> = (0..1001)
            .map(|i| Snapshot {
                account: Account::new(&format!("u{i}"), "%"),
                grants: vec![format!("GRANT USAGE ON *.* TO `u{i}`@`%`")],
                locked: false,
                default_roles: Vec::new(),
            })
            .collect();
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_block(
            &mut script,
            BlockMethod::Revoke,
            Revoke::All,
            Flavor::MariaDb,
            &snaps,
        );
        let stmts = &script.statements()[2..];
        assert_eq!(stmts.len(), 3, "1001 accounts in batches of {BATCH}");
        assert!(
            stmts[0].starts_with("REVOKE ALL PRIVILEGES, GRANT OPTION FROM `u0`@`%`, `u1`@`%`,")
        );
        assert!(stmts[2].ends_with("FROM `u1000`@`%`;"));
    }

    #[test]
    fn saved_grants_read_with_their_digest_and_in_the_bare_form_of_older_versions() {
        let snaps = vec![snap(&["GRANT USAGE ON *.* TO `app`@`%`"])];
        let old = serde_json::to_string(&snaps).unwrap();
        assert_eq!(
            SavedGrants::parse(&old),
            Some(SavedGrants {
                snapshots: snaps.clone(),
                digest: None
            })
        );
        let new = SavedGrants {
            snapshots: snaps,
            digest: Some(Digest {
                expr: "x".into(),
                value: "user:1:2".into(),
            }),
        };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(SavedGrants::parse(&text), Some(new));
        assert_eq!(SavedGrants::parse("{\"nonsense\": 1}"), None);
    }

    #[test]
    fn a_proven_snapshot_is_revoked_line_by_line_grouped_across_accounts() {
        let a = Snapshot {
            account: Account::new("a", "%"),
            ..snap(&[
                "GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*AB' WITH MAX_QUERIES_PER_HOUR 9",
                "GRANT SELECT, INSERT ON `appdb`.`writes` TO `a`@`%`",
                "GRANT SELECT (`id`, `val`) ON `appdb`.`t1` TO `a`@`%` WITH GRANT OPTION",
                "GRANT `r1` TO `a`@`%`",
            ])
        };
        let b = Snapshot {
            account: Account::new("b", "%"),
            ..snap(&[
                "GRANT CONNECTION_ADMIN ON *.* TO `b`@`%` WITH GRANT OPTION",
                "GRANT SELECT, INSERT ON `appdb`.`writes` TO `b`@`%`",
            ])
        };
        let odd = Snapshot {
            account: Account::new("odd", "%"),
            ..snap(&[
                "GRANT SELECT ON `appdb`.* TO `odd`@`%`",
                "REVOKE INSERT ON `appdb`.`t1` FROM `odd`@`%`",
            ])
        };
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_block(
            &mut script,
            BlockMethod::Revoke,
            Revoke::Snapshot,
            Flavor::MySql,
            &[a, b, odd],
        );
        assert_eq!(
            &script.statements()[2..],
            &[
                "REVOKE `r1` FROM `a`@`%`;",
                "REVOKE CONNECTION_ADMIN, GRANT OPTION ON *.* FROM `b`@`%`;",
                "REVOKE SELECT (`id`, `val`), GRANT OPTION ON `appdb`.`t1` FROM `a`@`%`;",
                "REVOKE SELECT, INSERT ON `appdb`.`writes` FROM `a`@`%`, `b`@`%`;",
                "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `odd`@`%`;",
            ]
        );
    }

    #[test]
    fn account_lock_skips_accounts_already_locked() {
        let mut locked = snap(&["GRANT USAGE ON *.* TO `roleuser`@`%`"]);
        locked.locked = true;
        let open = Snapshot {
            account: Account::new("app", "%"),
            ..snap(&["GRANT USAGE ON *.* TO `app`@`%`"])
        };
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_block(
            &mut script,
            BlockMethod::AccountLock,
            Revoke::All,
            Flavor::MariaDb,
            &[locked.clone(), open.clone()],
        );
        assert_eq!(
            &script.statements()[2..],
            &["ALTER USER `app`@`%` ACCOUNT LOCK;"]
        );
        let mut script = Script::new(std::time::Duration::from_secs(1));
        add_restore(&mut script, BlockMethod::AccountLock, &[locked, open]);
        assert_eq!(
            &script.statements()[2..],
            &[
                "ALTER USER `app`@`%` ACCOUNT UNLOCK;",
                "SHOW GRANTS FOR `roleuser`@`%`;",
                "SHOW GRANTS FOR `app`@`%`;"
            ]
        );
    }

    #[test]
    fn differences_compare_as_sets() {
        let a = vec!["x".to_string(), "y".to_string()];
        assert_eq!(diff_lines(&a, &["y".to_string(), "x".to_string()]), "");
        assert_eq!(diff_lines(&a, &["x".to_string()]), "missing [\"y\"]");
        assert_eq!(
            diff_lines(&a, &["x".into(), "y".into(), "z".into()]),
            "extra [\"z\"]"
        );
    }

    #[test]
    fn column_order_in_column_grants_does_not_matter() {
        let before = "GRANT SELECT (`val`, `id`), UPDATE (`val`) ON `appdb`.`t1` TO `colgrant`@`%`";
        let after = "GRANT SELECT (`id`, `val`), UPDATE (`val`) ON `appdb`.`t1` TO `colgrant`@`%`";
        assert_eq!(normalize(before), normalize(after));
        assert_eq!(diff_lines(&[before.to_string()], &[after.to_string()]), "");
        // but different columns still differ
        let other = "GRANT SELECT (`id`), UPDATE (`val`) ON `appdb`.`t1` TO `colgrant`@`%`";
        assert_ne!(diff_lines(&[before.to_string()], &[other.to_string()]), "");
        // lines without column lists are left alone
        let plain = "GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*AB(C)'";
        assert_eq!(normalize(plain), plain);
    }

    #[test]
    fn bypass_detection_reads_global_grants_only() {
        let maria: &[&str] = &["SUPER", "READ_ONLY ADMIN"];
        let s = snap(&["GRANT SUPER ON *.* TO `a`@`%`"]);
        assert!(s.bypasses_read_only(maria));
        let s = snap(&["GRANT READ_ONLY ADMIN ON *.* TO `a`@`%`"]);
        assert!(s.bypasses_read_only(maria));
        let s = snap(&["GRANT ALL PRIVILEGES ON *.* TO `a`@`%`"]);
        assert!(s.bypasses_read_only(maria));
        let s = snap(&["GRANT ALL PRIVILEGES ON `appdb`.* TO `a`@`%`"]);
        assert!(!s.bypasses_read_only(maria));
    }

    #[test]
    fn mysql_lists_several_roles_in_one_line_and_each_is_found() {
        let lines = vec![
            "GRANT USAGE ON *.* TO `via_role`@`%`".to_string(),
            "GRANT `r_admin`@`%`,`r,odd`@`%`,`r_write`@`%` TO `via_role`@`%`".to_string(),
        ];
        assert_eq!(
            roles_in(&lines),
            vec!["`r_admin`@`%`", "`r,odd`@`%`", "`r_write`@`%`"]
        );
        // doubled quotes inside a quoted name stay inside it
        let lines = vec!["GRANT `a``b`@`%` TO `u`@`%` WITH ADMIN OPTION".to_string()];
        assert_eq!(roles_in(&lines), vec!["`a``b`@`%`"]);
    }

    #[test]
    fn mysql_dynamic_privileges_that_write_through_read_only_are_found_as_whole_words() {
        let mysql: &[&str] = &["SUPER", "CONNECTION_ADMIN"];
        // MySQL prints dynamic privileges on a line of their own
        let s = snap(&[
            "GRANT USAGE ON *.* TO `c`@`%`",
            "GRANT BINLOG_ADMIN,CONNECTION_ADMIN ON *.* TO `c`@`%`",
        ]);
        assert!(s.bypasses_read_only(mysql));
        let s = snap(&["GRANT GROUP_REPLICATION_ADMIN,CONNECTION_ADMINISTRATOR ON *.* TO `c`@`%`"]);
        assert!(!s.bypasses_read_only(mysql));
        // and expands ALL PRIVILEGES into a list that holds SUPER
        let s = snap(&["GRANT SELECT, INSERT, SUPER, CREATE USER ON *.* TO `r`@`%`"]);
        assert!(s.bypasses_read_only(mysql));
        let s = snap(&["GRANT SELECT, INSERT ON *.* TO `r`@`%`"]);
        assert!(!s.bypasses_read_only(mysql));
    }

    #[test]
    fn user_list_quotes_each_user_once() {
        let l = user_list(&[
            Account::new("o'brien", "%"),
            Account::new("app", "%"),
            Account::new("app", "h"),
        ]);
        assert_eq!(l, "('app','o\\'brien')");
        assert_eq!(user_list(&[]), "(NULL)");
    }
}
