//! A synchronous Registry HTTP API v2 client (OCI distribution-spec) on `ureq`.
//!
//! Owns the HTTP conversation with one registry: the scheme choice (plain HTTP only for
//! loopback and `--insecure-registry` hosts), the WWW-Authenticate challenge (RFC 7235) with
//! Basic (RFC 7617) and bearer tokens (the Docker token protocol), and the mapping of status
//! codes to errors. It never touches the store; callers decide where bytes go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{Response, StatusCode};

use super::RegistryError;
use crate::auth::Credentials;

/// Manifest media types capsa accepts, most preferred first.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Connection settings shared by pull, push and login.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Hosts (`host:port`) to reach over plain HTTP although they are not loopback.
    pub insecure_registries: Vec<String>,
    /// Credentials to use instead of the stored ones.
    pub credentials: Option<Credentials>,
}

/// One registry's API endpoint plus the auth state for it.
pub struct Client {
    agent: ureq::Agent,
    /// The registry as named in references (`docker.io`, `localhost:5000`).
    pub registry: String,
    base: String,
    creds: Option<Credentials>,
    /// Authorization header values by token scope (one per repository and action set).
    auth: Mutex<HashMap<String, String>>,
}

/// The response of one request, with its status already checked by the caller.
pub type Resp = Response<ureq::Body>;

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    h == "localhost" || h == "[::1]" || h == "::1" || h.starts_with("127.")
}

impl Client {
    /// A client for `registry` (a reference's domain). Credentials come from `opts` or from
    /// the Docker config (auth.rs).
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<Client, RegistryError> {
        let plain = is_loopback(registry) || opts.insecure_registries.iter().any(|r| r == registry);
        // Docker Hub's API lives on registry-1.docker.io (the reference domain is docker.io).
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let base = format!("{}://{host}", if plain { "http" } else { "https" });
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => crate::auth::lookup(registry)?,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("capsa/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            registry: registry.to_string(),
            base,
            creds,
            auth: Mutex::new(HashMap::new()),
        })
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// `http(s)://host/v2/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.base)
    }

    /// Resolves a `Location` header (absolute or relative) against the registry base.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Sends a request built by `send` (given the Authorization header, if any); on 401
    /// answers the challenge once and sends it again.
    pub fn call(
        &self,
        scope: &str,
        what: &str,
        mut send: impl FnMut(Option<&str>) -> Result<Resp, ureq::Error>,
    ) -> Result<Resp, RegistryError> {
        let cached = self.cached_auth(scope);
        let resp = send(cached.as_deref()).map_err(|e| self.net_error(what, e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        let value = self.answer_challenge(&challenge, scope, what)?;
        self.auth
            .lock()
            .map_err(|_| RegistryError::Protocol("auth cache lock poisoned".into()))?
            .insert(scope.to_string(), value.clone());
        let resp = send(Some(&value)).map_err(|e| self.net_error(what, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.denied(what));
        }
        Ok(resp)
    }

    fn cached_auth(&self, scope: &str) -> Option<String> {
        self.auth.lock().ok().and_then(|m| m.get(scope).cloned())
    }

    fn denied(&self, what: &str) -> RegistryError {
        let hint = if self.creds.is_some() {
            "the stored credentials were refused: run `capsa login` again"
        } else {
            "run `capsa login` first"
        };
        RegistryError::Auth(format!(
            "{what}: {} requires authentication ({hint})",
            self.registry
        ))
    }

    pub(crate) fn net_error(&self, what: &str, e: ureq::Error) -> RegistryError {
        RegistryError::Network {
            what: what.to_string(),
            registry: self.registry.clone(),
            source: Box::new(e),
        }
    }

    /// Basic: send the credentials. Bearer: fetch a token from the realm for `scope`.
    fn answer_challenge(
        &self,
        challenge: &str,
        scope: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let c = self.creds.as_ref().ok_or_else(|| self.denied(what))?;
                Ok(format!("Basic {}", c.basic()))
            }
            "bearer" => self.fetch_token(&params, scope, what),
            _ => Err(RegistryError::Auth(format!(
                "{what}: {} asks for unsupported authentication {challenge:?}",
                self.registry
            ))),
        }
    }

    fn fetch_token(
        &self,
        params: &HashMap<String, String>,
        scope: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let realm = params.get("realm").ok_or_else(|| {
            RegistryError::Protocol(format!("{}: bearer challenge without realm", self.registry))
        })?;
        let mut req = self.agent.get(realm);
        if let Some(s) = params.get("service") {
            req = req.query("service", s);
        }
        if !scope.is_empty() {
            req = req.query("scope", scope);
        }
        if let Some(c) = &self.creds {
            req = req.header("Authorization", &format!("Basic {}", c.basic()));
        }
        let mut resp = req.call().map_err(|e| self.net_error("fetch a token", e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.denied(what));
        }
        if !resp.status().is_success() {
            return Err(status_error(&mut resp, &self.registry, "fetch a token"));
        }
        let raw = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.net_error("read the token", e))?;
        let body: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            RegistryError::Protocol(format!(
                "{}: the token answer is not JSON: {e}",
                self.registry
            ))
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                RegistryError::Protocol(format!("{}: token answer has no token", self.registry))
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// `GET /v2/`: checks that the registry answers and that the credentials work (login).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("");
        let mut resp = self.call("", "log in", |auth| {
            let mut r = self.agent.get(&url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })?;
        if !resp.status().is_success() {
            return Err(status_error(&mut resp, &self.registry, "log in"));
        }
        Ok(())
    }
}

/// A response header as a string.
pub fn header(resp: &Resp, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Turns a failed response into an error carrying the registry's own message
/// (distribution-spec: `{"errors":[{"code":..., "message":...}]}`).
pub fn status_error(resp: &mut Resp, registry: &str, what: &str) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    RegistryError::Status {
        what: what.to_string(),
        registry: registry.to_string(),
        status,
        message,
    }
}

/// Splits `Bearer realm="https://x",service="y",scope="a:b:pull"` into the scheme and its
/// parameters (RFC 7235 section 2.1 auth-param list; quoted values may contain commas).
pub fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn loopback_hosts_use_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:40000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("docker.io"));
    }
}
