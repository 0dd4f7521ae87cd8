//! What kind of server a host runs, read once per host per run: flavour,
//! version, which read-only switches and account features exist, its
//! replication state, and our own session's id.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::{Results, Script};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// Replication as `SHOW SLAVE STATUS` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub master_host: String,
    pub master_port: u16,
    pub io_running: String,
    pub sql_running: String,
    pub seconds_behind: Option<u64>,
    pub last_error: String,
    /// How far the IO thread has read the source's binary log.
    pub master_log_file: String,
    pub read_master_log_pos: u64,
}

impl Replica {
    pub fn healthy(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub flavor: Flavor,
    pub version: String,
    pub version_number: (u32, u32, u32),
    pub server_id: u64,
    pub read_only: bool,
    /// None when the server has no super_read_only (MariaDB).
    pub super_read_only: Option<bool>,
    pub log_bin: bool,
    pub connection_id: u64,
    pub current_user: String,
    pub replica: Option<Replica>,
}

impl ServerInfo {
    /// Add the queries that [`ServerInfo::parse`] reads.
    pub fn add_queries(script: &mut Script) {
        script.query(
            "server",
            "SELECT VERSION() AS version, @@version_comment AS version_comment, \
             @@GLOBAL.read_only AS read_only, @@server_id AS server_id, \
             @@GLOBAL.log_bin AS log_bin, CONNECTION_ID() AS connection_id, \
             CURRENT_USER() AS account",
        );
        script.query(
            "super_read_only",
            "SHOW GLOBAL VARIABLES LIKE 'super_read_only'",
        );
        script.query("replica", "SHOW SLAVE STATUS");
    }

    pub fn parse(r: &Results) -> Result<ServerInfo> {
        let server = r
            .set("server")
            .records()
            .next()
            .ok_or_else(|| anyhow!("the server returned no version row"))?;
        let version = server.text("version");
        let comment = server.text("version_comment");
        let flavor = if version.to_ascii_lowercase().contains("mariadb")
            || comment.to_ascii_lowercase().contains("mariadb")
        {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let super_read_only = r
            .set("super_read_only")
            .records()
            .next()
            .map(|rec| rec.flag("Value"));
        let replica = r.set("replica").records().next().map(|rec| Replica {
            master_host: rec.text("Master_Host"),
            master_port: rec.num("Master_Port") as u16,
            io_running: rec.text("Slave_IO_Running"),
            sql_running: rec.text("Slave_SQL_Running"),
            seconds_behind: rec
                .get("Seconds_Behind_Master")
                .and_then(|v| v.parse().ok()),
            last_error: [rec.text("Last_IO_Error"), rec.text("Last_SQL_Error")]
                .into_iter()
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            master_log_file: rec.text("Master_Log_File"),
            read_master_log_pos: rec.num("Read_Master_Log_Pos").max(0) as u64,
        });
        Ok(ServerInfo {
            flavor,
            version_number: parse_version(&version),
            version,
            server_id: server.num("server_id") as u64,
            read_only: server.flag("read_only"),
            super_read_only,
            log_bin: server.flag("log_bin"),
            connection_id: server.num("connection_id") as u64,
            current_user: server.text("account"),
            replica,
        })
    }

    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version_number >= v
    }

    /// `ALTER USER ... ACCOUNT LOCK` exists (MySQL 5.7.6+, MariaDB 10.4.2+).
    pub fn has_account_lock(&self) -> bool {
        match self.flavor {
            Flavor::MariaDb => self.at_least((10, 4, 2)),
            Flavor::MySql => self.at_least((5, 7, 6)),
        }
    }

    /// Roles exist (MariaDB 10.0.5+, MySQL 8.0+).
    pub fn has_roles(&self) -> bool {
        match self.flavor {
            Flavor::MariaDb => self.at_least((10, 0, 5)),
            Flavor::MySql => self.at_least((8, 0, 0)),
        }
    }

    /// The privilege that lets a session write despite read_only.
    pub fn read_only_bypass_privilege(&self) -> &'static str {
        match self.flavor {
            Flavor::MariaDb if self.at_least((10, 11, 0)) => "READ_ONLY ADMIN",
            Flavor::MariaDb => "SUPER",
            Flavor::MySql => "SUPER",
        }
    }

    /// The statement that shows the binary log position (`File`,
    /// `Position`): `SHOW MASTER STATUS` is gone from MySQL 8.4.
    pub fn binlog_status_sql(&self) -> &'static str {
        match self.flavor {
            Flavor::MySql if self.at_least((8, 2, 0)) => "SHOW BINARY LOG STATUS",
            _ => "SHOW MASTER STATUS",
        }
    }

    /// Short description for tables: `MariaDB 10.11.19`.
    pub fn label(&self) -> String {
        let (a, b, c) = self.version_number;
        match self.flavor {
            Flavor::MariaDb => format!("MariaDB {a}.{b}.{c}"),
            Flavor::MySql => format!("MySQL {a}.{b}.{c}"),
        }
    }
}

/// The first three digit groups of a version string
/// (`10.11.19-MariaDB-0+deb12u1-log` -> (10, 11, 19)).
pub fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut nums = v
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::output;

    #[test]
    fn version_groups_are_read_from_debian_strings() {
        assert_eq!(
            parse_version("10.11.19-MariaDB-0+deb12u1-log"),
            (10, 11, 19)
        );
        assert_eq!(parse_version("8.0.36-0ubuntu0.22.04.1"), (8, 0, 36));
        assert_eq!(parse_version("5.7"), (5, 7, 0));
        assert_eq!(parse_version("garbage"), (0, 0, 0));
    }

    fn results(text: &str) -> Results {
        Results {
            sets: output::parse(text).unwrap(),
            elapsed: Default::default(),
        }
    }

    #[test]
    fn mariadb_replica_is_recognised() {
        let r = results(
            "mha-helper-marker\nmha-helper:server\n\
             version\tversion_comment\tread_only\tserver_id\tlog_bin\tconnection_id\taccount\n\
             10.11.19-MariaDB-0+deb12u1-log\tDebian 12\t1\t2\t1\t42\tmha@%\n\
             mha-helper-marker\nmha-helper:super_read_only\n\
             mha-helper-marker\nmha-helper:replica\n\
             Slave_IO_State\tMaster_Host\tMaster_Port\tSlave_IO_Running\tSlave_SQL_Running\tSeconds_Behind_Master\tLast_IO_Error\tLast_SQL_Error\n\
             Waiting\tdb1\t3306\tYes\tYes\t0\t\t\n",
        );
        let info = ServerInfo::parse(&r).unwrap();
        assert_eq!(info.flavor, Flavor::MariaDb);
        assert_eq!(info.super_read_only, None);
        assert!(info.read_only);
        assert!(info.has_account_lock());
        assert_eq!(info.read_only_bypass_privilege(), "READ_ONLY ADMIN");
        let rep = info.replica.unwrap();
        assert!(rep.healthy());
        assert_eq!(rep.master_host, "db1");
        assert_eq!(rep.seconds_behind, Some(0));
    }

    #[test]
    fn mysql_master_with_super_read_only() {
        let r = results(
            "mha-helper-marker\nmha-helper:server\n\
             version\tversion_comment\tread_only\tserver_id\tlog_bin\tconnection_id\taccount\n\
             8.0.36\tMySQL Community Server - GPL\t0\t1\t1\t9\troot@localhost\n\
             mha-helper-marker\nmha-helper:super_read_only\nVariable_name\tValue\nsuper_read_only\tOFF\n\
             mha-helper-marker\nmha-helper:replica\n",
        );
        let info = ServerInfo::parse(&r).unwrap();
        assert_eq!(info.flavor, Flavor::MySql);
        assert_eq!(info.super_read_only, Some(false));
        assert!(info.replica.is_none());
        assert!(info.has_roles());
    }
}
