//! netns: `--network none` means a private network namespace with a working loopback, as in
//! Docker (its "none" sandbox brings `lo` up). A new netns starts with `lo` down
//! (network_namespaces(7)), and the OCI runtime does not touch interfaces, so the engine brings
//! it up between runtime create and start, from a short-lived thread that joins the container's
//! netns (setns(2) with CLONE_NEWNET changes only the calling thread). Must not configure any
//! other interface, route or sysctl.

use crate::error::{Error, Result};
use rustix::thread::LinkNameSpaceType;

/// linux/sockios.h.
const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCSIFFLAGS: u64 = 0x8914;

/// Sets IFF_UP on `lo` inside the network namespace of `pid`.
pub fn loopback_up(pid: i32) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let worker = std::thread::spawn(move || -> std::io::Result<()> {
        rustix::thread::move_into_link_name_space(
            rustix::fd::AsFd::as_fd(&ns),
            Some(LinkNameSpaceType::Network),
        )?;
        let sock = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::DGRAM,
            None,
        )?;
        set_up(&sock, "lo")
    });
    match worker.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::io("bring up lo in the netns of", path, e)),
        Err(_) => Err(Error::Runtime(format!(
            "cannot bring up lo in {path}: thread panicked"
        ))),
    }
}

fn set_up(sock: &rustix::fd::OwnedFd, name: &str) -> std::io::Result<()> {
    use rustix::fd::AsRawFd;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one `struct ifreq`, which `req` is and
    // which outlives both calls; the union member read is the one the kernel just filled.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS as _, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
