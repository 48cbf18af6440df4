//! The walkthrough of capsa's main job (scripts/demo.sh, the README's first command), as a
//! test: a web server that can bind port 80 and do nothing else. Every capability assertion
//! reads the container init's /proc/PID/status on the host.

#[path = "run_support/mod.rs"]
mod support;

use support::*;

#[test]
fn walkthrough() {
    let Some(env) = env() else { return };
    default_caps_are_dockers_14(&env);
    privileged_is_all_the_host_can_grant(&env);
    drop_all_cannot_bind_80(&env);
    one_cap_serves_port_80(&env);
    non_root_user_with_the_added_cap(&env);
}

/// Step 1: the 14 Docker defaults, by name.
fn default_caps_are_dockers_14(env: &Env) {
    let n = name("defaults");
    env.ok(&["run", "-d", "--name", &n, IMAGE, "sleep", "60"]);
    let caps = caps_of(env.pid(&n));
    assert_eq!(caps.bnd, DOCKER_DEFAULTS);
    assert_eq!(caps.eff, DOCKER_DEFAULTS);
    assert_eq!(caps.prm, DOCKER_DEFAULTS);
    assert_eq!((caps.inh, caps.amb), (0, 0));
    let names = env.inspect(&n)["Capsa"]["Live"]["Capabilities"]["Effective"]["Names"].clone();
    let names: Vec<&str> = names
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cap_chown",
            "cap_dac_override",
            "cap_fowner",
            "cap_fsetid",
            "cap_kill",
            "cap_setgid",
            "cap_setuid",
            "cap_setpcap",
            "cap_net_bind_service",
            "cap_net_raw",
            "cap_sys_chroot",
            "cap_mknod",
            "cap_audit_write",
            "cap_setfcap"
        ]
    );
    env.ok(&["rm", "-f", &n]);
}

/// Step 2: `--privileged` gets every cap this host can grant (here: not CAP_SYS_RESOURCE).
fn privileged_is_all_the_host_can_grant(env: &Env) {
    let n = name("priv");
    env.ok(&[
        "run",
        "-d",
        "--privileged",
        "--name",
        &n,
        IMAGE,
        "sleep",
        "60",
    ]);
    let caps = caps_of(env.pid(&n));
    let host = host_bounding() & ((1u64 << 41) - 1);
    assert_eq!(caps.bnd, host);
    assert_eq!(caps.eff, host);
    assert_eq!((caps.inh, caps.amb), (0, 0));
    env.ok(&["rm", "-f", &n]);
}

/// Step 3: with no capabilities, httpd cannot bind port 80.
fn drop_all_cannot_bind_80(env: &Env) {
    let out = env.capsa(&[
        "run",
        "--rm",
        "--cap-drop=ALL",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

/// Step 4: exactly NET_BIND_SERVICE serves a page on port 80; inspect and `capsa caps pid`
/// show only that capability.
fn one_cap_serves_port_80(env: &Env) {
    let n = name("web");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "--cap-drop=ALL",
        "--cap-add=NET_BIND_SERVICE",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let page = fetch(env, &n);
    assert_eq!(page, "hello from capsa\n");
    let pid = env.pid(&n);
    let caps = caps_of(pid);
    assert_eq!(
        (caps.bnd, caps.eff, caps.prm),
        (NET_BIND_SERVICE, NET_BIND_SERVICE, NET_BIND_SERVICE)
    );
    assert_eq!((caps.inh, caps.amb), (0, 0));
    let v = env.inspect(&n);
    assert_eq!(
        v["HostConfig"]["CapAdd"],
        serde_json::json!(["CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(v["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        v["Capsa"]["Live"]["Capabilities"]["Effective"]["Names"],
        serde_json::json!(["cap_net_bind_service"])
    );
    assert_eq!(
        v["Capsa"]["Live"]["Capabilities"]["Effective"]["Hex"],
        "0000000000000400"
    );
    assert_eq!(v["Capsa"]["Live"]["Seccomp"], "filter");
    let text = env.ok(&["caps", "pid", &pid.to_string()]);
    assert!(text.contains("cap_net_bind_service"), "{text}");
    assert!(
        !text.contains("cap_chown") && !text.contains("cap_kill"),
        "{text}"
    );
    env.ok(&["rm", "-f", &n]);
}

/// Step 5: the same server as `--user 65534`: the added cap is effective and ambient (capsa's
/// difference from Docker), the defaults are not.
fn non_root_user_with_the_added_cap(env: &Env) {
    let n = name("nobody");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "--user",
        "65534",
        "--cap-drop=ALL",
        "--cap-add=NET_BIND_SERVICE",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert_eq!(fetch(env, &n), "hello from capsa\n");
    let pid = env.pid(&n);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    let caps = parse_caps(&status);
    assert_eq!(
        caps,
        Caps {
            inh: NET_BIND_SERVICE,
            prm: NET_BIND_SERVICE,
            eff: NET_BIND_SERVICE,
            bnd: NET_BIND_SERVICE,
            amb: NET_BIND_SERVICE
        }
    );
    env.ok(&["rm", "-f", &n]);
}

/// wget through `capsa exec`, retrying while httpd starts.
fn fetch(env: &Env, name: &str) -> String {
    for _ in 0..50 {
        let out = env.capsa(&["exec", name, "wget", "-qO-", "http://127.0.0.1/"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no page from {name}");
}
