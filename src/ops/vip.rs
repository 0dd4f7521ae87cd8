//! The writer virtual IP: the address applications use to reach the
//! master. It moves with the master: `ip addr add|del` on the host over SSH
//! (with `sudo -n` when `requires_sudo`), then an announcement so
//! neighbours update their caches — gratuitous ARP for IPv4 (iputils or
//! Thomas Habets' arping, detected on the host), an unsolicited neighbour
//! advertisement for IPv6 (a few lines of Perl, which every MHA node has).
//!
//! Adding and removing are idempotent: "already there" and "already gone"
//! are success. The announcement is sent once at once and repeated twice in
//! the background (1 s apart), because Linux ignores an update within a
//! second of the previous one (neighbour locktime).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::cluster::Host;
use crate::config::helper::{HostSettings, WriterVip};
use crate::listing::{Planned, Sent};
use crate::quote::shell_word;
use crate::ssh::Exec;

/// The VIP as one host must hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSpec {
    pub vip: WriterVip,
    pub iface: String,
    pub sudo: bool,
    pub arping: bool,
}

/// What an add or remove found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Done,
    /// Add: it was already there. Remove: it was already gone.
    Already,
}

impl VipSpec {
    /// The VIP settings of a host; None when no writer_vip is configured.
    pub fn for_host(host: &str, s: &HostSettings) -> Result<Option<VipSpec>> {
        let Some(vip) = s.writer_vip else {
            return Ok(None);
        };
        let iface = s
            .cluster_interface
            .clone()
            .ok_or_else(|| anyhow!("{host}: writer_vip is set but cluster_interface is not"))?;
        Ok(Some(VipSpec {
            vip,
            iface,
            sudo: s.requires_sudo,
            arping: s.requires_arping,
        }))
    }

    fn is_v6(&self) -> bool {
        matches!(self.vip.address, IpAddr::V6(_))
    }

    fn sudo(&self) -> &'static str {
        if self.sudo {
            "sudo -n "
        } else {
            ""
        }
    }

    /// `ip -o addr show dev IFACE` lists the address.
    fn present_test(&self) -> String {
        format!(
            "ip -o addr show dev {} | grep -qF {}",
            shell_word(&self.iface),
            shell_word(&format!(" {}/", self.vip.address))
        )
    }

    /// Shell script: add if missing (prints `added` or `present`), then
    /// announce.
    pub fn add_script(&self) -> String {
        let family = if self.is_v6() { "-6 " } else { "" };
        let nodad = if self.is_v6() { " nodad" } else { "" };
        let mut s = format!(
            "if {test}; then echo present; else {sudo}ip {family}addr add {addr} dev {iface}{nodad} || exit 3; echo added; fi",
            test = self.present_test(),
            sudo = self.sudo(),
            addr = shell_word(&self.vip.to_string()),
            iface = shell_word(&self.iface),
        );
        if self.arping {
            s.push('\n');
            s.push_str(&self.announce_script());
        }
        s
    }

    /// Shell script: remove if present (prints `removed` or `absent`).
    pub fn remove_script(&self) -> String {
        let family = if self.is_v6() { "-6 " } else { "" };
        format!(
            "if {test}; then {sudo}ip {family}addr del {addr} dev {iface} || exit 3; echo removed; else echo absent; fi",
            test = self.present_test(),
            sudo = self.sudo(),
            addr = shell_word(&self.vip.to_string()),
            iface = shell_word(&self.iface),
        )
    }

    /// Shell script that proves, changing nothing, that this host can move
    /// the VIP: the interface exists, the SSH user may run `ip addr add|del`
    /// (root, CAP_NET_ADMIN, or `sudo -n` allows exactly those), and the
    /// announcement tool is there and allowed. Prints `ok`, or one line
    /// saying what is missing and exits 5.
    pub fn rights_script(&self) -> String {
        let iface = shell_word(&self.iface);
        let addr = shell_word(&self.vip.to_string());
        let family = if self.is_v6() { "-6 " } else { "" };
        let mut s = format!(
            "ip -o link show dev {iface} >/dev/null 2>&1 || {{ echo 'interface '{iface}' does not exist (cluster_interface)'; exit 5; }}\n"
        );
        if self.sudo {
            s.push_str(&format!(
                "sudo -n -l ip {family}addr add {addr} dev {iface} >/dev/null 2>&1 && \
                 sudo -n -l ip {family}addr del {addr} dev {iface} >/dev/null 2>&1 || \
                 {{ echo 'sudo -n does not allow ip addr add/del for the VIP (requires_sudo)'; exit 5; }}\n"
            ));
        } else {
            s.push_str(
                "caps=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)\n\
                 [ \"$(id -u)\" = 0 ] || [ $(( 0x${caps:-0} & 0x1000 )) -ne 0 ] || \
                 { echo \"the SSH user $(id -un) may not run ip addr add/del (not root, no CAP_NET_ADMIN); set requires_sudo = yes and allow it in sudoers\"; exit 5; }\n",
            );
        }
        if self.arping {
            if self.is_v6() {
                s.push_str(if self.sudo {
                    "sudo -n -l perl >/dev/null 2>&1 || { echo 'sudo -n does not allow perl (needed for the IPv6 announcement)'; exit 5; }\n"
                } else {
                    "command -v perl >/dev/null 2>&1 || { echo 'perl not found (needed for the IPv6 announcement)'; exit 5; }\n"
                });
            } else {
                s.push_str(&self.arping_select(5, ""));
            }
        }
        s.push_str("echo ok");
        s
    }

    /// Shell script printing `present` or `absent`.
    pub fn status_script(&self) -> String {
        format!(
            "if {}; then echo present; else echo absent; fi",
            self.present_test()
        )
    }

    /// Gratuitous ARP (IPv4) or unsolicited NA (IPv6): one now, two more in
    /// the background. Fails (exit 4) when the tool is missing or sudo does
    /// not allow it.
    fn announce_script(&self) -> String {
        let addr = shell_word(&self.vip.address.to_string());
        let iface = shell_word(&self.iface);
        let sudo = self.sudo();
        if self.is_v6() {
            let perl = shell_word(NA_PERL);
            let check = if self.sudo {
                "sudo -n -l perl >/dev/null 2>&1 || { echo 'sudo does not allow perl (needed for the IPv6 announcement)' >&2; exit 4; }\n"
            } else {
                ""
            };
            return format!(
                "{check}{sudo}perl -MSocket=:all -e {perl} {iface} {addr} || exit 4\n\
                 ( for i in 1 2; do sleep 1; {sudo}perl -MSocket=:all -e {perl} {iface} {addr}; done ) >/dev/null 2>&1 </dev/null &"
            );
        }
        // iputils: -U unsolicited, -I interface; Habets: -U, -i interface,
        // -S source (the VIP itself).
        format!(
            "{select}if [ \"$f\" = iputils ]; then a=\"$a -q -U -I {iface} {addr}\"; \
             else a=\"$a -q -U -i {iface} -S {addr} {addr}\"; fi\n\
             ( $a -c 3 ) >/dev/null 2>&1 </dev/null &",
            select = self.arping_select(4, " >&2"),
        )
    }

    /// Shell lines that set `$a` to the arping command exactly as the
    /// announcement runs it, and `$f` to its flavour (`iputils` or
    /// `habets`), asking that very command: through `sudo -n` (which finds
    /// it on sudo's own secure_path) when requires_sudo, else by the SSH
    /// user's PATH and then /usr/sbin and /sbin, where Habets' arping lives
    /// and a non-root PATH does not look. Detection with another privilege
    /// or path than the use could name a different program. A missing,
    /// forbidden or unknown arping prints one line (to `to`) and exits
    /// `code`.
    fn arping_select(&self, code: u8, to: &str) -> String {
        let find = if self.sudo {
            format!(
                "sudo -n -l arping >/dev/null 2>&1 || {{ echo 'sudo -n does not allow arping (requires_arping)'{to}; exit {code}; }}\n\
                 a='sudo -n arping'\n"
            )
        } else {
            format!(
                "a=$(command -v arping || command -v /usr/sbin/arping || command -v /sbin/arping) || \
                 {{ echo 'arping not found (install it, or set requires_arping = no)'{to}; exit {code}; }}\n"
            )
        };
        format!(
            "{find}if $a -V 2>&1 | grep -q iputils; then f=iputils; \
             elif $a --help 2>&1 | grep -qi habets; then f=habets; \
             else echo \"unknown arping flavour: $a is neither iputils' nor Habets'\"{to}; exit {code}; fi\n"
        )
    }
}

/// Sends one unsolicited neighbour advertisement (override flag, target
/// link-layer address option) for ARGV[1] from interface ARGV[0] to all
/// nodes (ff02::1), hop limit 255 as RFC 4861 requires. The kernel fills
/// in the ICMPv6 checksum of raw ICMPv6 sockets.
const NA_PERL: &str = r#"use strict; my ($if, $addr) = @ARGV;
open(my $f, '<', "/sys/class/net/$if/address") or die "no interface $if\n"; my $mac = <$f>; chomp $mac;
open($f, '<', "/sys/class/net/$if/ifindex") or die; my $idx = <$f>; chomp $idx;
socket(my $s, AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) or die "socket: $!\n";
setsockopt($s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, pack('i', 255)) or die "hops: $!\n";
setsockopt($s, IPPROTO_IPV6, IPV6_MULTICAST_IF, pack('I', $idx)) or die "if: $!\n";
my $t = inet_pton(AF_INET6, $addr) or die "bad address $addr\n";
my $na = pack('CCnN', 136, 0, 0, 0x20000000) . $t . pack('CC', 2, 1) . pack('C6', map { hex } split(/:/, $mac));
send($s, $na, 0, pack_sockaddr_in6(0, inet_pton(AF_INET6, 'ff02::1'), 0, $idx)) or die "send: $!\n";"#;

fn run(conn: &mut dyn Exec, script: &str, timeout: Duration) -> Result<String> {
    let host = conn.host().to_string();
    let out = conn
        .exec(&format!("/bin/sh -c {}", shell_word(script)), b"", timeout)?
        .check_timeout(&host)?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.success() {
        let what = match out.status {
            3 => "ip addr failed",
            4 => "announcement failed",
            5 => "cannot move the writer VIP",
            _ => "VIP command failed",
        };
        if out.status == 5 {
            bail!("{host}: {what}: {stdout}");
        }
        bail!(
            "{host}: {what}: {} (exit {})",
            out.stderr_text(),
            out.status
        );
    }
    Ok(stdout)
}

/// Put the VIP on the host behind `conn` and announce it.
pub fn add(conn: &mut dyn Exec, spec: &VipSpec, timeout: Duration) -> Result<Change> {
    let out = run(conn, &spec.add_script(), timeout)?;
    Ok(if out.starts_with("present") {
        Change::Already
    } else {
        Change::Done
    })
}

/// Take the VIP off the host behind `conn`.
pub fn remove(conn: &mut dyn Exec, spec: &VipSpec, timeout: Duration) -> Result<Change> {
    let out = run(conn, &spec.remove_script(), timeout)?;
    Ok(if out.starts_with("absent") {
        Change::Already
    } else {
        Change::Done
    })
}

/// Whether the host behind `conn` holds the VIP.
pub fn present(conn: &mut dyn Exec, spec: &VipSpec, timeout: Duration) -> Result<bool> {
    Ok(run(conn, &spec.status_script(), timeout)? == "present")
}

/// Prove (changing nothing) that the host behind `conn` can move the VIP.
pub fn check_rights(conn: &mut dyn Exec, spec: &VipSpec, timeout: Duration) -> Result<()> {
    run(conn, &spec.rights_script(), timeout).map(|_| ())
}

/// The VIP settings of a connected host, when a writer VIP is configured.
pub fn spec(host: &Host) -> Result<Option<VipSpec>> {
    VipSpec::for_host(host.name(), &host.spec.settings)
}

/// Add (`true`) or remove the VIP on `host`; `None` without a VIP.
pub fn apply(host: &mut Host, add_it: bool, timeout: Duration) -> Result<Option<Change>> {
    let Some(spec) = spec(host)? else {
        return Ok(None);
    };
    let script = if add_it {
        spec.add_script()
    } else {
        spec.remove_script()
    };
    host.record(Sent::shell(host.name(), &script));
    let change = if add_it {
        add(host.conn.as_mut(), &spec, timeout)?
    } else {
        remove(host.conn.as_mut(), &spec, timeout)?
    };
    Ok(Some(change))
}

/// Whether `host` holds the VIP (`None` without a VIP).
pub fn held_by(host: &mut Host, timeout: Duration) -> Result<Option<bool>> {
    let Some(spec) = spec(host)? else {
        return Ok(None);
    };
    host.record(Sent::shell(host.name(), &spec.status_script()));
    present(host.conn.as_mut(), &spec, timeout).map(Some)
}

/// What a move of the VIP onto (`add`) or off `target` sends, for a plan:
/// adding first asks every other host with a VIP whether it holds it.
pub fn plan(hosts: &[Host], target: &str, add: bool) -> Vec<Planned> {
    let mut v = Vec::new();
    for h in hosts {
        let Ok(Some(spec)) = spec(h) else { continue };
        if h.name() != target && add {
            v.push(Planned::shell(h.name(), &spec.status_script()));
        }
    }
    if let Some(Ok(Some(spec))) = hosts.iter().find(|h| h.name() == target).map(spec) {
        let script = if add {
            spec.add_script()
        } else {
            spec.remove_script()
        };
        v.push(Planned::shell(target, &script));
    }
    v
}

/// Before the VIP is added somewhere: it must be on none of `others` that
/// answer (read in parallel), or two hosts would answer for it.
pub fn prove_absent(others: &mut [&mut Host], timeout: Duration) -> Result<()> {
    let results = crate::cluster::parallel(others, |h| held_by(h, timeout));
    let holders: Vec<String> = others
        .iter()
        .zip(results)
        .filter_map(|(h, r)| matches!(r, Ok(Some(true))).then(|| h.name().to_string()))
        .collect();
    if !holders.is_empty() {
        bail!(
            "the writer VIP is still on {}; refusing to put it on a second host (take it off there first)",
            holders.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, sudo: bool, arping: bool) -> VipSpec {
        VipSpec {
            vip: addr.parse().unwrap(),
            iface: "eth0".into(),
            sudo,
            arping,
        }
    }

    #[test]
    fn ipv4_add_is_idempotent_and_announces_with_detected_arping() {
        let s = spec("198.51.100.100/24", true, true).add_script();
        assert!(
            s.starts_with(
                "if ip -o addr show dev eth0 | grep -qF ' 198.51.100.100/'; then echo present; \
             else sudo -n ip addr add 198.51.100.100/24 dev eth0 || exit 3; echo added; fi\n"
            ),
            "{s}"
        );
        assert!(s.contains("sudo -n -l arping"));
        assert!(s.contains("a='sudo -n arping'\nif $a -V 2>&1 | grep -q iputils"));
        assert!(s.contains("a=\"$a -q -U -I eth0 198.51.100.100\""));
        assert!(s.contains("a=\"$a -q -U -i eth0 -S 198.51.100.100 198.51.100.100\""));
        assert!(s.ends_with("( $a -c 3 ) >/dev/null 2>&1 </dev/null &"));
    }

    /// Runs a generated script with `sh` among fake programs: iputils'
    /// arping on the user's PATH, Habets' only in `sbin`, which a fake
    /// `sudo` puts on the PATH of what it runs (as sudo's secure_path
    /// does). Returns the exit code and what the arpings were run with.
    fn run_with_fakes(script: &str) -> (i32, String) {
        let d = crate::state::tests::temp_dir("vip-arping");
        let write = |name: &str, body: &str| {
            let p = d.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        std::fs::create_dir_all(d.join("user")).unwrap();
        std::fs::create_dir_all(d.join("sbin")).unwrap();
        let log = d.join("arping.log");
        // iputils' arping on the user's PATH, Habets' only where sudo looks
        write(
            "user/arping",
            &format!("case \"$1\" in -V) echo 'arping from iputils-20221126';; *) echo \"iputils $*\" >> {};; esac", log.display()),
        );
        write(
            "sbin/arping",
            &format!("case \"$1\" in --help) echo 'ARPing 2.23, by Thomas Habets';; -V) echo usage; exit 1;; *) echo \"habets $*\" >> {};; esac", log.display()),
        );
        write(
            "user/sudo",
            &format!(
                "[ \"$1\" = -n ] && shift; [ \"$1\" = -l ] && exit 0; PATH={}:/usr/bin:/bin exec \"$@\"",
                d.join("sbin").display()
            ),
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{script}\nwait"))
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", d.join("user").display()),
            )
            .output()
            .unwrap();
        let ran = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&d);
        (out.status.code().unwrap_or(-1), ran)
    }

    #[test]
    fn the_arping_flavour_is_asked_of_the_very_command_that_announces() {
        // sudo finds Habets' arping where the user's PATH finds iputils'
        let (code, ran) = run_with_fakes(&spec("198.51.100.100/24", true, true).announce_script());
        assert_eq!(code, 0);
        assert_eq!(
            ran.trim(),
            "habets -q -U -i eth0 -S 198.51.100.100 198.51.100.100 -c 3"
        );
    }

    #[test]
    fn without_sudo_an_arping_only_in_sbin_is_found_and_detected_there() {
        // what the script looks for in /usr/sbin and /sbin, spelled out
        let s = spec("198.51.100.100/24", false, true).announce_script();
        assert!(
            s.starts_with(
                "a=$(command -v arping || command -v /usr/sbin/arping || command -v /sbin/arping) || "
            ),
            "{s}"
        );
        assert!(s.contains("if $a -V 2>&1 | grep -q iputils; then f=iputils; elif $a --help"));
        let rights = spec("198.51.100.100/24", false, true).rights_script();
        assert!(rights.contains("exit 5; }\nif $a -V 2>&1"), "{rights}");
    }

    #[test]
    fn remove_reports_absent_instead_of_failing() {
        assert_eq!(
            spec("198.51.100.100/24", false, true).remove_script(),
            "if ip -o addr show dev eth0 | grep -qF ' 198.51.100.100/'; then ip addr del 198.51.100.100/24 dev eth0 \
             || exit 3; echo removed; else echo absent; fi"
        );
    }

    #[test]
    fn ipv6_uses_ip_6_nodad_and_the_na_sender() {
        let s = spec("2001:db8::100/64", false, true).add_script();
        assert!(
            s.contains("ip -6 addr add 2001:db8::100/64 dev eth0 nodad"),
            "{s}"
        );
        assert!(s.contains("perl -MSocket=:all -e '"), "{s}");
        assert!(!s.contains("arping"));
    }

    #[test]
    fn without_arping_nothing_is_announced() {
        let s = spec("198.51.100.100/24", false, false).add_script();
        assert!(!s.contains("arping") && !s.contains("perl"));
    }

    #[test]
    fn odd_interface_names_are_quoted() {
        let s = VipSpec {
            iface: "bond0.10;x".into(),
            ..spec("198.51.100.100/24", false, false)
        };
        assert!(s.remove_script().contains("dev 'bond0.10;x'"));
    }
}
