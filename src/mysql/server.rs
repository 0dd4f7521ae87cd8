//! What kind of server a host runs, read once per host per run: flavour,
//! version, which read-only switches and account features exist, its
//! replication state, and our own session's id.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::dialect::{self, column, Dialect, Flavor};
use super::output::Record;
use super::script::{Results, Script};

/// Replication as the replica status reports it (under MySQL's old names
/// or new ones: see [`Replica::from_record`]).
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
    /// MySQL GTID auto-positioning is on for this channel.
    #[serde(default)]
    pub auto_position: bool,
    /// MySQL: transactions received / applied here (GTID sets; empty
    /// without GTID).
    #[serde(default)]
    pub retrieved_gtid_set: String,
}

impl Replica {
    pub fn healthy(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }

    /// One row of `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`, whichever
    /// column names the server used.
    pub fn from_record(rec: &Record<'_>) -> Replica {
        let text = |new: &str, old: &str| column(rec, new, old).unwrap_or("").to_string();
        let num = |new: &str, old: &str| {
            column(rec, new, old)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Replica {
            master_host: text("Source_Host", "Master_Host"),
            master_port: num("Source_Port", "Master_Port") as u16,
            io_running: text("Replica_IO_Running", "Slave_IO_Running"),
            sql_running: text("Replica_SQL_Running", "Slave_SQL_Running"),
            seconds_behind: column(rec, "Seconds_Behind_Source", "Seconds_Behind_Master")
                .and_then(|v| v.parse().ok()),
            last_error: [rec.text("Last_IO_Error"), rec.text("Last_SQL_Error")]
                .into_iter()
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            master_log_file: text("Source_Log_File", "Master_Log_File"),
            read_master_log_pos: num("Read_Source_Log_Pos", "Read_Master_Log_Pos"),
            auto_position: rec.get("Auto_Position") == Some("1"),
            retrieved_gtid_set: gtid_set(&rec.text("Retrieved_Gtid_Set")),
        }
    }
}

/// A GTID set as the server prints it, without the line breaks MySQL puts
/// between its UUIDs.
pub fn gtid_set(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
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
    /// MySQL `gtid_mode = ON`.
    #[serde(default)]
    pub gtid_mode: bool,
    /// MySQL `gtid_executed` when GTID is on (empty otherwise).
    #[serde(default)]
    pub gtid_executed: String,
    /// MySQL `server_uuid` (empty on MariaDB).
    #[serde(default)]
    pub server_uuid: String,
}

impl ServerInfo {
    /// Add the queries that [`ServerInfo::parse`] reads. The version is
    /// not known yet, so the replica status is asked in the form every
    /// current server has; `old_replica_status` asks the form servers
    /// before MySQL 8.0.22 / MariaDB 10.5.1 need (see
    /// [`ServerInfo::needs_old_replica_status`]).
    pub fn add_queries(script: &mut Script, old_replica_status: bool) {
        script.query(
            "server",
            "SELECT VERSION() AS version, @@version_comment AS version_comment, \
             @@GLOBAL.read_only AS read_only, @@server_id AS server_id, \
             @@GLOBAL.log_bin AS log_bin, CONNECTION_ID() AS connection_id, \
             CURRENT_USER() AS account",
        );
        script.query(
            "variables",
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('super_read_only', 'gtid_mode', 'gtid_executed', 'server_uuid')",
        );
        script.query(
            "replica",
            if old_replica_status {
                dialect::REPLICA_STATUS_OLD
            } else {
                dialect::REPLICA_STATUS_NEW
            },
        );
    }

    /// Whether a detection script failed only because the server predates
    /// `SHOW REPLICA STATUS` (a syntax error at that statement).
    pub fn needs_old_replica_status(e: &anyhow::Error) -> bool {
        super::error::failed_at(e, "replica")
            && super::error::script_error(e)
                .is_some_and(|m| m.kind == super::error::ErrorKind::Statement { code: 1064 })
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
        let var = |name: &str| {
            r.set("variables")
                .records()
                .find(|rec| rec.text("Variable_name") == name)
        };
        let super_read_only = var("super_read_only").map(|rec| rec.flag("Value"));
        let gtid_mode = var("gtid_mode").is_some_and(|rec| rec.text("Value") == "ON");
        let gtid_executed = if gtid_mode {
            var("gtid_executed")
                .map(|rec| gtid_set(&rec.text("Value")))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let replica = r
            .set("replica")
            .records()
            .next()
            .map(|rec| Replica::from_record(&rec));
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
            gtid_mode,
            gtid_executed,
            server_uuid: var("server_uuid")
                .map(|rec| rec.text("Value"))
                .unwrap_or_default(),
        })
    }

    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version_number >= v
    }

    /// The SQL forms this server understands.
    pub fn dialect(&self) -> Dialect {
        Dialect {
            flavor: self.flavor,
            version: self.version_number,
        }
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
             mha-helper-marker\nmha-helper:variables\n\
             mha-helper-marker\nmha-helper:replica\n\
             Slave_IO_State\tMaster_Host\tMaster_Port\tSlave_IO_Running\tSlave_SQL_Running\tSeconds_Behind_Master\tLast_IO_Error\tLast_SQL_Error\n\
             Waiting\tdb1\t3306\tYes\tYes\t0\t\t\n",
        );
        let info = ServerInfo::parse(&r).unwrap();
        assert_eq!(info.flavor, Flavor::MariaDb);
        assert_eq!(info.super_read_only, None);
        assert!(info.read_only);
        assert!(info.has_account_lock());
        assert_eq!(
            info.dialect().read_only_bypass(),
            &["SUPER", "READ_ONLY ADMIN"]
        );
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
             mha-helper-marker\nmha-helper:variables\nVariable_name\tValue\nsuper_read_only\tOFF\n\
             mha-helper-marker\nmha-helper:replica\n",
        );
        let info = ServerInfo::parse(&r).unwrap();
        assert_eq!(info.flavor, Flavor::MySql);
        assert_eq!(info.super_read_only, Some(false));
        assert!(info.replica.is_none());
        assert!(info.has_roles());
    }

    /// The header and row of a MySQL 9.7.4 replica (`SHOW REPLICA STATUS`,
    /// as the lab's db2 printed it), cut to the columns that matter.
    const MYSQL_97_REPLICA: &str = "Replica_IO_State\tSource_Host\tSource_User\tSource_Port\tConnect_Retry\tSource_Log_File\tRead_Source_Log_Pos\tRelay_Source_Log_File\tReplica_IO_Running\tReplica_SQL_Running\tExec_Source_Log_Pos\tSeconds_Behind_Source\tLast_IO_Error\tLast_SQL_Error\tRetrieved_Gtid_Set\tExecuted_Gtid_Set\tAuto_Position\n\
        Waiting for source to send event\t198.51.100.11\trepl\t3306\t1\tmysql-bin.000002\t198\tmysql-bin.000002\tYes\tYes\t198\t0\t\t\t888848d4-edea-11f1-9835-ce4d833885b0:1-24\t888848d4-edea-11f1-9835-ce4d833885b0:1-24\t1\n";

    /// MySQL 8.0.21 and older name the same columns the old way
    /// (`SHOW SLAVE STATUS`); 8.0 before 8.0.22 has no SHOW REPLICA STATUS.
    const MYSQL_80_SLAVE: &str = "Slave_IO_State\tMaster_Host\tMaster_User\tMaster_Port\tConnect_Retry\tMaster_Log_File\tRead_Master_Log_Pos\tRelay_Master_Log_File\tSlave_IO_Running\tSlave_SQL_Running\tExec_Master_Log_Pos\tSeconds_Behind_Master\tLast_IO_Error\tLast_SQL_Error\tRetrieved_Gtid_Set\tExecuted_Gtid_Set\tAuto_Position\n\
        Waiting for master to send event\t10.0.0.1\trepl\t3307\t60\tbinlog.000007\t5120\tbinlog.000007\tYes\tNo\t4000\tNULL\t\tError 'x'\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4\t1\n";

    fn mysql_results(version: &str, replica: &str) -> Results {
        results(&format!(
            "mha-helper-marker\nmha-helper:server\n\
             version\tversion_comment\tread_only\tserver_id\tlog_bin\tconnection_id\taccount\n\
             {version}\t(Debian)\t1\t2\t1\t31\tmha@%\n\
             mha-helper-marker\nmha-helper:variables\nVariable_name\tValue\n\
             gtid_executed\t888848d4-edea-11f1-9835-ce4d833885b0:1-24,\\n9b5e0c1a-edea-11f1-9835-ce4d833885b0:1-3\n\
             gtid_mode\tON\nsuper_read_only\tON\n\
             mha-helper-marker\nmha-helper:replica\n{replica}"
        ))
    }

    #[test]
    fn mysql_9_replica_status_is_read_under_its_source_names() {
        let info = ServerInfo::parse(&mysql_results("9.7.4-2", MYSQL_97_REPLICA)).unwrap();
        assert_eq!(info.flavor, Flavor::MySql);
        assert_eq!(info.super_read_only, Some(true));
        assert!(info.gtid_mode);
        // MySQL breaks gtid_executed over lines between UUIDs
        assert_eq!(
            info.gtid_executed,
            "888848d4-edea-11f1-9835-ce4d833885b0:1-24,9b5e0c1a-edea-11f1-9835-ce4d833885b0:1-3"
        );
        let rep = info.replica.clone().unwrap();
        assert!(rep.healthy());
        assert_eq!(rep.master_host, "198.51.100.11");
        assert_eq!(rep.master_port, 3306);
        assert_eq!(rep.seconds_behind, Some(0));
        assert_eq!(rep.master_log_file, "mysql-bin.000002");
        assert_eq!(rep.read_master_log_pos, 198);
        assert!(rep.auto_position);
        assert_eq!(
            rep.retrieved_gtid_set,
            "888848d4-edea-11f1-9835-ce4d833885b0:1-24"
        );
        assert_eq!(info.dialect().binlog_status(), "SHOW BINARY LOG STATUS");
    }

    #[test]
    fn mysql_8_0_slave_status_is_read_under_its_master_names() {
        let info = ServerInfo::parse(&mysql_results("8.0.21", MYSQL_80_SLAVE)).unwrap();
        let rep = info.replica.clone().unwrap();
        assert!(!rep.healthy());
        assert_eq!(rep.master_host, "10.0.0.1");
        assert_eq!(rep.master_port, 3307);
        assert_eq!(rep.seconds_behind, None);
        assert_eq!(rep.read_master_log_pos, 5120);
        assert_eq!(rep.last_error, "Error 'x'");
        assert_eq!(info.dialect().replica_status(), "SHOW SLAVE STATUS");
        assert_eq!(info.dialect().binlog_status(), "SHOW MASTER STATUS");
    }

    #[test]
    fn a_syntax_error_at_the_replica_status_asks_for_the_old_form() {
        let at = |step: &str, code: u32| {
            anyhow::Error::new(super::super::Error {
                host: "db1".into(),
                kind: super::super::ErrorKind::Statement { code },
                step: Some(step.into()),
                message: "You have an error in your SQL syntax".into(),
            })
        };
        assert!(ServerInfo::needs_old_replica_status(&at("replica", 1064)));
        assert!(!ServerInfo::needs_old_replica_status(&at("server", 1064)));
        assert!(!ServerInfo::needs_old_replica_status(&at("replica", 1227)));
    }
}
