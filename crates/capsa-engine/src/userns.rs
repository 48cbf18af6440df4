//! userns: which user namespace a container gets, and the uid/gid ranges behind it.
//!
//! Owns: the `--userns`/`--userns-remap` modes, reading /etc/subuid and /etc/subgid, creating the
//! `capsa` system user with a subordinate range (Docker's `dockremap`), the per-container ranges
//! of `--userns=auto` (allocated under a flock in `<root>/userns-ranges.json`, freed when the
//! container's directory is gone), and what a mapping adds to config.json (the user namespace,
//! `linux.uidMappings`/`gidMappings`, and the rootfs annotation that has capsa-runtime assemble
//! the overlay from idmapped layers, so no image file is ever chowned).
//! Must not touch capabilities (`caps`), mounts other than the rootfs annotation, or the runtime.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The system user of `--userns-remap=default` (Docker's is `dockremap`).
pub const DEFAULT_USER: &str = "capsa";
/// Ids of one remapped container: 0..65535, as Docker and podman give.
pub const DEFAULT_SIZE: u32 = 65536;
/// The range `capsa` gets when capsa creates it: the first 65536 ids are `default`'s mapping,
/// the rest the pool of `--userns=auto` (32 containers of 65536 ids).
const CREATED_RANGE: u32 = DEFAULT_SIZE * 33;
/// Where ranges of a new `capsa` user may start (shadow's SUB_UID_MIN).
const SUB_ID_MIN: u64 = 100_000;
/// Docker's text (moby `daemon/daemon_unix.go` verifyPlatformContainerSettings).
pub const PRIVILEGED_ERROR: &str = "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode";
const HOST_NET_ERROR: &str =
    "cannot share the host's network namespace when user namespaces are enabled";

pub const SUBUID: &str = "/etc/subuid";
pub const SUBGID: &str = "/etc/subgid";

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum UsernsMode {
    /// The host's user namespace: container root is host root (Docker's default).
    #[default]
    Host,
    /// `--userns-remap=USER[:GROUP]` (or `default`): the subordinate ranges of that user.
    Remap { user: String, group: String },
    /// `--userns=auto[:size=N]`: a range of its own for this container.
    Auto { size: u32 },
}

impl UsernsMode {
    pub fn is_host(&self) -> bool {
        *self == UsernsMode::Host
    }
}

/// `--userns` and `--userns-remap` (the latter from the flag or the system config). `host`
/// wins over a remap default, as `docker run --userns=host` does under a remapping daemon.
pub fn parse(userns: Option<&str>, remap: Option<&str>) -> Result<UsernsMode> {
    match userns.map(str::trim) {
        Some("host") => return Ok(UsernsMode::Host),
        Some(a) if a == "auto" || a.starts_with("auto:") => return parse_auto(a),
        Some("") | None => {}
        Some(other) => {
            return Err(Error::InvalidFlag(format!(
                "--userns: invalid USER mode {other:?}: use host, auto or auto:size=N"
            )));
        }
    }
    match remap.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(UsernsMode::Host),
        Some("default") => Ok(UsernsMode::Remap {
            user: DEFAULT_USER.into(),
            group: DEFAULT_USER.into(),
        }),
        Some(spec) => {
            let (user, group) = spec.split_once(':').unwrap_or((spec, spec));
            if user.is_empty() || group.is_empty() || group.contains(':') {
                return Err(Error::InvalidFlag(format!(
                    "--userns-remap: invalid value {spec:?}: use default, USER or USER:GROUP"
                )));
            }
            Ok(UsernsMode::Remap {
                user: user.into(),
                group: group.into(),
            })
        }
    }
}

fn parse_auto(s: &str) -> Result<UsernsMode> {
    let bad = || {
        Error::InvalidFlag(format!(
            "--userns: invalid auto option {s:?}: use auto or auto:size=N (N from 1 to {DEFAULT_SIZE} times 32)"
        ))
    };
    let Some(opts) = s.strip_prefix("auto:") else {
        return Ok(UsernsMode::Auto { size: DEFAULT_SIZE });
    };
    let size: u32 = opts
        .strip_prefix("size=")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    if size == 0 || size > CREATED_RANGE - DEFAULT_SIZE {
        return Err(bad());
    }
    Ok(UsernsMode::Auto { size })
}

/// Docker's rules for flags that cannot go with a private user namespace.
pub fn check_compatible(mode: &UsernsMode, privileged: bool, host_network: bool) -> Result<()> {
    if mode.is_host() {
        return Ok(());
    }
    if privileged {
        return Err(Error::InvalidFlag(PRIVILEGED_ERROR.into()));
    }
    if host_network {
        return Err(Error::InvalidFlag(HOST_NET_ERROR.into()));
    }
    Ok(())
}

/// One line of a mapping: container ids `inner..inner+size` are host ids `outer..outer+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inner: u32,
    pub outer: u32,
    pub size: u32,
}

/// A container's uid and gid maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl Mapping {
    /// The host uid of container uid 0.
    pub fn root_uid(&self) -> Option<u32> {
        self.uids.iter().find(|r| r.inner == 0).map(|r| r.outer)
    }
}

/// One `name:start:count` line of /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRange {
    pub owner: String,
    pub start: u64,
    pub count: u64,
}

/// Parses a subordinate id file; malformed lines are skipped as shadow's tools skip them.
pub fn parse_subid(text: &str) -> Vec<SubRange> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, ':');
            let owner = it.next()?.to_string();
            let start = it.next()?.parse().ok()?;
            let count = it.next()?.parse().ok()?;
            Some(SubRange {
                owner,
                start,
                count,
            })
        })
        .collect()
}

fn read_subid(path: &str) -> Result<Vec<SubRange>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_subid(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// The ranges of `name` (lines may name the user or give its number, subuid(5)).
fn ranges_of(all: &[SubRange], name: &str, id: Option<u32>) -> Vec<(u64, u64)> {
    all.iter()
        .filter(|r| r.owner == name || id.is_some_and(|n| r.owner == n.to_string()))
        .map(|r| (r.start, r.count))
        .collect()
}

/// Consecutive container ids over the given host ranges, at most `limit` ids in all.
fn stack(ranges: &[(u64, u64)], limit: u64) -> Vec<IdRange> {
    let mut out = Vec::new();
    let mut inner = 0u64;
    for &(start, count) in ranges {
        let take = count.min(limit.saturating_sub(inner));
        if take == 0 || start + take > u64::from(u32::MAX) {
            break;
        }
        out.push(IdRange {
            inner: inner as u32,
            outer: start as u32,
            size: take as u32,
        });
        inner += take;
    }
    out
}

/// The mapping of `--userns-remap=USER[:GROUP]`: every subordinate range of the user (Docker
/// maps them all, one after the other); `default` creates `capsa` and maps its first 65536 ids.
pub fn remap_mapping(user: &str, group: &str) -> Result<Mapping> {
    let default = user == DEFAULT_USER;
    if default {
        ensure_default_user()?;
    }
    let limit = if default {
        u64::from(DEFAULT_SIZE)
    } else {
        u64::from(u32::MAX)
    };
    let uid = lookup_id("/etc/passwd", user);
    let gid = lookup_id("/etc/group", group);
    let uids = stack(&ranges_of(&read_subid(SUBUID)?, user, uid), limit);
    let gids = stack(&ranges_of(&read_subid(SUBGID)?, group, gid), limit);
    if uids.is_empty() {
        return Err(missing_range("uid", SUBUID, user));
    }
    if gids.is_empty() {
        return Err(missing_range("gid", SUBGID, group));
    }
    Ok(Mapping { uids, gids })
}

fn missing_range(kind: &str, file: &str, name: &str) -> Error {
    let flag = if kind == "uid" {
        "--add-subuids"
    } else {
        "--add-subgids"
    };
    Error::InvalidFlag(format!(
        "no subordinate {kind} ranges for {name:?} in {file}: add one with \
         `usermod {flag} 100000-165535 {name}` (passwd package) or a line `{name}:100000:65536`, \
         or use --userns-remap=default, which creates the capsa user with a range"
    ))
}

/// The numeric id of a name in /etc/passwd or /etc/group (field 3), if any.
fn lookup_id(file: &str, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Creates the `capsa` system user and its subordinate ranges when missing, as dockerd does
/// for `dockremap` (useradd --system, then usermod --add-subuids/--add-subgids). Runs under an
/// flock, so concurrent first runs create one user and one range.
pub fn ensure_default_user() -> Result<()> {
    let has = |file: &str| -> Result<bool> {
        Ok(!ranges_of(&read_subid(file)?, DEFAULT_USER, None).is_empty())
    };
    if lookup_id("/etc/passwd", DEFAULT_USER).is_some() && has(SUBUID)? && has(SUBGID)? {
        return Ok(());
    }
    let _lock = lock_file(Path::new("/etc/.capsa-subid.lock"))?;
    if lookup_id("/etc/passwd", DEFAULT_USER).is_none() {
        run_tool(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/false",
                DEFAULT_USER,
            ],
        )?;
    }
    // One start for both files, so that uids and gids of the new user line up.
    let start = next_free_start()?;
    for (file, flag) in [(SUBUID, "--add-subuids"), (SUBGID, "--add-subgids")] {
        if has(file)? {
            continue;
        }
        let range = format!("{start}-{}", start + u64::from(CREATED_RANGE) - 1);
        run_tool("usermod", &[flag, &range, DEFAULT_USER])?;
    }
    Ok(())
}

/// The first id at or above 100000 past every range in both files (so uids and gids of the
/// new user line up and overlap no other user's).
fn next_free_start() -> Result<u64> {
    let mut end = SUB_ID_MIN;
    for r in read_subid(SUBUID)?.into_iter().chain(read_subid(SUBGID)?) {
        end = end.max(r.start + r.count);
    }
    Ok(end)
}

fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| {
            Error::Runtime(format!(
                "cannot run {tool} to create the {DEFAULT_USER} user for --userns-remap=default: {e} \
                 (install the passwd package, or create the user and add `{DEFAULT_USER}:100000:2162688` \
                 to {SUBUID} and {SUBGID} yourself)"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Runtime(format!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn lock_file(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("flock", path, e.into()))?;
    Ok(file)
}

/// One `--userns=auto` allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub container: String,
    /// Host id of container id 0 (uids and gids alike).
    pub start: u64,
    pub size: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    allocations: Vec<Allocation>,
}

/// The auto pool: `capsa`'s subordinate ranges past the first 65536 ids (those are the
/// mapping of `--userns-remap=default`), present in both files.
fn auto_pool() -> Result<Vec<(u64, u64)>> {
    ensure_default_user()?;
    let uid = ranges_of(&read_subid(SUBUID)?, DEFAULT_USER, None);
    let gid = ranges_of(&read_subid(SUBGID)?, DEFAULT_USER, None);
    Ok(pool_from(&uid, &gid))
}

/// Ranges present in both lists, minus the first `DEFAULT_SIZE` ids of the uid ranges.
fn pool_from(uid: &[(u64, u64)], gid: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut skip = u64::from(DEFAULT_SIZE);
    let mut out = Vec::new();
    for &(s, c) in uid {
        let cut = skip.min(c);
        skip -= cut;
        let (s, c) = (s + cut, c - cut);
        for &(gs, gc) in gid {
            let lo = s.max(gs);
            let hi = (s + c).min(gs + gc);
            if lo < hi {
                out.push((lo, hi - lo));
            }
        }
    }
    out
}

/// First fit of `size` ids in `pool` that overlaps no allocation.
fn first_fit(pool: &[(u64, u64)], taken: &[Allocation], size: u32) -> Option<u64> {
    let size = u64::from(size);
    for &(start, count) in pool {
        let mut at = start;
        while at + size <= start + count {
            let clash = taken
                .iter()
                .find(|a| at < a.start + u64::from(a.size) && a.start < at + size);
            match clash {
                None => return Some(at),
                Some(a) => at = a.start + u64::from(a.size),
            }
        }
    }
    None
}

fn ranges_file(root: &Path) -> PathBuf {
    root.join("userns-ranges.json")
}

/// Allocates a range for `container` under the flock of `<root>/userns-ranges.lock`; entries
/// whose container directory is gone are freed first.
pub fn allocate_auto(
    root: &Path,
    containers: &Path,
    container: &str,
    size: u32,
) -> Result<Mapping> {
    let pool = auto_pool()?;
    std::fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
    let _lock = lock_file(&root.join("userns-ranges.lock"))?;
    let mut all = load_allocations(root)?;
    all.allocations
        .retain(|a| a.container == container || containers.join(&a.container).exists());
    all.allocations.retain(|a| a.container != container);
    let start = first_fit(&pool, &all.allocations, size).ok_or_else(|| {
        Error::Runtime(format!(
            "no free range of {size} ids for --userns=auto: the {DEFAULT_USER} user's ranges in \
             {SUBUID}/{SUBGID} are used by {} containers; remove some, use a smaller auto:size=N, \
             or give {DEFAULT_USER} a larger range (usermod --add-subuids/--add-subgids)",
            all.allocations.len()
        ))
    })?;
    all.allocations.push(Allocation {
        container: container.into(),
        start,
        size,
    });
    save_allocations(root, &all)?;
    let r = IdRange {
        inner: 0,
        outer: start as u32,
        size,
    };
    Ok(Mapping {
        uids: vec![r],
        gids: vec![r],
    })
}

/// Frees the range of a removed container (a no-op when it had none).
pub fn release(root: &Path, container: &str) -> Result<()> {
    let file = ranges_file(root);
    if !file.exists() {
        return Ok(());
    }
    let _lock = lock_file(&root.join("userns-ranges.lock"))?;
    let mut all = load_allocations(root)?;
    let before = all.allocations.len();
    all.allocations.retain(|a| a.container != container);
    if all.allocations.len() != before {
        save_allocations(root, &all)?;
    }
    Ok(())
}

/// The current allocations (for `inspect`-like tools and tests).
pub fn allocations(root: &Path) -> Result<Vec<Allocation>> {
    Ok(load_allocations(root)?.allocations)
}

fn load_allocations(root: &Path) -> Result<Allocations> {
    let path = ranges_file(root);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Json { path, source: e }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allocations::default()),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn save_allocations(root: &Path, all: &Allocations) -> Result<()> {
    let path = ranges_file(root);
    let data = serde_json::to_vec_pretty(all).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    crate::record::write_atomic(&path, &data)
}

/// The mapping for a mode (allocating for `auto`); `None` for the host namespace.
pub fn mapping_for(
    mode: &UsernsMode,
    root: &Path,
    containers: &Path,
    id: &str,
) -> Result<Option<Mapping>> {
    if !mode.is_host() && !rustix::process::geteuid().is_root() {
        return Err(not_root());
    }
    match mode {
        UsernsMode::Host => Ok(None),
        UsernsMode::Remap { user, group } => remap_mapping(user, group).map(Some),
        UsernsMode::Auto { size } => allocate_auto(root, containers, id, *size).map(Some),
    }
}

fn not_root() -> Error {
    Error::Runtime(
        "user namespace remapping needs root: capsa writes the uid/gid maps itself (as non-root it \
         would need newuidmap/newgidmap from the uidmap package, which capsa does not use yet)"
            .into(),
    )
}

/// The file next to a container's record that says how it is mapped.
pub const MAPPING_FILE: &str = "userns.json";

/// Writes the container's mapping next to its record (read back by `inspect`).
pub fn save_mapping(dir: &Path, m: &Mapping) -> Result<()> {
    let path = dir.join(MAPPING_FILE);
    let data = serde_json::to_vec_pretty(m).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    crate::record::write_atomic(&path, &data)
}

/// The container's mapping, if it has one.
pub fn load_mapping(dir: &Path) -> Option<Mapping> {
    let b = std::fs::read(dir.join(MAPPING_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// The container's overlay layers, for the runtime's `org.capsa.rootfs.overlay` annotation. The
/// runtime mounts them inside the user namespace over `upper`/`work` of their own (the host's
/// overlay of the snapshot stays mounted for `--user` lookups and is not written through).
pub fn overlay_annotation(snapshot: &capsa_image::Snapshot) -> Result<String> {
    let base = &snapshot.dir;
    let upper = base.join("userns").join("upper");
    let work = base.join("userns").join("work");
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| Error::io("create directory", d, e))?;
    }
    let v = serde_json::json!({"lower": snapshot.lower, "upper": upper, "work": work});
    Ok(v.to_string())
}

/// Adds the user namespace, the maps and the rootfs annotation to a generated spec.
pub fn apply_to_spec(
    spec: &mut oci_spec::runtime::Spec,
    m: &Mapping,
    overlay: String,
) -> Result<()> {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
    let conv = |v: &[IdRange]| -> Result<Vec<oci_spec::runtime::LinuxIdMapping>> {
        v.iter()
            .map(|r| {
                LinuxIdMappingBuilder::default()
                    .container_id(r.inner)
                    .host_id(r.outer)
                    .size(r.size)
                    .build()
                    .map_err(|e| Error::Runtime(format!("cannot build an id mapping: {e}")))
            })
            .collect()
    };
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    ns.retain(|n| n.typ() != LinuxNamespaceType::User);
    ns.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .map_err(|e| Error::Runtime(format!("cannot build the user namespace: {e}")))?,
    );
    linux.set_namespaces(Some(ns));
    linux.set_uid_mappings(Some(conv(&m.uids)?));
    linux.set_gid_mappings(Some(conv(&m.gids)?));
    spec.set_linux(Some(linux));
    let mut ann = spec.annotations().clone().unwrap_or_default();
    ann.insert(
        capsa_runtime::rootfs::userns::ANNOTATION_OVERLAY.into(),
        overlay,
    );
    spec.set_annotations(Some(ann));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(parse(None, None).unwrap(), UsernsMode::Host);
        assert_eq!(
            parse(Some("host"), Some("default")).unwrap(),
            UsernsMode::Host
        );
        assert_eq!(
            parse(None, Some("default")).unwrap(),
            UsernsMode::Remap {
                user: "capsa".into(),
                group: "capsa".into()
            }
        );
        assert_eq!(
            parse(None, Some("alice:staff")).unwrap(),
            UsernsMode::Remap {
                user: "alice".into(),
                group: "staff".into()
            }
        );
        assert_eq!(
            parse(Some("auto"), None).unwrap(),
            UsernsMode::Auto { size: 65536 }
        );
        assert_eq!(
            parse(Some("auto:size=1024"), None).unwrap(),
            UsernsMode::Auto { size: 1024 }
        );
        assert!(parse(Some("auto:size=0"), None).is_err());
        assert!(parse(Some("private"), None).is_err());
        assert!(parse(None, Some("a:b:c")).is_err());
    }

    #[test]
    fn privileged_text_is_dockers() {
        let m = UsernsMode::Auto { size: 10 };
        let e = check_compatible(&m, true, false).unwrap_err().to_string();
        assert_eq!(
            e,
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"
        );
        assert!(check_compatible(&UsernsMode::Host, true, true).is_ok());
    }

    #[test]
    fn subid_lines_and_stacking() {
        let all = parse_subid("alice:100000:65536\n# c\n1000:300000:10\nbad\nbob:1:x\n");
        assert_eq!(all.len(), 2);
        let r = ranges_of(&all, "alice", Some(1000));
        assert_eq!(r, vec![(100000, 65536), (300000, 10)]);
        let s = stack(&r, u64::from(u32::MAX));
        assert_eq!(s[1].inner, 65536);
        assert_eq!(s[1].outer, 300000);
        assert_eq!(stack(&r, 100)[0].size, 100);
    }

    #[test]
    fn auto_ranges_do_not_overlap() {
        let pool = pool_from(&[(100000, 65536 * 4)], &[(100000, 65536 * 4)]);
        assert_eq!(pool, vec![(165536, 65536 * 3)]);
        let mut taken = Vec::new();
        for i in 0..3 {
            let s = first_fit(&pool, &taken, 65536).unwrap();
            taken.push(Allocation {
                container: format!("c{i}"),
                start: s,
                size: 65536,
            });
        }
        assert!(first_fit(&pool, &taken, 1).is_none());
        taken.remove(1);
        assert_eq!(first_fit(&pool, &taken, 1000), Some(165536 + 65536));
    }
}
