//! The SQL a server understands, by flavour and version, chosen in one
//! place: replication statements, their result columns, the privileges that
//! write through `read_only`, and whether GRANT works under
//! `super_read_only`. (How sessions are ended, `KILL USER` on MariaDB and by
//! id on MySQL, is by flavour alone: `ops::sessions::kill_statements`.)
//!
//! MySQL renamed its replication statements in 8.0.22 (`SHOW REPLICA
//! STATUS`, `START REPLICA`, columns `Source_*`/`Replica_*`) and removed the
//! old ones in 8.4; `SHOW BINARY LOG STATUS` arrived in 8.2 and `SHOW MASTER
//! STATUS` left in 8.4. MariaDB took the new statement names in 10.5.1 but
//! kept its old column names, and still accepts every old form.

use serde::{Deserialize, Serialize};

use super::output::Record;

/// Which server: the dialect follows from it and the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// One server's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub flavor: Flavor,
    pub version: (u32, u32, u32),
}

/// Replica status as the first detection script asks for it, before the
/// version is known: every server still supported by its vendor has it.
pub const REPLICA_STATUS_NEW: &str = "SHOW REPLICA STATUS";
/// The form older servers (MySQL < 8.0.22, MariaDB < 10.5.1) need instead.
pub const REPLICA_STATUS_OLD: &str = "SHOW SLAVE STATUS";

impl Dialect {
    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version >= v
    }

    fn new_replica_names(&self) -> bool {
        match self.flavor {
            Flavor::MySql => self.at_least((8, 0, 22)),
            Flavor::MariaDb => self.at_least((10, 5, 1)),
        }
    }

    pub fn replica_status(&self) -> &'static str {
        if self.new_replica_names() {
            REPLICA_STATUS_NEW
        } else {
            REPLICA_STATUS_OLD
        }
    }

    pub fn start_replica(&self) -> &'static str {
        if self.new_replica_names() {
            "START REPLICA"
        } else {
            "START SLAVE"
        }
    }

    /// The statement that shows the binary log position (`File`,
    /// `Position`).
    pub fn binlog_status(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql if self.at_least((8, 2, 0)) => "SHOW BINARY LOG STATUS",
            _ => "SHOW MASTER STATUS",
        }
    }

    pub fn stop_replica(&self) -> &'static str {
        if self.new_replica_names() {
            "STOP REPLICA"
        } else {
            "STOP SLAVE"
        }
    }

    /// The word in the replication source's option names: `SOURCE_HOST`
    /// (MySQL 8.0.23+) or `MASTER_HOST`.
    pub fn source_word(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql if self.at_least((8, 0, 23)) => "SOURCE",
            _ => "MASTER",
        }
    }

    /// The function that waits for the SQL thread to reach a position of
    /// the source's binary log.
    pub fn pos_wait(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql if self.at_least((8, 0, 26)) => "SOURCE_POS_WAIT",
            _ => "MASTER_POS_WAIT",
        }
    }

    /// MySQL 8.0+ (caching_sha2_password): a replica without TLS must ask
    /// for the source's public key.
    pub fn needs_public_key(&self) -> bool {
        self.flavor == Flavor::MySql && self.at_least((8, 0, 0))
    }

    /// How a person repoints a replica on this server (for messages).
    pub fn change_source(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql if self.at_least((8, 0, 23)) => "CHANGE REPLICATION SOURCE TO",
            _ => "CHANGE MASTER TO",
        }
    }

    /// Privileges that let a session write despite `read_only` (besides
    /// ALL PRIVILEGES on `*.*`).
    pub fn read_only_bypass(&self) -> &'static [&'static str] {
        match self.flavor {
            Flavor::MariaDb if self.at_least((10, 11, 0)) => &["SUPER", "READ_ONLY ADMIN"],
            Flavor::MariaDb => &["SUPER"],
            Flavor::MySql if self.at_least((8, 0, 0)) => &["SUPER", "CONNECTION_ADMIN"],
            Flavor::MySql => &["SUPER"],
        }
    }

    /// `super_read_only` blocks GRANT and REVOKE too, even for root, so the
    /// session that gives grants back must lift it (keeping read_only).
    pub fn super_read_only_blocks_grants(&self) -> bool {
        self.flavor == Flavor::MySql
    }
}

/// A replica-status column under either vendor's name.
pub fn column<'a>(rec: &Record<'a>, new: &str, old: &str) -> Option<&'a str> {
    rec.get(new).or_else(|| rec.get(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(flavor: Flavor, version: (u32, u32, u32)) -> Dialect {
        Dialect { flavor, version }
    }

    #[test]
    fn mysql_8_0_before_8_0_22_keeps_the_slave_statements() {
        let old = d(Flavor::MySql, (8, 0, 21));
        assert_eq!(old.replica_status(), "SHOW SLAVE STATUS");
        assert_eq!(old.start_replica(), "START SLAVE");
        assert_eq!(old.binlog_status(), "SHOW MASTER STATUS");
        assert_eq!(old.change_source(), "CHANGE MASTER TO");
        let new = d(Flavor::MySql, (8, 0, 22));
        assert_eq!(new.replica_status(), "SHOW REPLICA STATUS");
        assert_eq!(new.start_replica(), "START REPLICA");
        assert_eq!(new.binlog_status(), "SHOW MASTER STATUS");
    }

    #[test]
    fn mysql_8_4_and_9_use_only_the_new_forms() {
        for v in [(8, 4, 3), (9, 7, 4)] {
            let m = d(Flavor::MySql, v);
            assert_eq!(m.replica_status(), "SHOW REPLICA STATUS");
            assert_eq!(m.binlog_status(), "SHOW BINARY LOG STATUS");
            assert_eq!(m.change_source(), "CHANGE REPLICATION SOURCE TO");
            assert!(m.super_read_only_blocks_grants());
            assert_eq!(m.read_only_bypass(), &["SUPER", "CONNECTION_ADMIN"]);
        }
    }

    #[test]
    fn mariadb_keeps_master_status_and_names_its_bypass_privilege() {
        let m = d(Flavor::MariaDb, (10, 11, 19));
        assert_eq!(m.replica_status(), "SHOW REPLICA STATUS");
        assert_eq!(m.binlog_status(), "SHOW MASTER STATUS");
        assert!(!m.super_read_only_blocks_grants());
        assert_eq!(m.read_only_bypass(), &["SUPER", "READ_ONLY ADMIN"]);
        assert_eq!(
            d(Flavor::MariaDb, (10, 4, 30)).replica_status(),
            "SHOW SLAVE STATUS"
        );
        assert_eq!(
            d(Flavor::MariaDb, (10, 6, 0)).read_only_bypass(),
            &["SUPER"]
        );
    }
}
