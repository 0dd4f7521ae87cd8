//! The example configuration files in conf/ stay true: they load, and mean
//! what their comments say.

use std::path::Path;

use mha_helper::config::helper::{BlockMethod, HelperConfig};
use mha_helper::config::mha::MhaConfig;
use mha_helper::mha::hooks::{problem, Files, Hook};

fn conf(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(name)
}

#[test]
fn helper_example_loads_with_the_documented_defaults() {
    let h = HelperConfig::load(Some(&conf("helper.cnf.example"))).unwrap();
    let d = h.defaults();
    assert_eq!(d.block_method, BlockMethod::Revoke);
    assert_eq!(d.grace_period.as_secs(), 5);
    assert_eq!(d.step_timeout.as_secs(), 30);
    assert!(d.writer_vip.is_none());
    assert!(d.requires_arping);
    assert!(!d.requires_sudo);
    // found on each host: mariadb, else mysql
    assert_eq!(d.mysql_client, None);
    // no notification sink unless one is set
    assert!(!d.notify.any());
    assert_eq!(d.notify.timeout.as_secs(), 10);
    assert_eq!(d.notify.retries, 2);
}

#[test]
fn mha_example_loads_as_mha_would_and_points_its_hooks_at_mha_helper() {
    let resolve = |h: &str| -> anyhow::Result<String> {
        Ok(match h {
            "db1.example.com" => "192.0.2.11",
            "db2.example.com" => "192.0.2.12",
            _ => "192.0.2.13",
        }
        .to_string())
    };
    let m = MhaConfig::load_with_resolver(
        &conf("app1.cnf.example"),
        Some(Path::new("/nonexistent")),
        &resolve,
    )
    .unwrap();
    assert_eq!(
        m.app, "app1.cnf",
        "MHA names the app after the file, minus its last extension"
    );
    assert_eq!(m.servers.len(), 3);
    // The hooks are mha-helper's on this file: `switchover` and `failover`
    // would not refuse them.
    let own = Files {
        app: "/etc/mha/app1.cnf".into(),
        helper: Some("/etc/mha-helper/helper.cnf".into()),
    };
    for s in &m.servers {
        for (hook, value) in [
            (Hook::Online, &s.master_ip_online_change_script),
            (Hook::Failover, &s.master_ip_failover_script),
        ] {
            assert_eq!(
                problem(hook, value.as_deref(), &own, None),
                None,
                "{}",
                s.hostname
            );
        }
        for key in ["report_script", "shutdown_script"] {
            let v = s.values.get(key).map(String::as_str).unwrap_or_default();
            assert!(v.starts_with("/usr/bin/mha-helper "), "{key}: {v}");
        }
    }
    assert!(m.servers[2].no_master);
}
