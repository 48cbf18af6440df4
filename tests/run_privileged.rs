//! `--privileged` beyond capabilities, and the protections a normal container keeps: Docker's
//! masked and read-only paths, /sys and the cgroup mount read-only, only the standard devices.
//! Every assertion reads what the kernel reports inside the container (mountinfo, /dev, /proc).

#[path = "run_support/mod.rs"]
mod support;

use support::*;

fn sh(env: &Env, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    env.ok(&args)
}

/// The mount options of `dir` in the container's mountinfo (field 6).
const MOUNT_OPTS: &str = "grep -E '^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ (/sys|/sys/fs/cgroup/[a-z]+|/proc/keys|/proc/sys) ' /proc/self/mountinfo | cut -d' ' -f5,6";

#[test]
fn normal_container_keeps_dockers_protections() {
    let Some(env) = env() else { return };
    let mounts = sh(&env, &[], MOUNT_OPTS);
    assert!(mounts.lines().any(|l| l.starts_with("/sys ro")), "{mounts}");
    assert!(
        mounts.lines().any(|l| l.starts_with("/proc/sys ro")),
        "{mounts}"
    );
    assert!(
        mounts.lines().any(|l| l.starts_with("/proc/keys ")),
        "/proc/keys is masked: {mounts}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/sys/fs/cgroup/pids ro")),
        "{mounts}"
    );
    // Only the standard devices exist; /dev/loop0 (on the host) does not.
    let devs = sh(&env, &[], "ls /dev");
    assert!(devs.contains("null") && !devs.contains("loop0"), "{devs}");
}

#[test]
fn privileged_opens_sys_devices_and_paths() {
    let Some(env) = env() else { return };
    let mounts = sh(&env, &["--privileged"], MOUNT_OPTS);
    assert!(mounts.lines().any(|l| l.starts_with("/sys rw")), "{mounts}");
    assert!(
        !mounts.lines().any(|l| l.starts_with("/proc/keys ")),
        "{mounts}"
    );
    assert!(
        !mounts.lines().any(|l| l.starts_with("/proc/sys ")),
        "{mounts}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/sys/fs/cgroup/pids rw")),
        "{mounts}"
    );
    if std::path::Path::new("/dev/loop0").exists() {
        let devs = sh(&env, &["--privileged"], "ls /dev");
        assert!(devs.contains("loop0"), "{devs}");
    }
}

#[test]
fn systempaths_unconfined_and_read_only() {
    let Some(env) = env() else { return };
    let mounts = sh(
        &env,
        &["--security-opt", "systempaths=unconfined"],
        MOUNT_OPTS,
    );
    assert!(
        !mounts.lines().any(|l| l.starts_with("/proc/keys ")),
        "{mounts}"
    );
    assert!(mounts.lines().any(|l| l.starts_with("/sys ro")), "{mounts}");
    let out = env.capsa(&["run", "--rm", "--read-only", IMAGE, "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert_eq!(
        sh(
            &env,
            &["--read-only", "--tmpfs", "/scratch"],
            "touch /scratch/x && echo ok"
        ),
        "ok\n"
    );
}
