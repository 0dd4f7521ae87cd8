//! Reaching a host through one jump host (`ProxyJump` / `-J` in
//! ssh_options), the way OpenSSH does: an SSH session to the jump host,
//! its host key checked and the login made like any host's; from there a
//! `direct-tcpip` channel to the host's sshd; the host's own session runs
//! over that channel, its key checked as always. libssh2 runs a session
//! over a socket, so the channel is joined to one end of a local socket
//! pair by a thread that copies both ways until either side ends.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use ssh2::{BlockDirections, Channel, Session};

use super::login::{login, tcp_connect};
use super::options::Jump;
use super::target::Target;

/// The jump host as a target of its own: its address and port, its user
/// (the host's unless the jump names one), the host's identities and
/// known_hosts; named in messages as the jump host of `t`.
fn hop(t: &Target, jump: &Jump) -> Target {
    let mut hop = t.clone();
    hop.name = format!("{} (jump host of {})", jump.host, t.name);
    hop.ssh_host = jump.host.clone();
    hop.ssh_ip = jump.host.clone();
    hop.port = jump.port;
    hop.options.jump = None;
    hop.options.port = None;
    hop.options.user = jump.user.clone().or_else(|| t.options.user.clone());
    hop.keeper = None;
    hop
}

/// Log in to the jump host, open a channel from it to `t`'s sshd, and
/// return the local end of a socket that carries it.
pub fn open(t: &Target, jump: &Jump, timeout: Duration) -> Result<UnixStream> {
    let hop = hop(t, jump);
    let stream = tcp_connect(&hop.ssh_ip, hop.port, timeout).with_context(|| {
        format!(
            "{}: cannot reach the jump host's sshd at {}:{} (is it up?)",
            t.name, jump.host, jump.port
        )
    })?;
    stream.set_nodelay(true).ok();
    let session = login(&hop, stream.try_clone()?, timeout)?;
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    let channel = session
        .channel_direct_tcpip(&t.ssh_ip, t.port, None)
        .with_context(|| {
            format!(
                "{}: the jump host {} could not connect to {}:{} (is sshd up there, and may the \
                 jump host forward to it: AllowTcpForwarding?)",
                t.name, jump.host, t.ssh_ip, t.port
            )
        })?;
    session.set_timeout(0);
    if let Some(interval) = t.options.server_alive_interval.filter(|i| *i > 0) {
        session.set_keepalive(true, interval);
    }
    let (ours, theirs) = UnixStream::pair().context("cannot create a local socket pair")?;
    let name = t.name.clone();
    std::thread::Builder::new()
        .name(format!("jump-{name}"))
        .spawn(move || {
            if let Err(e) = pump(&session, &stream, channel, theirs) {
                log::debug!("{name}: jump host channel ended: {e:#}");
            }
            // Saying goodbye over a cut link must not wait for TCP.
            session.set_timeout(500);
        })
        .context("cannot start the jump host's copying thread")?;
    Ok(ours)
}

/// Bytes waiting to go one way.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    ended: bool,
}

/// Copy between `local` and `channel` until both directions have ended or
/// one fails.
fn pump(session: &Session, tcp: &TcpStream, mut channel: Channel, local: UnixStream) -> Result<()> {
    session.set_blocking(false);
    local.set_nonblocking(true)?;
    let mut up = Pending::default(); // local -> jump host
    let mut down = Pending::default(); // jump host -> local
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut moved = false;
        if up.buf.is_empty() && !up.ended {
            moved |= fill(&mut (&local), &mut buf, &mut up)?;
        }
        if !up.buf.is_empty() {
            moved |= drain(&mut channel, &mut up)?;
        }
        if up.ended && up.buf.is_empty() {
            // The host's session is over: nothing more to carry.
            let _ = channel.send_eof();
            let _ = channel.close();
            return Ok(());
        }
        if down.buf.is_empty() && !down.ended {
            moved |= fill(&mut channel, &mut buf, &mut down)?;
        }
        if !down.buf.is_empty() {
            moved |= drain(&mut (&local), &mut down)?;
        }
        if down.ended && down.buf.is_empty() {
            let _ = local.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if !moved {
            let _ = session.keepalive_send();
            wait(session, tcp, &local, !down.buf.is_empty());
        }
    }
}

/// Read what `from` has into `p`; whether anything moved.
fn fill(from: &mut impl Read, buf: &mut [u8], p: &mut Pending) -> Result<bool> {
    match from.read(buf) {
        Ok(0) => {
            p.ended = true;
            Ok(true)
        }
        Ok(n) => {
            p.buf.extend_from_slice(&buf[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Write what `p` holds to `to`; whether anything moved.
fn drain(to: &mut impl Write, p: &mut Pending) -> Result<bool> {
    match to.write(&p.buf) {
        Ok(n) => {
            p.buf.drain(..n);
            Ok(n > 0)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Wait (at most 50 ms) until the local socket or the jump host's can make
/// progress.
fn wait(session: &Session, tcp: &TcpStream, local: &UnixStream, local_out: bool) {
    let remote = match session.block_directions() {
        BlockDirections::Outbound => libc::POLLOUT,
        BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        BlockDirections::Inbound | BlockDirections::None => libc::POLLIN,
    };
    let mut fds = [
        libc::pollfd {
            fd: local.as_raw_fd(),
            events: libc::POLLIN | if local_out { libc::POLLOUT } else { 0 },
            revents: 0,
        },
        libc::pollfd {
            fd: tcp.as_raw_fd(),
            events: remote,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds for the duration of the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 2, 50);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jump_host_is_checked_and_named_as_itself_with_the_hosts_keys() {
        let mut t = Target {
            name: "db1".into(),
            ssh_host: "db1".into(),
            ssh_ip: "10.0.0.1".into(),
            port: 22,
            user: "mha".into(),
            options: super::super::SshOptions::parse("-i /k -J ops@bastion:2222 -p 2200"),
            connect_timeout: Duration::from_secs(3),
            own_known_hosts: None,
            keeper: None,
        };
        let j = t.options.jump.clone().unwrap();
        let h = hop(&t, &j);
        assert_eq!((h.ssh_host.as_str(), h.port), ("bastion", 2222));
        assert_eq!(h.options.user.as_deref(), Some("ops"));
        assert_eq!(h.options.identity_files, t.options.identity_files);
        assert!(h.options.jump.is_none() && h.options.port.is_none());
        assert!(h.name.contains("jump host of db1"), "{}", h.name);
        // Without a user of its own, the jump host is logged in to as the host's.
        t.options.jump = Some(Jump {
            user: None,
            host: "bastion".into(),
            port: 22,
        });
        let h = hop(&t, t.options.jump.as_ref().unwrap());
        assert_eq!(h.options.user, None);
        assert_eq!(h.user, "mha");
    }
}
