//! options: the `docker run` flags as the user typed them (`RunOptions`) and their validated,
//! parsed form (`ContainerConfig`) that is stored in the container record and drives spec
//! generation. Parsing is pure; reading `--env-file` files is the only I/O here.
//!
//! It must not resolve capabilities (that is `caps`) nor look into the image (that is `spec`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every flag of `capsa run`/`capsa create`, as strings, before validation.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub name: Option<String>,
    pub rm: bool,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub env_file: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `--entrypoint`: `Some("")` resets the image's entrypoint, as in Docker.
    pub entrypoint: Option<String>,
    pub volumes: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub devices: Vec<String>,
    pub memory: Option<String>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<String>,
    pub network: Option<String>,
    pub sysctl: Vec<String>,
    pub ulimit: Vec<String>,
    pub init: bool,
    /// `--userns`: `host`, `auto` or `auto:size=N` (see `userns`).
    pub userns: Option<String>,
    /// `--userns-remap`: `default` or `USER[:GROUP]` (or the system config's default).
    pub userns_remap: Option<String>,
    /// The default capability names before adds and drops (the system config's profile);
    /// `None` means Docker's 14.
    pub cap_defaults: Option<Vec<String>>,
    pub image: String,
    pub command: Vec<String>,
}

/// A `-v HOST:CONTAINER[:ro|rw]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// A `--tmpfs PATH[:OPTIONS]` mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub destination: String,
    pub options: Vec<String>,
}

/// A `--device HOST[:CONTAINER[:PERMS]]` mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: PathBuf,
    pub container: String,
    pub permissions: String,
}

/// A `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// What `--security-opt` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// `systempaths=unconfined`: no masked and no read-only paths.
    pub unconfined_paths: bool,
    /// The options as given (for `inspect`'s `HostConfig.SecurityOpt`).
    pub raw: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompChoice {
    /// The default profile, generated from the bounding set.
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format (or OCI's `linux.seccomp`).
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace holding only `lo` (the default until bridge networking exists).
    #[default]
    None,
    Host,
}

/// The validated configuration of one container: stored in its record, so that `start` of a
/// stopped container and `inspect` see exactly what `create` saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub image: String,
    pub command: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<Tmpfs>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security: SecurityOpts,
    pub devices: Vec<DeviceMapping>,
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub network: NetworkMode,
    pub sysctls: Vec<(String, String)>,
    pub ulimits: Vec<Ulimit>,
    pub init: bool,
    /// The user namespace asked for (records made before it existed read as `host`).
    #[serde(default)]
    pub userns: crate::userns::UsernsMode,
    /// The default capability set (`RunOptions::cap_defaults`).
    #[serde(default)]
    pub cap_defaults: Option<Vec<String>>,
}

impl RunOptions {
    /// Validates every flag; the first bad one gives Docker's error text.
    pub fn parse(&self) -> Result<ContainerConfig> {
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_env_file(file)?);
        }
        for e in &self.env {
            env.push(expand_env_entry(e));
        }
        Ok(ContainerConfig {
            image: self.image.clone(),
            command: self.command.clone(),
            entrypoint: self.entrypoint.as_deref().map(parse_entrypoint),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone().filter(|u| !u.is_empty()),
            hostname: self.hostname.clone(),
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            volumes: self
                .volumes
                .iter()
                .map(|v| parse_volume(v))
                .collect::<Result<_>>()?,
            tmpfs: self
                .tmpfs
                .iter()
                .map(|t| parse_tmpfs(t))
                .collect::<Result<_>>()?,
            read_only: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            security: parse_security_opts(&self.security_opt)?,
            devices: self
                .devices
                .iter()
                .map(|d| parse_device(d))
                .collect::<Result<_>>()?,
            memory: self.memory.as_deref().map(parse_bytes).transpose()?,
            pids_limit: self.pids_limit.filter(|&p| p != 0),
            nano_cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
            network: parse_network(self.network.as_deref())?,
            sysctls: self
                .sysctl
                .iter()
                .map(|s| parse_sysctl(s))
                .collect::<Result<_>>()?,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<Result<_>>()?,
            init: self.init,
            userns: self.userns_mode()?,
            cap_defaults: self.cap_defaults.clone(),
        })
    }
}

impl RunOptions {
    /// `--userns`/`--userns-remap`, and the flags Docker refuses with a private user namespace.
    fn userns_mode(&self) -> Result<crate::userns::UsernsMode> {
        let mode = crate::userns::parse(self.userns.as_deref(), self.userns_remap.as_deref())?;
        let host_net = self.network.as_deref() == Some("host");
        crate::userns::check_compatible(&mode, self.privileged, host_net)?;
        Ok(mode)
    }
}

/// `--entrypoint` is one string in Docker; `""` means "no entrypoint".
fn parse_entrypoint(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        vec![s.to_string()]
    }
}

/// `-e NAME` (no `=`) takes the value from capsa's own environment, or is dropped, as in Docker.
fn expand_env_entry(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_string(),
    }
}

/// Docker's env-file format: one `NAME=value` per line, `#` comments, blank lines ignored, a
/// bare `NAME` takes the value from the environment.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read env file", path, e))?;
    Ok(parse_env_lines(&text))
}

fn parse_env_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(expand_env_entry)
        .filter(|e| e.contains('='))
        .collect()
}

fn parse_volume(spec: &str) -> Result<Volume> {
    let bad = || Error::InvalidFlag(format!("invalid volume specification: '{spec}'"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        [_] => {
            return Err(Error::InvalidFlag(format!(
                "invalid volume specification: '{spec}': anonymous volumes are not supported yet, give HOST:CONTAINER"
            )));
        }
        _ => return Err(bad()),
    };
    if !src.starts_with('/') {
        return Err(Error::InvalidFlag(format!(
            "invalid volume specification: '{spec}': named volumes are not supported yet, the source must be an absolute host path"
        )));
    }
    if !dst.starts_with('/') {
        return Err(Error::InvalidFlag(format!(
            "invalid volume specification: '{spec}': invalid mount config: mount path must be absolute"
        )));
    }
    let mut read_only = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => {}
            _ => return Err(bad()),
        }
    }
    Ok(Volume {
        source: PathBuf::from(src),
        destination: dst.to_string(),
        read_only,
    })
}

fn parse_tmpfs(spec: &str) -> Result<Tmpfs> {
    let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !dst.starts_with('/') {
        return Err(Error::InvalidFlag(format!(
            "invalid tmpfs specification: '{spec}': invalid mount config: mount path must be absolute"
        )));
    }
    Ok(Tmpfs {
        destination: dst.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn parse_device(spec: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = spec.split(':').collect();
    let is_perms = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perms(p) => (*h, *c, *p),
        _ => return Err(Error::InvalidFlag(format!("invalid device mode: {spec}"))),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(Error::InvalidFlag(format!(
            "{spec} is not an absolute path"
        )));
    }
    Ok(DeviceMapping {
        host: PathBuf::from(host),
        container: container.to_string(),
        permissions: perms.to_string(),
    })
}

/// `--security-opt`: the values Docker's daemon accepts that capsa implements; anything else
/// gets Docker's `invalid --security-opt 2: "…"` text.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts {
        raw: opts.to_vec(),
        ..SecurityOpts::default()
    };
    let invalid = |opt: &str| Error::InvalidFlag(format!("invalid --security-opt 2: {opt:?}"));
    for opt in opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("no-new-privileges", None) => out.no_new_privileges = true,
            ("no-new-privileges", Some(v)) => {
                out.no_new_privileges = parse_bool(v).ok_or_else(|| invalid(opt))?
            }
            ("seccomp", Some("unconfined")) => out.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some("builtin")) => out.seccomp = SeccompChoice::Default,
            ("seccomp", Some(path)) if !path.is_empty() => {
                out.seccomp = SeccompChoice::File(PathBuf::from(path))
            }
            ("systempaths", Some("unconfined")) => out.unconfined_paths = true,
            _ => return Err(invalid(opt)),
        }
    }
    Ok(out)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Docker's `RAMInBytes`: a number with an optional b/k/m/g/t/p suffix (binary units).
pub fn parse_bytes(s: &str) -> Result<i64> {
    let bad = || Error::InvalidFlag(format!("invalid size: '{s}'"));
    let lower = s.trim().to_ascii_lowercase();
    let trimmed = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult): (&str, i64) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        Some('p') => (&trimmed[..trimmed.len() - 1], 1 << 50),
        _ => (trimmed, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let bytes = (n * mult as f64) as i64;
    // The kernel refuses memory limits below a few pages; Docker's floor is 6 MiB.
    if bytes != 0 && bytes < 6 * 1024 * 1024 {
        return Err(Error::InvalidFlag(
            "Minimum memory limit allowed is 6MB".to_string(),
        ));
    }
    Ok(bytes)
}

/// `--cpus 1.5` becomes 1.5e9 nano-CPUs, as in Docker's `NanoCPUs`.
fn parse_cpus(s: &str) -> Result<i64> {
    let bad = || Error::InvalidFlag(format!("invalid argument {s:?} for \"--cpus\" flag"));
    let n: f64 = s.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * 1e9) as i64)
}

fn parse_network(s: Option<&str>) -> Result<NetworkMode> {
    match s {
        None | Some("none") | Some("default") => Ok(NetworkMode::None),
        Some("host") => Ok(NetworkMode::Host),
        Some("bridge") => Err(Error::InvalidFlag(
            "network bridge is not supported yet: use --network none (the default) or --network host"
                .to_string(),
        )),
        Some(other) => Err(Error::InvalidFlag(format!("network {other} not found"))),
    }
}

fn parse_sysctl(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(Error::InvalidFlag(format!(
            "invalid argument {s:?} for \"--sysctl\" flag: sysctl '{s}' is not allowed"
        ))),
    }
}

/// The rlimit names Docker's `--ulimit` accepts.
pub const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = |why: &str| {
        Error::InvalidFlag(format!(
            "invalid argument {s:?} for \"--ulimit\" flag: {why}"
        ))
    };
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| bad("invalid ulimit argument"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(bad(&format!("invalid ulimit type: {name}")));
    }
    let parse = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| bad(&format!("invalid ulimit value: {v}")))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (parse(s)?, parse(h)?),
        None => {
            let v = parse(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(bad(&format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let v = parse_volume("/srv:/data:ro").unwrap();
        assert_eq!(v.destination, "/data");
        assert!(v.read_only);
        assert!(!parse_volume("/srv:/data").unwrap().read_only);
        assert!(parse_volume("name:/data").is_err());
        assert!(parse_volume("/srv:data").is_err());
        assert!(parse_volume("/srv:/data:xx").is_err());
    }

    #[test]
    fn security_opts() {
        let s = parse_security_opts(&["no-new-privileges".into(), "seccomp=unconfined".into()])
            .unwrap();
        assert!(s.no_new_privileges);
        assert_eq!(s.seccomp, SeccompChoice::Unconfined);
        let s = parse_security_opts(&["seccomp=/p.json".into(), "systempaths=unconfined".into()])
            .unwrap();
        assert_eq!(s.seccomp, SeccompChoice::File("/p.json".into()));
        assert!(s.unconfined_paths);
        let s = parse_security_opts(&["no-new-privileges=false".into()]).unwrap();
        assert!(!s.no_new_privileges);
        let e = parse_security_opts(&["apparmor=foo".into()]).unwrap_err();
        assert_eq!(e.to_string(), "invalid --security-opt 2: \"apparmor=foo\"");
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert!(parse_bytes("1k").is_err());
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
    }

    #[test]
    fn devices_and_ulimits() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = parse_device("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/xvda", "r")
        );
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile=2048:1024").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
    }

    #[test]
    fn env_file() {
        let env = parse_env_lines("# c\nA=1\n\n  B=two words\n");
        assert_eq!(env, vec!["A=1", "B=two words"]);
    }

    #[test]
    fn network() {
        assert_eq!(parse_network(None).unwrap(), NetworkMode::None);
        assert_eq!(parse_network(Some("host")).unwrap(), NetworkMode::Host);
        assert!(parse_network(Some("bridge")).is_err());
    }
}
