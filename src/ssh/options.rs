//! MHA's `ssh_options` read the way OpenSSH would read them on its command
//! line, for the options mha-helper can honour with libssh2.
//!
//! The value comes from the MHA config (MHA has already removed every quote
//! character), not from the `--ssh_options` argument MHA passes to hooks:
//! that one starts with MHA's own `-o StrictHostKeyChecking=no ...` prefix,
//! and since OpenSSH keeps the first value of an option, MHA never enforces
//! host keys. mha-helper verifies them unless the configured options say
//! otherwise. First value wins for `-o` options, as in OpenSSH; an option we
//! cannot honour becomes a warning that names it.

use std::path::PathBuf;
use std::time::Duration;

/// What to do with a host that known_hosts does not list or lists with
/// another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Unknown or changed keys are refused (OpenSSH `yes`; our default).
    Strict,
    /// Unknown hosts are added to known_hosts; changed keys are refused
    /// (OpenSSH `accept-new`; also what `no` means here, see README).
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SshOptions {
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub known_hosts_files: Vec<PathBuf>,
    pub global_known_hosts_files: Vec<PathBuf>,
    pub host_key_policy: Option<HostKeyPolicy>,
    pub connect_timeout: Option<Duration>,
    pub connection_attempts: Option<u32>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub server_alive_interval: Option<u32>,
    /// One line per option that was not honoured.
    pub warnings: Vec<String>,
    /// `ProxyJump` / `-J`: connect through this host (one hop).
    pub jump: Option<Jump>,
    /// A ProxyJump was given (`none` included): later ones are ignored.
    jump_given: bool,
    /// Options that send the connection another way (a proxy command,
    /// several jump hosts, another address or source): mha-helper cannot
    /// follow them and must not go around them, so a configuration with one
    /// is refused.
    pub refused: Vec<String>,
}

/// A jump host: `[user@]host[:port]` (or `ssh://[user@]host[:port]`).
/// It is reached, and its key checked, with the same identities and
/// known_hosts as the host behind it; the user defaults to that host's.
#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl Jump {
    /// One jump host; None for what cannot be one (named in the refusal).
    pub fn parse(text: &str) -> Option<Jump> {
        let rest = text.strip_prefix("ssh://").unwrap_or(text);
        if rest.is_empty() || rest.contains([',', '/', ' ']) {
            return None;
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return None,
            None => (None, rest),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            // [v6]:port or [v6]
            Some(v6) => {
                let (h, tail) = v6.split_once(']')?;
                let port = match tail.strip_prefix(':') {
                    Some(p) => p.parse().ok().filter(|p| *p > 0)?,
                    None if tail.is_empty() => 22,
                    None => return None,
                };
                (h.to_string(), port)
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => {
                    (h.to_string(), p.parse().ok().filter(|p| *p > 0)?)
                }
                Some(_) => (hostport.to_string(), 22),
                None => (hostport.to_string(), 22),
            },
        };
        (!host.is_empty()).then_some(Jump { user, host, port })
    }
}

impl SshOptions {
    /// Parse an OpenSSH-style option string (words separated by blanks).
    pub fn parse(text: &str) -> SshOptions {
        let mut o = SshOptions::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            i += 1;
            let Some(flag) = w.strip_prefix('-').filter(|f| !f.is_empty()) else {
                o.warnings
                    .push(format!("ssh_options: ignored stray word '{w}'"));
                continue;
            };
            let letter = flag.chars().next().unwrap_or('-');
            let attached = &flag[letter.len_utf8()..];
            match letter {
                'i' | 'p' | 'l' | 'o' | 'F' | 'J' | 'b' | 'c' | 'm' | 'E' | 'L' | 'R' | 'D'
                | 'W' | 'Q' | 'S' | 'O' | 'e' | 'B' | 'w' => {
                    let arg = if !attached.is_empty() {
                        attached.to_string()
                    } else if i < words.len() {
                        i += 1;
                        words[i - 1].to_string()
                    } else {
                        o.warnings
                            .push(format!("ssh_options: -{letter} without a value, ignored"));
                        continue;
                    };
                    match letter {
                        'J' => o.set_jump(&arg, &format!("-J {arg}")),
                        'b' => o.refuse(&format!("-{letter} {arg}")),
                        'i' => o.identity_files.push(expand_tilde(&arg)),
                        'p' => o.set_port(&arg),
                        'l' => {
                            o.user.get_or_insert(arg);
                        }
                        'o' => {
                            let (key, value) = match arg.split_once('=') {
                                Some((k, v)) => (k.to_string(), v.to_string()),
                                None if i < words.len() => {
                                    i += 1;
                                    (arg.clone(), words[i - 1].to_string())
                                }
                                None => (arg.clone(), String::new()),
                            };
                            o.option(key.trim(), value.trim());
                        }
                        _ => o.warnings.push(format!(
                            "ssh_options: -{letter} {arg} is not supported by mha-helper's SSH client, ignored"
                        )),
                    }
                }
                _ => {
                    // Flags without a value (-q, -T, -x, -4, -C, -v, ...).
                    let harmless = flag.chars().all(|c| "qTtxXnNsAaCvgkKMG46".contains(c));
                    if !harmless || flag.contains(['A', 'X', 'C', '4', '6']) {
                        o.warnings.push(format!(
                            "ssh_options: -{flag} is not supported by mha-helper's SSH client, ignored"
                        ));
                    }
                }
            }
        }
        o
    }

    fn refuse(&mut self, option: &str) {
        self.refused.push(format!(
            "ssh_options: {option}: mha-helper's SSH client cannot connect through a proxy \
             command or more than one jump host, nor from or to another address, and will not \
             go around one; use one ProxyJump host, or remove it only if this manager reaches \
             the hosts directly"
        ));
    }

    /// The first ProxyJump/-J wins, as in OpenSSH; `none` means direct.
    fn set_jump(&mut self, value: &str, named: &str) {
        if std::mem::replace(&mut self.jump_given, true) || value.eq_ignore_ascii_case("none") {
            return;
        }
        match Jump::parse(value) {
            Some(j) => self.jump = Some(j),
            None => self.refuse(named),
        }
    }

    fn set_port(&mut self, v: &str) {
        match v.parse::<u16>() {
            Ok(p) if p > 0 => {
                self.port.get_or_insert(p);
            }
            _ => self
                .warnings
                .push(format!("ssh_options: bad port '{v}', ignored")),
        }
    }

    fn option(&mut self, key: &str, value: &str) {
        let yes = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true");
        match key.to_ascii_lowercase().as_str() {
            "identityfile" => self.identity_files.push(expand_tilde(value)),
            "identitiesonly" => self.identities_only = yes(value),
            "port" => self.set_port(value),
            "user" => {
                self.user.get_or_insert(value.to_string());
            }
            "userknownhostsfile" => {
                if self.known_hosts_files.is_empty() {
                    self.known_hosts_files = value.split_whitespace().map(expand_tilde).collect();
                }
            }
            "globalknownhostsfile" => {
                if self.global_known_hosts_files.is_empty() {
                    self.global_known_hosts_files =
                        value.split_whitespace().map(expand_tilde).collect();
                }
            }
            "stricthostkeychecking" => {
                if self.host_key_policy.is_none() {
                    let policy = match value.to_ascii_lowercase().as_str() {
                        "yes" | "ask" => HostKeyPolicy::Strict,
                        "accept-new" => HostKeyPolicy::AcceptNew,
                        "no" | "off" => {
                            self.warnings.push(
                                "ssh_options: StrictHostKeyChecking=no is treated as accept-new: \
                                 unknown hosts are recorded, changed host keys are still refused"
                                    .to_string(),
                            );
                            HostKeyPolicy::AcceptNew
                        }
                        other => {
                            self.warnings.push(format!(
                                "ssh_options: StrictHostKeyChecking={other} not understood, using yes"
                            ));
                            HostKeyPolicy::Strict
                        }
                    };
                    self.host_key_policy = Some(policy);
                }
            }
            "proxyjump" => self.set_jump(value, &format!("-o {key}={value}")),
            "proxycommand" | "hostname" | "bindaddress" | "bindinterface" => {
                self.refuse(&format!("-o {key}={value}"))
            }
            "connecttimeout" => match value.parse::<u64>() {
                Ok(s) if s > 0 => {
                    self.connect_timeout.get_or_insert(Duration::from_secs(s));
                }
                _ => self.warnings.push(format!(
                    "ssh_options: bad ConnectTimeout '{value}', ignored"
                )),
            },
            "connectionattempts" => match value.parse::<u32>() {
                Ok(n) if n > 0 => {
                    self.connection_attempts.get_or_insert(n);
                }
                _ => self.warnings.push(format!(
                    "ssh_options: bad ConnectionAttempts '{value}', ignored"
                )),
            },
            "serveraliveinterval" => match value.parse::<u32>() {
                Ok(n) => {
                    self.server_alive_interval.get_or_insert(n);
                }
                _ => self.warnings.push(format!(
                    "ssh_options: bad ServerAliveInterval '{value}', ignored"
                )),
            },
            // Always true of mha-helper: it never prompts and never uses
            // passwords, and a dead peer is caught by step_timeout.
            "batchmode"
            | "passwordauthentication"
            | "kbdinteractiveauthentication"
            | "challengeresponseauthentication"
            | "pubkeyauthentication"
            | "loglevel"
            | "serveralivecountmax"
            | "hashknownhosts"
            | "checkhostip" => {}
            _ => self.warnings.push(format!(
                "ssh_options: -o {key} is not supported by mha-helper's SSH client, ignored"
            )),
        }
    }
}

/// `~/x` -> `$HOME/x` (libssh2 does not expand it).
pub fn expand_tilde(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home_dir().join(rest),
        None if p == "~" => home_dir(),
        None => PathBuf::from(p),
    }
}

/// The current user's home: $HOME, else the password database.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we
    // copy the string out before any other call.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_dir.is_null() {
            let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
            return PathBuf::from(dir.to_string_lossy().into_owned());
        }
    }
    PathBuf::from("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_options_are_all_understood() {
        let o = SshOptions::parse(
            "-i /home/mha/.ssh/id_ed25519 -o IdentitiesOnly=yes \
             -o UserKnownHostsFile=/home/mha/.ssh/known_hosts -o StrictHostKeyChecking=yes",
        );
        assert_eq!(
            o.identity_files,
            vec![PathBuf::from("/home/mha/.ssh/id_ed25519")]
        );
        assert!(o.identities_only);
        assert_eq!(
            o.known_hosts_files,
            vec![PathBuf::from("/home/mha/.ssh/known_hosts")]
        );
        assert_eq!(o.host_key_policy, Some(HostKeyPolicy::Strict));
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    #[test]
    fn first_value_wins_like_openssh() {
        let o = SshOptions::parse("-o StrictHostKeyChecking=accept-new -o StrictHostKeyChecking=yes -p 2222 -o Port=22 -l a -o User=b");
        assert_eq!(o.host_key_policy, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(o.port, Some(2222));
        assert_eq!(o.user.as_deref(), Some("a"));
    }

    #[test]
    fn mha_prefix_no_means_accept_new_with_a_warning() {
        let o =
            SshOptions::parse("-o StrictHostKeyChecking=no -o BatchMode=yes -o ConnectTimeout=7");
        assert_eq!(o.host_key_policy, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(o.warnings.len(), 1);
        assert!(o.warnings[0].contains("accept-new"));
    }

    #[test]
    fn attached_values_and_space_separated_option_values() {
        let o = SshOptions::parse("-i/k1 -p2200 -oIdentityFile=/k2 -o ConnectionAttempts 3");
        assert_eq!(
            o.identity_files,
            vec![PathBuf::from("/k1"), PathBuf::from("/k2")]
        );
        assert_eq!(o.port, Some(2200));
        assert_eq!(o.connection_attempts, Some(3));
    }

    #[test]
    fn unsupported_options_are_named_in_warnings() {
        let o = SshOptions::parse("-F /etc/ssh/other -o Compression=yes -C -q");
        assert_eq!(o.warnings.len(), 3, "{:?}", o.warnings);
        assert!(o.warnings[0].contains("-F /etc/ssh/other"));
        assert!(o.warnings[1].contains("Compression"));
        assert!(o.warnings[2].contains("-C"));
        assert!(o.refused.is_empty());
    }

    #[test]
    fn one_jump_host_is_read_in_every_spelling_and_the_first_wins() {
        let j = |user: Option<&str>, host: &str, port: u16| Jump {
            user: user.map(String::from),
            host: host.into(),
            port,
        };
        for (text, want) in [
            ("-o ProxyJump=bastion", Some(j(None, "bastion", 22))),
            (
                "-J admin@bastion:2222",
                Some(j(Some("admin"), "bastion", 2222)),
            ),
            ("-Jbastion -J other", Some(j(None, "bastion", 22))),
            (
                "-o ProxyJump ssh://a@10.0.0.1:23",
                Some(j(Some("a"), "10.0.0.1", 23)),
            ),
            ("-J [2001:db8::1]:2200", Some(j(None, "2001:db8::1", 2200))),
            ("-J 2001:db8::1", Some(j(None, "2001:db8::1", 22))),
            ("-o ProxyJump=none -J bastion", None),
        ] {
            let o = SshOptions::parse(text);
            assert_eq!(o.jump, want, "{text}");
            assert!(
                o.refused.is_empty() && o.warnings.is_empty(),
                "{text}: {o:?}"
            );
        }
    }

    #[test]
    fn a_proxy_several_jump_hosts_or_other_address_is_refused_not_ignored() {
        for (text, named) in [
            ("-o ProxyJump=a,b", "-o ProxyJump=a,b"),
            ("-J @bastion", "-J @bastion"),
            ("-J bastion:0", "-J bastion:0"),
            ("-o ProxyCommand=nc", "-o ProxyCommand=nc"),
            ("-o HostName 10.0.0.9", "-o HostName=10.0.0.9"),
            ("-b 10.0.0.1", "-b 10.0.0.1"),
        ] {
            let o = SshOptions::parse(text);
            assert_eq!(o.refused.len(), 1, "{text}: {:?}", o.refused);
            assert!(
                o.refused[0].starts_with(&format!("ssh_options: {named}: ")),
                "{:?}",
                o.refused
            );
            assert!(o.warnings.is_empty(), "{text}: {:?}", o.warnings);
        }
    }

    #[test]
    fn tilde_in_identity_file_is_expanded() {
        let o = SshOptions::parse("-i ~/.ssh/id_rsa");
        assert!(o.identity_files[0].ends_with(".ssh/id_rsa"));
        assert!(!o.identity_files[0].starts_with("~"));
    }
}
