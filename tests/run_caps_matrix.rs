//! The capability resolution matrix end to end: for each combination of flags, the live
//! CapEff, CapPrm, CapBnd, CapAmb and CapInh of the container's process (read by the kernel:
//! the process greps its own /proc/self/status), and Docker's error texts for bad flags, which
//! must leave nothing behind.

#[path = "run_support/mod.rs"]
mod support;

use support::*;

const CHOWN: u64 = 1;
const NET_RAW: u64 = 1 << 13;

/// Runs `grep Cap /proc/self/status` as the container's init with `flags`.
fn live_caps(env: &Env, flags: &[&str]) -> Caps {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, "grep", "Cap", "/proc/self/status"]);
    parse_caps(&env.ok(&args))
}

#[test]
fn resolution_matrix() {
    let Some(env) = env() else { return };
    let host = host_bounding() & ((1u64 << 41) - 1);
    let all = |eff: u64, bnd: u64| Caps {
        inh: 0,
        prm: eff,
        eff,
        bnd,
        amb: 0,
    };
    let nobody = |bnd: u64, amb: u64| Caps {
        inh: amb,
        prm: amb,
        eff: amb,
        bnd,
        amb,
    };
    let table: Vec<(&[&str], Caps)> = vec![
        (&[], all(DOCKER_DEFAULTS, DOCKER_DEFAULTS)),
        (&["--cap-drop=ALL"], all(0, 0)),
        (&["--cap-add=ALL"], all(host, host)),
        (&["--cap-add=ALL", "--cap-drop=ALL"], all(host, host)),
        (
            &["--cap-add=ALL", "--cap-drop=net_raw"],
            all(host & !NET_RAW, host & !NET_RAW),
        ),
        (
            &["--cap-drop=ALL", "--cap-add=NET_BIND_SERVICE"],
            all(NET_BIND_SERVICE, NET_BIND_SERVICE),
        ),
        (
            &["--cap-add=CHOWN", "--cap-drop=CHOWN"],
            all(DOCKER_DEFAULTS, DOCKER_DEFAULTS),
        ),
        (
            &["--cap-drop=CHOWN"],
            all(DOCKER_DEFAULTS & !CHOWN, DOCKER_DEFAULTS & !CHOWN),
        ),
        (&["--privileged", "--cap-drop=CHOWN"], all(host, host)),
        (&["--user=65534"], nobody(DOCKER_DEFAULTS, 0)),
        (&["--user=65534", "--cap-add=ALL"], nobody(host, 0)),
        (
            &[
                "--user=65534",
                "--cap-drop=ALL",
                "--cap-add=cap_net_bind_service",
            ],
            nobody(NET_BIND_SERVICE, NET_BIND_SERVICE),
        ),
        (
            &["--user=nobody", "--cap-add=NET_BIND_SERVICE"],
            nobody(DOCKER_DEFAULTS, NET_BIND_SERVICE),
        ),
    ];
    for (flags, want) in table {
        assert_eq!(live_caps(&env, flags), want, "flags {flags:?}");
    }
    assert!(
        env.ids().is_empty(),
        "--rm left containers: {:?}",
        env.ids()
    );
}

#[test]
fn bad_flags_give_dockers_text_and_leave_nothing() {
    let Some(env) = env() else { return };
    let mut cases = vec![
        (
            vec!["--cap-add=FOO"],
            "invalid CapAdd: unknown capability: \"CAP_FOO\"",
        ),
        (
            vec!["--cap-drop=cap_bogus"],
            "invalid CapDrop: unknown capability: \"CAP_BOGUS\"",
        ),
        (
            vec!["--cap-add=CAP_ALL"],
            "invalid CapAdd: unknown capability: \"CAP_ALL\"",
        ),
        (
            vec!["--privileged", "--cap-drop=NOPE"],
            "invalid CapDrop: unknown capability: \"CAP_NOPE\"",
        ),
        (
            vec!["--security-opt=apparmor=x"],
            "invalid --security-opt 2: \"apparmor=x\"",
        ),
        (
            vec!["--user=alice"],
            "unable to find user alice: no matching entries in passwd file",
        ),
        (
            vec!["--name=bad name"],
            "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
        ),
    ];
    if host_bounding() & (1 << 24) == 0 {
        cases.push((
            vec!["--cap-add=SYS_RESOURCE"],
            "invalid CapAdd: capability not supported by your kernel or not available in the current environment: \"CAP_SYS_RESOURCE\"",
        ));
    }
    for (flags, text) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter().copied());
        args.extend([IMAGE, "true"]);
        let out = env.capsa(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(text), "{args:?}: {err}");
        assert!(env.ids().is_empty(), "{args:?} left a container");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(env.root.path().to_str().expect("utf8")),
        "a mount is left"
    );
}

#[test]
fn name_conflict_is_dockers_text() {
    let Some(env) = env() else { return };
    let n = name("dup");
    let id = env
        .ok(&["create", "--name", &n, IMAGE, "true"])
        .trim()
        .to_string();
    let out = env.capsa(&["create", "--name", &n, IMAGE, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Conflict. The container name \"/{n}\" is already in use by container \"{id}\""
        )),
        "{err}"
    );
    assert_eq!(env.ids(), vec![id.clone()]);
    let missing = env.capsa(&["inspect", "nosuchthing"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such container: nosuchthing"));
    env.ok(&["rm", &id[..12]]);
    env.assert_gone(&id);
}

#[test]
fn requests_without_effect_are_warned() {
    let Some(env) = env() else { return };
    let warn = |flags: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        let out = env.capsa(&args);
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(warn(&["--cap-add=CHOWN"]).contains("--cap-add=CAP_CHOWN has no effect"));
    assert!(warn(&["--cap-drop=SYS_ADMIN"]).contains("--cap-drop=CAP_SYS_ADMIN has no effect"));
    assert!(warn(&["--privileged", "--cap-drop=CHOWN"]).contains("no effect with --privileged"));
    assert!(warn(&["--user=65534", "--cap-add=ALL"]).contains("non-root user"));
    assert_eq!(warn(&["--cap-drop=ALL", "--cap-add=NET_BIND_SERVICE"]), "");
}
