//! hooks: running OCI hooks (runtime-spec config.md "POSIX-platform Hooks").
//!
//! Owns: starting one hook program with its args and env, feeding it the container state on
//! stdin, enforcing its timeout and reporting how it failed.
//! Must not touch: when hooks run (that is `container` for the runtime-namespace hooks and
//! `init` for createContainer/startContainer) or any namespace.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("error running hook #{index} {path}: cannot start it: {source}")]
    Spawn {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("error running hook #{index} {path}: {status}")]
    Failed {
        index: usize,
        path: PathBuf,
        status: String,
    },
    #[error("error running hook #{index} {path}: timed out after {secs} s (hook killed)")]
    Timeout {
        index: usize,
        path: PathBuf,
        secs: i64,
    },
    #[error("error running hook #{index} {path}: waiting for it failed: {source}")]
    Wait {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `hooks` in order, each with `state_json` on its stdin; stops at the first failure.
pub fn run_all(hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_one(index, hook, state_json)?;
    }
    Ok(())
}

/// Runs every hook even when some fail (poststop, poststart: the spec says the runtime MUST
/// log a warning and continue) and returns one message per failure.
pub fn run_all_warn(hooks: &[Hook], state_json: &[u8]) -> Vec<String> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| run_one(i, h, state_json).err().map(|e| e.to_string()))
        .collect()
}

fn run_one(index: usize, hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    // args[0] is argv[0] (config.md: "args ... including the binary name itself").
    if let Some(args) = hook.args() {
        let mut it = args.iter();
        if let Some(argv0) = it.next() {
            cmd.arg0(argv0);
        }
        cmd.args(it);
    }
    // An absent env inherits ours, as runc does (Go's exec.Cmd with a nil Env).
    if let Some(env) = hook.env() {
        cmd.env_clear();
        cmd.envs(
            env.iter()
                .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), ""))),
        );
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        index,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin gives EPIPE: not a failure of the hook.
        let _ = stdin.write_all(state_json);
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    let status = match timeout {
        None => child.wait().map_err(|source| HookError::Wait {
            index,
            path: path.clone(),
            source,
        }),
        Some(secs) => wait_timeout(&mut child, secs)
            .map_err(|source| HookError::Wait {
                index,
                path: path.clone(),
                source,
            })?
            .ok_or(HookError::Timeout {
                index,
                path: path.clone(),
                secs,
            }),
    }?;
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed {
            index,
            path,
            status: describe(status),
        })
    }
}

/// Waits up to `secs` seconds; kills and reaps the child when the time is up (returns None).
/// Uses a pidfd, which becomes readable when the process exits (pidfd_open(2)), so the wait
/// needs no polling loop.
fn wait_timeout(child: &mut Child, secs: i64) -> std::io::Result<Option<ExitStatus>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let pid = rustix::process::Pid::from_raw(child.id() as i32)
        .ok_or_else(|| std::io::Error::other("hook has no pid"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    let limit = Duration::from_secs(secs as u64);
    let ts = Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let ready = loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if ready == 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(None);
    }
    child.wait().map(Some)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).expect("hook json")
    }

    #[test]
    fn state_arrives_on_stdin_and_args_env_apply() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}; echo \"$0 $X\" >> {}"],"env":["X=y"]}}"#,
            out.display(),
            out.display()
        ));
        run_all(&[h], b"{\"id\":\"c\"}").expect("hook runs");
        let got = std::fs::read_to_string(&out).expect("output");
        assert_eq!(got, "{\"id\":\"c\"}sh y\n");
    }

    #[test]
    fn failure_and_timeout_are_reported() {
        let fail = hook(r#"{"path":"/bin/sh","args":["sh","-c","exit 3"]}"#);
        let e = run_all(&[fail], b"{}").expect_err("fails");
        assert!(e.to_string().contains("exit status 3"), "{e}");
        let slow = hook(r#"{"path":"/bin/sh","args":["sh","-c","exec sleep 5"],"timeout":1}"#);
        let e = run_all(&[slow], b"{}").expect_err("times out");
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        let missing = hook(r#"{"path":"/nonexistent/hook"}"#);
        assert!(matches!(
            run_all(&[missing], b"{}"),
            Err(HookError::Spawn { .. })
        ));
    }

    #[test]
    fn warn_variant_runs_all() {
        let fail = hook(r#"{"path":"/bin/false"}"#);
        let ok = hook(r#"{"path":"/bin/true"}"#);
        assert_eq!(run_all_warn(&[fail.clone(), ok, fail], b"{}").len(), 2);
    }
}
