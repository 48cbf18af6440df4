//! Registry credentials in Docker's `config.json` format: `capsa login` writes them,
//! `capsa logout` removes them, and pulls and pushes read them (including a config written by
//! Docker or Podman's `docker login`).
//!
//! Owns only the `auths` map of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
//! Every other key of that file (credsStore, credHelpers, proxies, ...) is kept as it was.
//! Credential helpers are not run: a registry that only has a helper entry is treated as
//! anonymous (docs/images.md says so).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::error::{ImageError, Result};
use crate::store::write_atomic;

/// Docker Hub's key in `auths` (Docker still writes the v1 URL for it).
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the secret, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The `auth` value of config.json and the payload of an HTTP Basic header (RFC 7617).
    pub fn basic(&self) -> String {
        B64.encode(format!("{}:{}", self.username, self.password))
    }
}

/// The config.json capsa reads and writes: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker/config.json")
}

/// The `auths` key for a registry host: Docker Hub uses its legacy v1 URL.
pub fn auth_key(registry: &str) -> String {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Strips a scheme and path so `https://host:5000/v2/` and `host:5000` match.
fn normalise_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn read_config(path: &Path) -> Result<Map<String, Value>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(ImageError::io("read the credentials file", path, e)),
    };
    match serde_json::from_slice(&data) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ImageError::Format(format!(
            "{}: not a JSON object (is it a Docker config.json?)",
            path.display()
        ))),
        Err(e) => Err(ImageError::Json {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The stored credentials for `registry` (a host such as `localhost:5000` or `docker.io`).
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    lookup_in(&config_path(), registry)
}

/// [`lookup`] in a given config file.
pub fn lookup_in(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let config = read_config(path)?;
    let Some(Value::Object(auths)) = config.get("auths") else {
        return Ok(None);
    };
    let want = normalise_key(&auth_key(registry)).to_string();
    for (key, entry) in auths {
        if normalise_key(key) != want {
            continue;
        }
        if let Some(c) = decode_entry(entry, path)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// An `auths` entry: `{"auth": base64(user:pass)}`, or separate `username`/`password`.
fn decode_entry(entry: &Value, path: &Path) -> Result<Option<Credentials>> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let bad = || {
            ImageError::Format(format!(
                "{}: an `auth` entry is not base64 of user:password",
                path.display()
            ))
        };
        let raw = B64.decode(auth.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    let user = entry.get("username").and_then(Value::as_str);
    let pass = entry.get("password").and_then(Value::as_str);
    Ok(user.zip(pass).map(|(u, p)| Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

/// Saves credentials for `registry` (`capsa login`), keeping the rest of the file.
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = config_path();
    let mut config = read_config(&path)?;
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(m) = auths {
        m.insert(
            auth_key(registry),
            serde_json::json!({ "auth": creds.basic() }),
        );
    }
    write_config(&path, &config)?;
    Ok(path)
}

/// Removes the credentials of `registry` (`capsa logout`); returns whether there were any.
pub fn erase(registry: &str) -> Result<bool> {
    let path = config_path();
    let mut config = read_config(&path)?;
    let want = normalise_key(&auth_key(registry)).to_string();
    let Some(Value::Object(auths)) = config.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| normalise_key(k) != want);
    if auths.len() == before {
        return Ok(false);
    }
    write_config(&path, &config)?;
    Ok(true)
}

/// Writes the file 0600 (it holds secrets), atomically.
fn write_config(path: &Path, config: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
    let mut data = serde_json::to_vec_pretty(config).map_err(|e| ImageError::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    data.push(b'\n');
    let name = path.file_name().map_or_else(
        || "config.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    write_atomic(dir, &name, &data, true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ImageError::io("chmod 0600", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_auth_entries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.json");
        let cfg = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "http://localhost:5000/v2/":{"username":"a","password":"b"}},"credsStore":"x"}"#;
        std::fs::write(&path, cfg).unwrap_or_else(|e| panic!("{e}"));
        let hub = lookup_in(&path, "docker.io").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hub,
            Some(Credentials {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        let local = lookup_in(&path, "localhost:5000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(local.map(|c| c.username), Some("a".to_string()));
        assert_eq!(lookup_in(&path, "quay.io").ok().flatten(), None);
    }

    #[test]
    fn basic_is_base64_of_user_colon_password() {
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        assert_eq!(c.basic(), "dXNlcjpwYXNz");
    }
}
