//! user: `--user` (or the image's `User`) to the uid, gid, supplementary groups and home of the
//! container's process, read from the *image's* /etc/passwd and /etc/group, as Docker does.
//!
//! The rootfs is untrusted: both files are opened with openat2(RESOLVE_IN_ROOT), so a symlinked
//! `/etc/passwd` cannot make capsa read a host file. Missing files are not an error (numeric
//! ids still work; names then fail with Docker's text). Must not write anything.

use crate::error::{Error, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::io::Read;
use std::path::Path;

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `spec` (`""`, `uid`, `name`, `uid:gid`, `name:group`, ...) against `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ExecUser> {
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    resolve_from(&passwd, &group, spec)
}

/// The same over the files' contents (pure).
pub fn resolve_from(passwd: &str, group: &str, spec: &str) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry =
        passwd_entries(passwd).find(|e| e.name == user_part || e.uid.to_string() == user_part);
    let (uid, mut gid, home, name) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => return Err(Error::NoSuchUser(user_part.to_string())),
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|e| e.name == g || e.gid.to_string() == g) {
            Some(e) => e.gid,
            None => g.parse().map_err(|_| Error::NoSuchGroup(g.to_string()))?,
        };
    }
    // Supplementary groups: every group that lists the user by name (Docker's GetExecUser),
    // only when no group was forced with `user:group`.
    let mut additional_gids = Vec::new();
    if let (Some(name), None) = (name, group_part) {
        for g in group_entries(group) {
            let member = g.members.split(',').any(|m| m == name);
            if g.gid != gid && member && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3],
        })
    })
}

/// Reads `rel` inside `rootfs` without following any link out of it; "" if it does not exist.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rustix::fs::open(rootfs, flags, Mode::empty())
        .map_err(|e| Error::io("open rootfs", rootfs, e.into()))?;
    let fd = match rustix::fs::openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => {
            return Err(Error::io(
                "openat2 (RESOLVE_IN_ROOT)",
                rootfs.join(rel),
                e.into(),
            ));
        }
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("read", rootfs.join(rel), e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nwww-data:x:33:\nweb:x:500:www,other\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve_from(PASSWD, GROUP, "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_from(PASSWD, GROUP, "www").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![500]);
        let u = resolve_from(PASSWD, GROUP, "65534").unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        let u = resolve_from(PASSWD, GROUP, "1234:web").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 500, "/"));
        let u = resolve_from("", "", "1000:1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
    }

    #[test]
    fn docker_errors() {
        assert_eq!(
            resolve_from(PASSWD, GROUP, "alice")
                .unwrap_err()
                .to_string(),
            "unable to find user alice: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_from(PASSWD, GROUP, "0:staff")
                .unwrap_err()
                .to_string(),
            "unable to find group staff: no matching entries in group file"
        );
    }

    #[test]
    fn symlink_cannot_escape_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        // An absolute link resolves inside the rootfs (RESOLVE_IN_ROOT), not on the host.
        std::os::unix::fs::symlink("/hostonly", dir.path().join("etc/passwd")).unwrap();
        std::fs::write(dir.path().join("hostonly"), "u:x:7:7::/h:/bin/sh\n").unwrap();
        let u = resolve(dir.path(), "u").unwrap();
        assert_eq!(u.uid, 7);
    }
}
