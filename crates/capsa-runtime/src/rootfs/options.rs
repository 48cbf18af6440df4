//! Mount option strings (config.json `mounts[].options`) to MS_* flags, propagation and data.
//!
//! Pure: no syscalls. Owns the option vocabulary (mount(8) names plus runc's propagation names).

/// The parsed options of one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags for the mount call (MS_BIND/MS_REC included for bind/rbind).
    pub flags: u64,
    /// Propagation changes applied after the mount, in order (MS_SHARED etc., maybe | MS_REC).
    pub propagation: Vec<u64>,
    /// Options the kernel takes as filesystem data (`mode=755,size=65536k`), comma-joined.
    pub data: String,
    /// `rro`-style recursive read-only (applied with mount_setattr(AT_RECURSIVE)).
    pub recursive_ro: bool,
    /// `idmap` (Some(false)) or `ridmap` (Some(true), recursive): an idmapped bind mount.
    pub idmap: Option<bool>,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// (name, clear?, flag): the flag-like options of mount(8).
const FLAGS: &[(&str, bool, libc::c_ulong)] = &[
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("defaults", false, 0),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("mand", false, libc::MS_MANDLOCK),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("sync", false, libc::MS_SYNCHRONOUS),
];

/// Propagation names as runc accepts them.
fn propagation(name: &str) -> Option<u64> {
    let (rec, base) = match name.strip_prefix('r') {
        Some(b @ ("private" | "shared" | "slave" | "unbindable")) => (true, b),
        _ => (false, name),
    };
    let flag = match base {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if rec { flag | libc::MS_REC } else { flag })
}

/// Parse a mount's options.
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        if let Some(&(_, clear, f)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if clear { o.flags &= !f } else { o.flags |= f }
        } else if let Some(p) = propagation(opt) {
            o.propagation.push(p);
        } else if opt == "rro" {
            o.recursive_ro = true;
            o.flags |= libc::MS_RDONLY;
        } else if opt == "idmap" || opt == "ridmap" {
            // OCI mount extension: an idmapped bind (runtime-spec config.md, "idmap"/"ridmap").
            o.idmap = Some(opt == "ridmap");
        } else if opt == "tmpcopyup" || opt == "rrw" {
            // runc extensions we do not implement; ignored as runc ignores unknown extensions.
        } else {
            data.push(opt);
        }
    }
    o.data = data.join(",");
    o
}

/// Propagation of a `rootfsPropagation` value ("" means unset).
pub fn root_propagation(value: &str) -> Option<u64> {
    propagation(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, (libc::MS_NOSUID | libc::MS_STRICTATIME));
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.is_bind());
    }

    #[test]
    fn later_options_win() {
        assert_eq!(opts(&["ro", "rw"]).flags, 0);
        assert_eq!(opts(&["nodev", "dev", "noexec"]).flags, libc::MS_NOEXEC);
    }

    #[test]
    fn bind_and_propagation() {
        let o = opts(&["rbind", "ro", "rslave", "shared"]);
        assert!(o.is_bind());
        assert_eq!(o.flags, (libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY));
        assert_eq!(
            o.propagation,
            vec![(libc::MS_SLAVE | libc::MS_REC), libc::MS_SHARED]
        );
        assert_eq!(o.data, "");
    }

    #[test]
    fn recursive_readonly() {
        let o = opts(&["rbind", "rro"]);
        assert!(o.recursive_ro);
        assert_eq!(
            root_propagation("rprivate"),
            Some(libc::MS_PRIVATE | libc::MS_REC)
        );
        assert_eq!(root_propagation("bogus"), None);
    }
}
