//! sysconfig: the system configuration file, `/etc/capsa/capsa.toml`, where an administrator
//! sets the defaults of every `capsa run`/`create`: the capability profile (moby#39149), the user
//! namespace remapping, the seccomp profile and the storage root.
//!
//! Owns the file's keys, its location rules (`--config`, then `CAPSA_CONFIG`, then the default
//! path, which may be absent) and how a key becomes a default of `RunOptions`. Flags on the command
//! line always win. Must not hold policy itself: the values go through the same parsers as flags.
//! Unknown keys are errors naming the key and the file, so a typo never silently does nothing.

use crate::error::{Error, Result};
use crate::options::RunOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the file lives unless `--config` or `CAPSA_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/capsa/capsa.toml";
/// The environment variable that moves the file (tests use it).
pub const ENV: &str = "CAPSA_CONFIG";

/// The capability profile: a named one or an explicit list of names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CapProfile {
    /// `docker` (14 caps), `podman` (11) or `none`.
    Named(String),
    /// An explicit list, e.g. `["CHOWN", "NET_BIND_SERVICE"]`.
    List(Vec<String>),
}

/// The file's contents. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SystemConfig {
    /// The default capability set before `--cap-add`/`--cap-drop`.
    pub capabilities: Option<CapProfile>,
    /// `--userns-remap` for every container that does not pass `--userns`/`--userns-remap`.
    pub userns_remap: Option<String>,
    /// `default`, `unconfined` or the path of a profile in Docker's JSON format.
    pub seccomp: Option<String>,
    /// The storage root (images and containers) when `--root`/`CAPSA_ROOT` are not given.
    pub root: Option<PathBuf>,
}

/// The loaded file and where it came from.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    pub config: SystemConfig,
}

/// Loads the file: an explicit path (flag or env) must exist; the default path may not.
pub fn load(flag: Option<&Path>) -> Result<Loaded> {
    let env = std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (path, explicit) = match flag.map(Path::to_path_buf).or(env) {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Loaded::default());
        }
        Err(e) => return Err(Error::io("read the config file", &path, e)),
    };
    let config = parse(&text, &path)?;
    Ok(Loaded {
        path: Some(path),
        config,
    })
}

/// Parses the text of the file named `path` (the name is only for messages).
pub fn parse(text: &str, path: &Path) -> Result<SystemConfig> {
    let config: SystemConfig = toml::from_str(text).map_err(|e| {
        Error::InvalidFlag(format!(
            "invalid config file {}: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })?;
    config.validate(path)?;
    Ok(config)
}

impl SystemConfig {
    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, why: String| {
            Error::InvalidFlag(format!(
                "invalid config file {}: key `{key}`: {why}",
                path.display()
            ))
        };
        if let Some(CapProfile::Named(n)) = &self.capabilities
            && n.parse::<capsa_caps::Profile>().is_err()
        {
            return Err(bad(
                "capabilities",
                format!("unknown profile {n:?}: use docker, podman, none or a list of names"),
            ));
        }
        if let Some(CapProfile::List(l)) = &self.capabilities {
            for n in l {
                if !matches!(capsa_caps::parse_name(n), Ok(capsa_caps::CapName::Cap(_))) {
                    return Err(bad("capabilities", format!("unknown capability {n:?}")));
                }
            }
        }
        if let Some(r) = &self.userns_remap {
            crate::userns::parse(None, Some(r)).map_err(|e| bad("userns-remap", e.to_string()))?;
        }
        if let Some(s) = &self.seccomp
            && s.is_empty()
        {
            return Err(bad(
                "seccomp",
                "empty: use default, unconfined or a path".into(),
            ));
        }
        if let Some(r) = &self.root
            && !r.is_absolute()
        {
            return Err(bad(
                "root",
                format!("{} is not an absolute path", r.display()),
            ));
        }
        Ok(())
    }

    /// The capability names of the profile (`None`: Docker's defaults, the engine's own).
    pub fn default_caps(&self) -> Option<Vec<String>> {
        match self.capabilities.as_ref()? {
            CapProfile::Named(n) => {
                let p: capsa_caps::Profile = n.parse().ok()?;
                if p == capsa_caps::Profile::Docker {
                    return None;
                }
                Some(p.caps().into_iter().map(|c| c.oci_name()).collect())
            }
            CapProfile::List(l) => Some(l.iter().map(|n| crate::caps::normalize(n)).collect()),
        }
    }

    /// Fills the defaults of `opts` that the command line left unset.
    pub fn apply(&self, opts: &mut RunOptions) {
        if opts.userns.is_none() && opts.userns_remap.is_none() {
            opts.userns_remap.clone_from(&self.userns_remap);
        }
        let has_seccomp = opts.security_opt.iter().any(|o| o.starts_with("seccomp"));
        if let (Some(s), false) = (&self.seccomp, has_seccomp) {
            let v = if s == "default" {
                "builtin"
            } else {
                s.as_str()
            };
            opts.security_opt.push(format!("seccomp={v}"));
        }
        if opts.cap_defaults.is_none() {
            opts.cap_defaults = self.default_caps();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<SystemConfig> {
        parse(text, Path::new("/etc/capsa/capsa.toml"))
    }

    #[test]
    fn every_key_parses() {
        let c = p(r#"
capabilities = "podman"
userns-remap = "default"
seccomp = "unconfined"
root = "/srv/capsa"
"#)
        .unwrap();
        assert_eq!(c.capabilities, Some(CapProfile::Named("podman".into())));
        assert_eq!(c.default_caps().unwrap().len(), 11);
        assert_eq!(c.root, Some(PathBuf::from("/srv/capsa")));
        let l = p(r#"capabilities = ["chown", "CAP_KILL"]"#).unwrap();
        assert_eq!(
            l.default_caps().unwrap(),
            vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()]
        );
        assert_eq!(
            p(r#"capabilities = "docker""#).unwrap().default_caps(),
            None
        );
        assert_eq!(
            p(r#"capabilities = "none""#).unwrap().default_caps(),
            Some(vec![])
        );
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let e = p("userns_remap = \"default\"\n").unwrap_err().to_string();
        assert!(e.contains("/etc/capsa/capsa.toml"), "{e}");
        assert!(e.contains("userns_remap"), "{e}");
        let e = p("capabilities = \"lots\"").unwrap_err().to_string();
        assert!(e.contains("key `capabilities`"), "{e}");
        assert!(p("root = \"relative\"").is_err());
        assert!(p("capabilities = [\"NOPE\"]").is_err());
    }

    #[test]
    fn flags_win() {
        let c = p("userns-remap = \"default\"\nseccomp = \"default\"\ncapabilities = \"none\"")
            .unwrap();
        let mut o = RunOptions {
            userns: Some("host".into()),
            security_opt: vec!["seccomp=unconfined".into()],
            ..RunOptions::default()
        };
        c.apply(&mut o);
        assert_eq!(o.userns_remap, None);
        assert_eq!(o.security_opt, vec!["seccomp=unconfined".to_string()]);
        assert_eq!(o.cap_defaults, Some(vec![]));
        let mut o = RunOptions::default();
        c.apply(&mut o);
        assert_eq!(o.userns_remap.as_deref(), Some("default"));
        assert_eq!(o.security_opt, vec!["seccomp=builtin".to_string()]);
    }
}
