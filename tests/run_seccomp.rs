//! Seccomp: Docker's default profile, generated after capabilities. `unshare(CLONE_NEWUSER)`
//! needs no capability, so only the filter can refuse it: EPERM by default, allowed once
//! CAP_SYS_ADMIN is in the bounding set (the profile's `includes.caps`), and allowed with
//! `seccomp=unconfined`. The filter mode is read from the kernel (/proc/self/status).

#[path = "run_support/mod.rs"]
mod support;

use support::*;

fn run(env: &Env, flags: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    env.capsa(&args)
}

#[test]
fn unshare_needs_sys_admin_or_unconfined() {
    let Some(env) = env() else { return };
    let denied = run(&env, &[], &["unshare", "-U", "true"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Operation not permitted"));
    assert!(
        run(&env, &["--cap-add=SYS_ADMIN"], &["unshare", "-U", "true"])
            .status
            .success()
    );
    assert!(
        run(
            &env,
            &["--security-opt", "seccomp=unconfined"],
            &["unshare", "-U", "true"]
        )
        .status
        .success()
    );
}

#[test]
fn filter_mode_and_no_new_privs() {
    let Some(env) = env() else { return };
    let mode = |flags: &[&str]| {
        let out = run(
            &env,
            flags,
            &["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(mode(&[]).contains("Seccomp:\t2"));
    assert!(mode(&[]).contains("NoNewPrivs:\t0"));
    assert!(mode(&["--privileged"]).contains("Seccomp:\t0"));
    assert!(mode(&["--security-opt=seccomp=unconfined"]).contains("Seccomp:\t0"));
    assert!(mode(&["--security-opt=no-new-privileges"]).contains("NoNewPrivs:\t1"));
}
