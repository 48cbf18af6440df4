//! The parent/child sync channel: a SOCK_SEQPACKET pair, one message per datagram.
//!
//! Owns the message tags and their encoding. Must not decide anything: `parent` and `child`
//! decide what to send when. Both ends are CLOEXEC, so an exec in the child shows up as EOF.

use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{Step, StepError};

/// One message.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Child: my user namespace exists, please write the maps.
    Maps,
    /// Parent: maps written.
    MapsDone,
    /// Intermediate: the process that becomes the container has this host pid.
    Pid(i32),
    /// Intermediate: as `Pid`, and it was cloned into the container's cgroup2 directory
    /// (CLONE_INTO_CGROUP): the parent must not move it there.
    PidInCgroup(i32),
    /// Parent: maps written (and the final pid known), set up the rootfs.
    Go,
    /// Parent: the process is in its cgroups (sent after `Go`: joining overlaps the init's
    /// mount work, see `parent::drive`).
    Joined,
    /// Init: namespaces and mounts are made, pivot_root is next; run the runtime-namespace
    /// hooks (prestart, createRuntime). Sent only when there are such hooks.
    Hooks,
    /// Parent: those hooks succeeded, go on to pivot_root.
    Resume,
    /// Init: fully set up, about to block on exec.fifo.
    Ready,
    /// Child: a step failed.
    Err(String),
    /// The other end closed (tenant: exec succeeded; otherwise: it died).
    Eof,
}

/// One end of the channel.
pub struct Channel(pub OwnedFd);

/// A connected pair (parent end, child end).
pub fn pair() -> Step<(Channel, Channel)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| StepError::sys("create", "the sync socketpair", e, "socketpair(AF_UNIX)"))?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Step {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Msg::Maps => buf.push(b'M'),
            Msg::MapsDone => buf.push(b'm'),
            Msg::Pid(p) => {
                buf.push(b'P');
                buf.extend_from_slice(&p.to_le_bytes());
            }
            Msg::PidInCgroup(p) => {
                buf.push(b'p');
                buf.extend_from_slice(&p.to_le_bytes());
            }
            Msg::Go => buf.push(b'G'),
            Msg::Joined => buf.push(b'J'),
            Msg::Hooks => buf.push(b'H'),
            Msg::Resume => buf.push(b'r'),
            Msg::Ready => buf.push(b'R'),
            Msg::Err(text) => {
                buf.push(b'E');
                let t = text.as_bytes();
                buf.extend_from_slice(&t[..t.len().min(4000)]);
            }
            Msg::Eof => return Ok(()),
        }
        rustix::net::send(self.0.as_fd(), &buf, SendFlags::NOSIGNAL)
            .map_err(|e| StepError::sys("send on", "the sync socket", e, "the other side died"))?;
        Ok(())
    }

    pub fn recv(&self) -> Step<Msg> {
        let mut buf = [0u8; 4096];
        let n = loop {
            match rustix::net::recv(self.0.as_fd(), &mut buf[..], RecvFlags::empty()) {
                Ok((n, _)) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                // The peer closed with messages of ours unread (e.g. JOINED after it failed):
                // AF_UNIX reports ECONNRESET once (sk_err), then the queue it left, e.g. its
                // ERR message, and EOF.
                Err(rustix::io::Errno::CONNRESET) => continue,
                Err(e) => return Err(StepError::sys("receive on", "the sync socket", e, "")),
            }
        };
        decode(&buf[..n])
    }
}

fn decode(b: &[u8]) -> Step<Msg> {
    let Some((&tag, rest)) = b.split_first() else {
        return Ok(Msg::Eof);
    };
    Ok(match tag {
        b'M' => Msg::Maps,
        b'm' => Msg::MapsDone,
        b'P' if rest.len() == 4 => {
            Msg::Pid(i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]))
        }
        b'p' if rest.len() == 4 => {
            Msg::PidInCgroup(i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]))
        }
        b'G' => Msg::Go,
        b'J' => Msg::Joined,
        b'H' => Msg::Hooks,
        b'r' => Msg::Resume,
        b'R' => Msg::Ready,
        b'E' => Msg::Err(String::from_utf8_lossy(rest).into_owned()),
        _ => return Err(StepError::msg(format!("unexpected sync message {b:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = pair().unwrap();
        for m in [
            Msg::Maps,
            Msg::Pid(4242),
            Msg::PidInCgroup(4243),
            Msg::Err("cannot x: EPERM".into()),
            Msg::Go,
            Msg::Joined,
            Msg::Hooks,
            Msg::Resume,
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), m);
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), Msg::Eof);
    }
}
