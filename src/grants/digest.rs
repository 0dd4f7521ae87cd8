//! One value that stands for every row of a host's grant tables, computed
//! by the server in one query: the fast way to prove that grants did not
//! change (between the snapshot and the block) or came back exactly (after
//! a restore), without reading thousands of `SHOW GRANTS` again.
//!
//! Per table: the row count and the XOR of the first 64 bits of each row's
//! SHA-256 (every column quoted with `QUOTE`, so NULL and '' differ), so the
//! order rows are stored in does not matter. `Grantor` and `Timestamp` are
//! left out: a GRANT replayed by another account at another time writes
//! them differently, and `SHOW GRANTS` shows neither. Rows of the server's
//! own accounts, the MHA admin and the replication account are left out
//! too, so that two hosts of one cluster can be compared.
//!
//! A digest only ever speeds things up: where two digests differ, the
//! caller falls back to the exact, account-by-account way.

use serde::{Deserialize, Serialize};

use crate::mysql::{Results, Script};
use crate::quote::{sql_ident, sql_string};

/// Result set of [`add_columns_query`].
const COLUMNS: &str = "grant_columns";

/// The grant tables, each with the column naming the account a row belongs
/// to (MySQL's role tables name the grantee in upper case).
const TABLES: &[(&str, &str)] = &[
    ("user", "User"),
    ("global_priv", "User"),
    ("db", "User"),
    ("tables_priv", "User"),
    ("columns_priv", "User"),
    ("procs_priv", "User"),
    ("proxies_priv", "User"),
    ("roles_mapping", "User"),
    ("role_edges", "TO_USER"),
    ("default_roles", "USER"),
    ("global_grants", "USER"),
];

/// Columns that a replayed GRANT writes differently and SHOW GRANTS hides.
const SKIPPED: &[&str] = &["grantor", "timestamp"];

/// The statement of the block script that fails it, before anything is
/// changed, when the grants are no longer those the digest was taken of.
pub const GUARD: &str = "grants unchanged since the snapshot";

/// A digest of a host's grant tables: the expression the server computes
/// and the value it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// An SQL expression over the grant tables (one string value).
    pub expr: String,
    pub value: String,
}

/// Ask for the grant tables' columns (MariaDB's `mysql.user` is a view over
/// `global_priv`: only base tables count).
pub fn add_columns_query(script: &mut Script) {
    let names: Vec<String> = TABLES.iter().map(|(t, _)| sql_string(t)).collect();
    script.query(
        COLUMNS,
        &format!(
            "SELECT c.TABLE_NAME AS t, c.COLUMN_NAME AS c FROM information_schema.COLUMNS c \
             JOIN information_schema.TABLES b ON b.TABLE_SCHEMA = c.TABLE_SCHEMA \
             AND b.TABLE_NAME = c.TABLE_NAME AND b.TABLE_TYPE = 'BASE TABLE' \
             WHERE c.TABLE_SCHEMA = 'mysql' AND c.TABLE_NAME IN ({}) \
             ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
            names.join(", ")
        ),
    );
}

/// The digest expression for the columns [`add_columns_query`] returned,
/// leaving out the rows of `skip_users`; None if no grant table was found.
pub fn expression(results: &Results, skip_users: &[&str]) -> Option<String> {
    let rows: Vec<(String, String)> = results
        .set(COLUMNS)
        .records()
        .map(|r| (r.text("t"), r.text("c")))
        .collect();
    let skip: Vec<String> = skip_users.iter().map(|u| sql_string(u)).collect();
    let parts: Vec<String> = TABLES
        .iter()
        .filter_map(|(table, user_col)| {
            let cols: Vec<&str> = rows
                .iter()
                .filter(|(t, c)| t == table && !SKIPPED.contains(&c.to_lowercase().as_str()))
                .map(|(_, c)| c.as_str())
                .collect();
            if cols.is_empty() {
                return None;
            }
            let row: Vec<String> = cols
                .iter()
                .map(|c| format!("QUOTE({})", sql_ident(c)))
                .collect();
            let filter = if skip.is_empty() {
                String::new()
            } else {
                format!(
                    " WHERE {} NOT IN ({})",
                    sql_ident(user_col),
                    skip.join(", ")
                )
            };
            Some(format!(
                "(SELECT CONCAT({}, ':', COUNT(*), ':', IFNULL(BIT_XOR(CAST(CONV(LEFT(SHA2(\
                 CONCAT_WS(',', {}), 256), 16), 16, 10) AS UNSIGNED)), 0)) FROM mysql.{}{filter})",
                sql_string(table),
                row.join(", "),
                sql_ident(table)
            ))
        })
        .collect();
    // NULL (no digest) where the server cannot hash: a count alone is no
    // proof
    (!parts.is_empty()).then(|| {
        format!(
            "IF(SHA2('', 256) IS NULL, NULL, CONCAT_WS(' ', {}))",
            parts.join(", ")
        )
    })
}

/// Ask for the digest's value now, as result set `name`.
pub fn add_query(script: &mut Script, name: &str, expr: &str) {
    script.query(name, &format!("SELECT {expr} AS digest"));
}

/// The value a query added by [`add_query`] returned.
pub fn value(results: &Results, name: &str) -> Option<String> {
    results
        .set(name)
        .records()
        .next()
        .map(|r| r.text("digest"))
        .filter(|v| !v.is_empty())
}

/// A statement that fails (error 1172, more than one row) unless the grant
/// tables still have the digest `d` (a NULL digest fails it too); it
/// changes nothing either way.
pub fn add_guard(script: &mut Script, d: &Digest) {
    script.exec(
        GUARD,
        &format!(
            "SELECT 1 FROM (SELECT 1 AS x UNION ALL SELECT 2) two WHERE NOT ({} <=> {}) \
             INTO @mha_helper_guard",
            d.expr,
            sql_string(&d.value)
        ),
    );
}

/// Whether `e` is the guard's failure (nothing was changed before it).
pub fn failed_guard(e: &anyhow::Error) -> bool {
    crate::mysql::failed_at(e, GUARD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::output::ResultSet;

    fn columns(rows: &[(&str, &str)]) -> Results {
        let mut r = Results::default();
        r.sets.insert(
            COLUMNS.into(),
            ResultSet {
                columns: vec!["t".into(), "c".into()],
                rows: rows
                    .iter()
                    .map(|(t, c)| vec![Some(t.to_string()), Some(c.to_string())])
                    .collect(),
            },
        );
        r
    }

    #[test]
    fn the_expression_covers_every_column_but_grantor_and_timestamp() {
        let r = columns(&[
            ("tables_priv", "Host"),
            ("tables_priv", "User"),
            ("tables_priv", "Grantor"),
            ("tables_priv", "Timestamp"),
            ("tables_priv", "Table_priv"),
            ("role_edges", "TO_USER"),
        ]);
        let e = expression(&r, &["root", "o'k"]).unwrap();
        assert!(
            e.contains("QUOTE(`Host`), QUOTE(`User`), QUOTE(`Table_priv`)"),
            "{e}"
        );
        assert!(!e.contains("Grantor") && !e.contains("Timestamp"), "{e}");
        assert!(
            e.contains("FROM mysql.`tables_priv` WHERE `User` NOT IN ('root', 'o\\'k')"),
            "{e}"
        );
        assert!(
            e.contains("FROM mysql.`role_edges` WHERE `TO_USER` NOT IN"),
            "{e}"
        );
        assert!(
            !e.contains("mysql.`db`"),
            "tables the server lacks are left out: {e}"
        );
        assert!(e.starts_with("IF(SHA2('', 256) IS NULL, NULL, "), "{e}");
    }

    #[test]
    fn no_grant_table_means_no_digest() {
        assert_eq!(expression(&columns(&[]), &[]), None);
    }

    #[test]
    fn the_guard_compares_with_the_value_quoted() {
        let mut s = Script::new(std::time::Duration::from_secs(5));
        add_guard(
            &mut s,
            &Digest {
                expr: "CONCAT_WS(' ', 'x')".into(),
                value: "user:1:2".into(),
            },
        );
        let body = s.body().join("\n");
        assert!(
            body.contains("WHERE NOT (CONCAT_WS(' ', 'x') <=> 'user:1:2') INTO @mha_helper_guard"),
            "{body}"
        );
    }
}
