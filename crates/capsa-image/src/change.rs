//! `--change` instructions (`docker import --change`): the Dockerfile instructions that only
//! touch the image config. Pure: parses strings and edits an OCI `Config` value.
//!
//! Supported like Docker: CMD, ENTRYPOINT (exec form `["a","b"]` or shell form, which becomes
//! `/bin/sh -c "..."`), ENV (`k=v ...` or `k v`), WORKDIR, USER, EXPOSE, LABEL, VOLUME,
//! STOPSIGNAL.

use std::collections::HashMap;

use oci_spec::image::Config;

use crate::error::{ImageError, Result};

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    Volume(Vec<String>),
    StopSignal(String),
}

/// Parses one `--change` value.
pub fn parse(s: &str) -> Result<Change> {
    let bad = |reason: &str| ImageError::Change {
        change: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim();
    let (word, rest) = t
        .split_once(char::is_whitespace)
        .map_or((t, ""), |(w, r)| (w, r.trim()));
    if rest.is_empty() {
        return Err(bad("the instruction needs an argument"));
    }
    Ok(match word.to_ascii_uppercase().as_str() {
        "CMD" => Change::Cmd(command_form(rest).ok_or_else(|| bad("malformed JSON array"))?),
        "ENTRYPOINT" => {
            Change::Entrypoint(command_form(rest).ok_or_else(|| bad("malformed JSON array"))?)
        }
        "ENV" => {
            Change::Env(pairs(rest).ok_or_else(|| bad("want ENV key=value ... or ENV key value"))?)
        }
        "LABEL" => Change::Label(pairs(rest).ok_or_else(|| bad("want LABEL key=value ..."))?),
        "WORKDIR" => {
            if !rest.starts_with('/') {
                return Err(bad("WORKDIR must be an absolute path"));
            }
            Change::Workdir(rest.to_string())
        }
        "USER" => Change::User(rest.to_string()),
        "EXPOSE" => Change::Expose(
            rest.split_whitespace()
                .map(expose_port)
                .collect::<Option<_>>()
                .ok_or_else(|| bad("want EXPOSE port[/tcp|/udp] ..."))?,
        ),
        "VOLUME" => Change::Volume(
            command_form(rest)
                .ok_or_else(|| bad("malformed JSON array"))?
                .into_iter()
                .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect(),
        ),
        "STOPSIGNAL" => Change::StopSignal(rest.to_string()),
        _ => {
            return Err(bad(
                "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR are supported",
            ));
        }
    })
}

/// The exec form is a JSON array; anything else is the shell form (Dockerfile reference).
fn command_form(rest: &str) -> Option<Vec<String>> {
    if rest.starts_with('[') {
        return serde_json::from_str(rest).ok();
    }
    Some(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

/// `k=v k2="v 2"` pairs, or the legacy single `k v` form.
fn pairs(rest: &str) -> Option<Vec<(String, String)>> {
    let first = rest.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    for word in split_quoted(rest)? {
        let (k, v) = word.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        out.push((k.to_string(), v.to_string()));
    }
    Some(out)
}

/// Splits on whitespace outside double quotes and drops the quotes; None on an open quote.
fn split_quoted(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut any) = (false, false, false);
    for c in s.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Some(out)
}

fn expose_port(p: &str) -> Option<String> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = port.parse::<u16>().is_ok() && matches!(proto, "tcp" | "udp" | "sctp");
    ok.then(|| format!("{port}/{proto}"))
}

/// Applies an instruction to a config as `docker import --change` does.
pub fn apply(change: &Change, config: &mut Config) {
    match change {
        Change::Cmd(v) => {
            config.set_cmd(Some(v.clone()));
        }
        Change::Entrypoint(v) => {
            config.set_entrypoint(Some(v.clone()));
        }
        Change::Env(kv) => {
            let mut env = config.env().clone().unwrap_or_default();
            for (k, v) in kv {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                env.push(format!("{k}={v}"));
            }
            config.set_env(Some(env));
        }
        Change::Workdir(w) => {
            config.set_working_dir(Some(w.clone()));
        }
        Change::User(u) => {
            config.set_user(Some(u.clone()));
        }
        Change::Expose(ports) => {
            let mut all = config.exposed_ports().clone().unwrap_or_default();
            all.extend(
                ports
                    .iter()
                    .filter(|p| !all.contains(p))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            config.set_exposed_ports(Some(all));
        }
        Change::Label(kv) => {
            let mut labels: HashMap<String, String> = config.labels().clone().unwrap_or_default();
            labels.extend(kv.iter().cloned());
            config.set_labels(Some(labels));
        }
        Change::Volume(v) => {
            let mut all = config.volumes().clone().unwrap_or_default();
            all.extend(
                v.iter()
                    .filter(|p| !all.contains(p))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            config.set_volumes(Some(all));
        }
        Change::StopSignal(s) => {
            config.set_stop_signal(Some(s.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Change {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn dockerfile_forms() {
        assert_eq!(
            p(r#"CMD ["httpd","-f"]"#),
            Change::Cmd(vec!["httpd".into(), "-f".into()])
        );
        assert_eq!(
            p("CMD echo hi"),
            Change::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            p(r#"ENTRYPOINT ["/bin/sh"]"#),
            Change::Entrypoint(vec!["/bin/sh".into()])
        );
        assert_eq!(
            p("ENV A=1 B=\"two words\""),
            Change::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            p("ENV PATH /bin:/usr/bin"),
            Change::Env(vec![("PATH".into(), "/bin:/usr/bin".into())])
        );
        assert_eq!(p("workdir /srv"), Change::Workdir("/srv".into()));
        assert_eq!(p("USER 65534:65534"), Change::User("65534:65534".into()));
        assert_eq!(
            p("EXPOSE 80 53/udp"),
            Change::Expose(vec!["80/tcp".into(), "53/udp".into()])
        );
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "CMD",
            "RUN echo",
            "CMD [\"a\"",
            "WORKDIR rel",
            "EXPOSE http",
            "ENV =x",
            "ENV A=\"open",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_replaces_same_key() {
        let mut c = Config::default();
        apply(&p("ENV A=1 B=2"), &mut c);
        apply(&p("ENV A=3"), &mut c);
        assert_eq!(
            c.env().clone().unwrap_or_default(),
            vec!["B=2".to_string(), "A=3".to_string()]
        );
    }
}
