//! User and group names for `capsh --print`-style output, from the text of `/etc/passwd` and
//! `/etc/group` (the `files` NSS source; see docs/decisions.md for why not getpwuid(3)).
//!
//! Owns the lookups and capsh's naming quirk. Must not do I/O: `proc::accounts` reads the files.

/// The two account databases, parsed.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    users: Vec<(u32, String)>,
    groups: Vec<(u32, String)>,
}

fn parse_db(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

impl Accounts {
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        Accounts {
            users: parse_db(passwd),
            groups: parse_db(group),
        }
    }

    /// The first user with this uid, as getpwuid(3) finds it.
    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users
            .iter()
            .find(|(id, _)| *id == uid)
            .map(|(_, n)| n.as_str())
    }

    /// The first group with this gid, as getgrgid(3) finds it.
    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups
            .iter()
            .find(|(id, _)| *id == gid)
            .map(|(_, n)| n.as_str())
    }

    /// `uid=R(name) euid=E(name)` exactly as capsh 2.66 prints it. capsh looks both ids up with
    /// getpwuid(3) before printing, and that call returns one shared static record: when both
    /// lookups succeed, both names are the euid's; when only the euid lookup fails, glibc's
    /// `files` backend has left the last entry of /etc/passwd in the record. We reproduce that
    /// so our output stays byte-identical.
    pub fn capsh_uid_line(&self, uid: u32, euid: u32) -> String {
        let euid_name = self.user(euid);
        let uid_name = match (self.user(uid), euid_name) {
            (None, _) => "???",
            (Some(_), Some(e)) => e,
            (Some(_), None) => self.users.last().map(|(_, n)| n.as_str()).unwrap_or("???"),
        };
        format!(
            "uid={uid}({uid_name}) euid={euid}({})",
            euid_name.unwrap_or("???")
        )
    }

    /// `gid=G(name)` as capsh prints it (the real gid only).
    pub fn capsh_gid_line(&self, gid: u32) -> String {
        format!("gid={gid}({})", self.group(gid).unwrap_or("???"))
    }

    /// `groups=1(daemon),2(bin)` as capsh prints the supplementary groups.
    pub fn capsh_groups_line(&self, groups: &[u32]) -> String {
        let list: Vec<String> = groups
            .iter()
            .map(|g| format!("{g}({})", self.group(*g).unwrap_or("???")))
            .collect();
        format!("groups={}", list.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/false\n\
                          bin:x:2:2::/:/bin/false\nlast:x:102:105::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\n";

    #[test]
    fn capsh_naming_quirk() {
        let a = Accounts::parse(PASSWD, GROUP);
        assert_eq!(a.capsh_uid_line(0, 0), "uid=0(root) euid=0(root)");
        assert_eq!(a.capsh_uid_line(1, 2), "uid=1(bin) euid=2(bin)");
        assert_eq!(a.capsh_uid_line(1, 999), "uid=1(last) euid=999(???)");
        assert_eq!(a.capsh_uid_line(999, 2), "uid=999(???) euid=2(bin)");
        assert_eq!(
            a.capsh_groups_line(&[1, 2, 777]),
            "groups=1(daemon),2(bin),777(???)"
        );
        assert_eq!(a.capsh_groups_line(&[]), "groups=");
        assert_eq!(a.capsh_gid_line(5), "gid=5(???)");
    }
}
