//! `mha-helper shutdown`: MHA's `shutdown_script`, which fences a dead
//! master that may not be quite dead. MHA 0.58 (MasterFailover.pm) runs
//! `<value> --command=stopssh --ssh_user=U` when the dead master answers
//! SSH, else `--command=stop`, then `--host= --ip= --port=`, `--pid_file=`
//! when `master_pid_file` is set, and the SSH extras. Exit 0 means "power
//! off done", 10 "SSH reachable, mysqld shut down"; anything else aborts
//! the failover.
//!
//! With SSH: find the server's pid (its own `@@pid_file`, else MHA's
//! `--pid_file`), stop whatever would start it again (mysqld_safe, the
//! systemd unit), SIGTERM, SIGKILL after `shutdown_timeout`, and prove the
//! process is gone: exit 10. Without SSH, or when that fails: the host's
//! `power_off_command` with its own timeout: exit 0 when it succeeds.
//! Neither possible: exit 1, so MHA stops before a second master can
//! appear; the operator makes sure the host is down and fails over again
//! (or leaves shutdown_script unset to fail over without this fence).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::{self, Host, HostSpec};
use crate::config::HostSettings;
use crate::exit::{bad_input, Code};
use crate::mha_args::HookArgs;
use crate::mysql::Script;
use crate::online::HookOptions;
use crate::quote::shell_word;

pub fn hook(opts: &HookOptions, args: &HookArgs) -> Result<Code> {
    log::info!("shutdown {}", args.redacted());
    let setup = opts.paths.load()?;
    let command = args.require("command").map_err(bad_input)?;
    let host = setup.hostname(args.require("host").map_err(bad_input)?)?;
    let spec = setup
        .specs(&[&host])?
        .pop()
        .ok_or_else(|| anyhow!("{host}: no server block"))?;
    let settings = spec.settings.clone();
    let ssh = match command {
        "stopssh" => true,
        "stop" => false,
        other => {
            return Err(bad_input(anyhow!(
                "unknown --command={other} for shutdown (MHA sends stopssh or stop)"
            )))
        }
    };
    if opts.dry_run {
        println!(
            "{host}: would stop the server {}",
            if ssh {
                "over SSH (SIGTERM, SIGKILL after shutdown_timeout), else power it off"
            } else {
                "by power_off_command"
            }
        );
        return Ok(Code::Ok);
    }
    if ssh {
        match stop_over_ssh(spec, args.value("pid_file")) {
            Ok(how) => {
                log::info!("{host}: {how}");
                println!("{host}: {how}");
                return Ok(Code::Proceed);
            }
            Err(e) => log::error!("{host}: stopping the server over SSH failed: {e:#}"),
        }
    }
    power_off(&host, args, &settings)?;
    let how = format!("{host}: powered off by power_off_command");
    log::info!("{how}");
    println!("{how}");
    Ok(Code::Ok)
}

/// Stop the server for good over SSH; what was done when it is proven gone.
fn stop_over_ssh(spec: HostSpec, mha_pid_file: Option<&str>) -> Result<String> {
    let (host, s) = (spec.name.clone(), spec.settings.clone());
    let host = host.as_str();
    let mut conn = cluster::connect(vec![spec])
        .pop()
        .ok_or_else(|| anyhow!("no connection"))??;
    let pid_file = match server_pid_file(&mut conn) {
        Ok(p) => p,
        Err(e) => {
            let p = mha_pid_file.ok_or_else(|| {
                anyhow!(
                    "cannot ask the server for its pid file ({e:#}) and MHA passed no \
                     --pid_file (set master_pid_file in the MHA config)"
                )
            })?;
            log::warn!("{host}: the server does not answer ({e:#}); using MHA's --pid_file={p}");
            p.to_string()
        }
    };
    let script = stop_script(&pid_file, s.requires_sudo, s.shutdown_timeout);
    // SIGTERM's wait, SIGKILL's wait, and the round trip.
    let limit = s.shutdown_timeout + Duration::from_secs(15);
    let out = conn
        .conn
        .exec(&format!("/bin/sh -c {}", shell_word(&script)), b"", limit)?
        .check_timeout(host)?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.success() || !said.starts_with("gone ") {
        bail!(
            "{} (exit {}{})",
            if said.is_empty() { "no answer" } else { &said },
            out.status,
            match out.stderr_text() {
                e if e.is_empty() => String::new(),
                e => format!(", {e}"),
            }
        );
    }
    Ok(format!("server stopped over SSH: {said}"))
}

/// `@@pid_file`, asked of the server through the host's own client.
fn server_pid_file(conn: &mut Host) -> Result<String> {
    let mut s = Script::new(Duration::from_secs(5));
    s.query("pid", "SELECT @@GLOBAL.pid_file AS pid_file");
    let r = conn.run_with(&s, Duration::from_secs(5))?;
    r.set("pid")
        .get(0, "pid_file")
        .filter(|p| p.starts_with('/'))
        .map(String::from)
        .ok_or_else(|| anyhow!("the server reports no absolute pid_file"))
}

/// The shell script that stops the server whose pid is in `pid_file`.
/// It prints `gone PID ...` once /proc says the process is gone (exit 0),
/// else a reason (exit 3: nothing to stop safely; 4: it would not die).
pub fn stop_script(pid_file: &str, sudo: bool, wait: Duration) -> String {
    let sudo = if sudo { "sudo -n " } else { "" };
    let tenths = (wait.as_millis() / 100).max(1);
    format!(
        r#"pidfile={pidfile}
alive() {{ [ -d /proc/$1 ] && ! grep -qs '^State:[[:space:]]*Z' /proc/$1/status; }}
waitgone() {{ i=0; while alive "$1" && [ $i -lt $2 ]; do sleep 0.1; i=$((i+1)); done; }}
pid=$(cat "$pidfile" 2>/dev/null) || {{ echo "cannot read $pidfile"; exit 3; }}
case $pid in ''|*[!0-9]*) echo "no pid in $pidfile"; exit 3;; esac
alive "$pid" || {{ echo "gone $pid (not running)"; exit 0; }}
comm=$(cat /proc/$pid/comm 2>/dev/null)
case $comm in mysqld|mariadbd) ;; *) echo "pid $pid in $pidfile is '$comm', not the server"; exit 3;; esac
how=
ppid=$(sed 's/^.*) [A-Za-z] \([0-9]*\) .*$/\1/' /proc/$pid/stat 2>/dev/null)
case $(cat /proc/$ppid/comm 2>/dev/null) in
mysqld_safe|mariadbd-safe) {sudo}kill -9 "$ppid" && how="$how, mysqld_safe $ppid killed";;
esac
unit=$(sed -n 's|^0::.*/\([^/]*\.service\)$|\1|p' /proc/$pid/cgroup 2>/dev/null)
case $unit in
mysql.service|mariadb.service|mysqld.service|mariadb@*.service|mysql@*.service)
    {sudo}systemctl stop --no-block "$unit" && how="$how, systemctl stop $unit";;
*) {sudo}kill -TERM "$pid" || {{ echo "cannot signal $pid"; exit 4; }}; how="$how, SIGTERM";;
esac
waitgone "$pid" {tenths}
if alive "$pid"; then
    {sudo}kill -9 "$pid" || {{ echo "cannot signal $pid"; exit 4; }}
    how="$how, SIGKILL after {secs} s"
    waitgone "$pid" 50
fi
alive "$pid" && {{ echo "alive $pid"; exit 4; }}
echo "gone $pid ($comm${{how}})"
"#,
        pidfile = shell_word(pid_file),
        secs = wait.as_secs_f64(),
    )
}

/// `power_off_command` with the host's values put in, run on the manager.
fn power_off(host: &str, args: &HookArgs, s: &HostSettings) -> Result<()> {
    let template = s.power_off_command.as_deref().ok_or_else(|| {
        anyhow!(
            "{host}: no SSH to stop its server and no power_off_command to power it off \
             (helper.cnf): MHA stops the failover so that it cannot leave two masters; make \
             sure {host} is down, then fail over again"
        )
    })?;
    let command = fill(
        template,
        &[
            ("host", host),
            ("ip", args.value("ip").unwrap_or("")),
            ("port", args.value("port").unwrap_or("")),
            ("ssh_host", args.value("ssh_host").unwrap_or(host)),
        ],
    );
    log::info!("{host}: running power_off_command: {command}");
    crate::local::run(&command, b"", s.power_off_timeout)
        .with_context(|| format!("{host}: power_off_command failed"))
}

/// `{name}` in `template` replaced by the shell-quoted value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), &shell_word(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_quoted_values() {
        let c = fill(
            "ipmitool -H {host}-ipmi -U admin chassis power off # {ip}:{port}",
            &[("host", "db1"), ("ip", "192.0.2.1"), ("port", "3306")],
        );
        assert_eq!(
            c,
            "ipmitool -H db1-ipmi -U admin chassis power off # 192.0.2.1:3306"
        );
        assert_eq!(fill("x {host}", &[("host", "a b;rm")]), "x 'a b;rm'");
    }

    /// The script, run here against a process of our own named like the
    /// server (a copy of sleep called mariadbd).
    #[test]
    fn the_stop_script_stops_only_a_server_process_and_proves_it_gone() {
        let dir = std::env::temp_dir().join(format!("mha-helper-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("mariadbd");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let pid_file = dir.join("server.pid");
        let run = |pid_file: &std::path::Path| {
            let script = stop_script(
                &pid_file.to_string_lossy(),
                false,
                Duration::from_millis(500),
            );
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap()
        };

        let mut server = std::process::Command::new(&fake).arg("60").spawn().unwrap();
        std::fs::write(&pid_file, format!("{}\n", server.id())).unwrap();
        let reaper = std::thread::spawn(move || server.wait());
        let o = run(&pid_file);
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{said}");
        assert!(
            said.starts_with("gone ") && said.contains("SIGTERM"),
            "{said}"
        );
        reaper.join().unwrap().unwrap();

        // Not running any more: still gone, nothing to do.
        let o = run(&pid_file);
        assert!(String::from_utf8_lossy(&o.stdout).contains("(not running)"));

        // A pid file naming some other process: refused, untouched.
        let mut other = std::process::Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
        let o = run(&pid_file);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "the other process must live"
        );
        let _ = other.kill();
        let _ = other.wait();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
