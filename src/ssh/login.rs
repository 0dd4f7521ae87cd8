//! Logging in to one SSH server over a connected stream: the handshake,
//! the host key checked against known_hosts (refused, or learnt on first
//! use, as the target's policy says), the key login.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ssh2::{MethodType, Session};

use super::known_hosts;
use super::options::{self, HostKeyPolicy};
use super::target::Target;

/// An SSH session over `stream` to `t`: handshake, the host key checked
/// against known_hosts (as `t`'s policy says), the login made.
pub(super) fn login<S: 'static + AsRawFd>(
    t: &Target,
    stream: S,
    timeout: Duration,
) -> Result<Session> {
    let mut session = Session::new().context("cannot create an SSH session")?;
    session.set_tcp_stream(stream);
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    let names = [t.ssh_host.as_str(), t.ssh_ip.as_str()];
    let files = t.known_hosts_files();
    let known = known_hosts::lookup(&files, &names, t.port)
        .with_context(|| format!("{}: cannot read known_hosts", t.name))?;
    let methods = known.hostkey_methods();
    if !methods.is_empty() {
        session
            .method_pref(MethodType::HostKey, &methods)
            .with_context(|| format!("{}: cannot set host key methods {methods}", t.name))?;
    }
    session.handshake().with_context(|| {
        format!(
            "{}: SSH handshake with {}:{} failed",
            t.name, t.ssh_ip, t.port
        )
    })?;
    verify_host_key(t, &session, &known, &files)?;
    authenticate(t, &session)?;
    session.set_timeout(0);
    Ok(session)
}

pub(super) fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => bail!("{host} resolves to no address"),
    }
}

fn hostkey_type_name(t: ssh2::HostKeyType) -> &'static str {
    use ssh2::HostKeyType::*;
    match t {
        Rsa => "ssh-rsa",
        Dss => "ssh-dss",
        Ecdsa256 => "ecdsa-sha2-nistp256",
        Ecdsa384 => "ecdsa-sha2-nistp384",
        Ecdsa521 => "ecdsa-sha2-nistp521",
        Ed25519 => "ssh-ed25519",
        Unknown => "unknown",
    }
}

fn verify_host_key(
    t: &Target,
    session: &Session,
    known: &known_hosts::Lookup,
    files: &[PathBuf],
) -> Result<()> {
    let (blob, kind) = session
        .host_key()
        .ok_or_else(|| anyhow!("{}: the server sent no host key", t.name))?;
    let key_type = hostkey_type_name(kind);
    let file_list = || {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match known.verdict(key_type, blob) {
        known_hosts::Verdict::Match => Ok(()),
        known_hosts::Verdict::Revoked => bail!(
            "{}: host key of {} is marked @revoked in known_hosts; refusing to connect",
            t.name,
            t.ssh_host
        ),
        known_hosts::Verdict::Mismatch => bail!(
            "{}: HOST KEY MISMATCH for {} ({}:{}): the {key_type} key it shows is not the one recorded in {}; \
             if the host was reinstalled, fix the entry (ssh-keygen -R {}), otherwise suspect an impostor",
            t.name,
            t.ssh_host,
            t.ssh_ip,
            t.port,
            file_list(),
            t.ssh_host
        ),
        known_hosts::Verdict::NotFound => match t.policy() {
            HostKeyPolicy::Strict => bail!(
                "{}: host key of {} ({}:{}) is not in known_hosts ({}); add it (ssh-keyscan -p {} {} >> FILE, \
                 after checking the fingerprint) or set StrictHostKeyChecking=accept-new in ssh_options",
                t.name,
                t.ssh_host,
                t.ssh_ip,
                t.port,
                file_list(),
                t.port,
                t.ssh_host
            ),
            HostKeyPolicy::AcceptNew => {
                let file = record_new_key(t, files, key_type, blob)?;
                log::warn!(
                    "{}: host key of {} was not known: trusted on first use and recorded in {} \
                     ({key_type} {}); a different key later will be refused. Compare it with the \
                     host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)",
                    t.name,
                    t.ssh_host,
                    file.display(),
                    known_hosts::fingerprint(blob)
                );
                Ok(())
            }
        },
    }
}

/// Where a key learnt on first use can be written: the first configured
/// known_hosts file when it is a real file we may write (or may create),
/// else the helper's own file. Never `/dev/null` or a file that refuses.
fn record_new_key(t: &Target, files: &[PathBuf], key_type: &str, blob: &[u8]) -> Result<PathBuf> {
    let label = known_hosts::host_label(&t.ssh_host, t.port);
    let mut tried = Vec::new();
    let first = files.first().filter(|f| known_hosts::recordable(f));
    for file in first.into_iter().chain(t.own_known_hosts.iter()) {
        match known_hosts::append(file, &label, key_type, blob) {
            Ok(()) => return Ok(file.clone()),
            Err(e) => tried.push(format!("{e:#}")),
        }
    }
    if first.is_none() {
        if let Some(f) = files.first() {
            tried.insert(0, format!("{} cannot take new keys", f.display()));
        }
    }
    bail!(
        "{}: host key of {} ({}:{}) is not known and cannot be recorded ({}); add it to a \
         known_hosts file (ssh-keyscan -p {} {} >> FILE, after checking the fingerprint {})",
        t.name,
        t.ssh_host,
        t.ssh_ip,
        t.port,
        tried.join("; "),
        t.port,
        t.ssh_host,
        known_hosts::fingerprint(blob)
    )
}

fn authenticate(t: &Target, session: &Session) -> Result<()> {
    let user = t.options.user.as_deref().unwrap_or(&t.user);
    let mut tried = Vec::new();
    let explicit = !t.options.identity_files.is_empty();
    let mut keys: Vec<PathBuf> = t.options.identity_files.clone();
    if !(explicit && t.options.identities_only) && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match session.userauth_agent(user) {
            Ok(()) if session.authenticated() => return Ok(()),
            Ok(()) => tried.push("ssh-agent".to_string()),
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    if !explicit {
        let ssh = options::home_dir().join(".ssh");
        keys = ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|k| ssh.join(k))
            .filter(|p| p.exists())
            .collect();
    }
    for key in &keys {
        match session.userauth_pubkey_file(user, None, key, None) {
            Ok(()) if session.authenticated() => return Ok(()),
            Ok(()) => tried.push(key.display().to_string()),
            Err(e) => tried.push(format!("{} ({})", key.display(), e.message())),
        }
    }
    bail!(
        "{}: SSH login as {user}@{} refused (tried: {}); check the key in ssh_options (-i) and the \
         user's authorized_keys on the host",
        t.name,
        t.ssh_host,
        if tried.is_empty() {
            "no key found".to_string()
        } else {
            tried.join(", ")
        }
    )
}
