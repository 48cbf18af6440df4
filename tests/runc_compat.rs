//! Differential tests (root): the same bundle under runc 1.1.5 and under capsa-runc must
//! print the same /proc/self/status Cap*, Uid/Gid/Groups and NoNewPrivs lines, hostname,
//! mount list shape (/proc/self/mountinfo, normalised) and rlimits (/proc/self/limits).
//! One #[test] per case (`diff_*`); `all_host_caps` is the case where runc fails and capsa
//! must not. `runc_baseline_*` check runc alone against known masks, so a broken harness
//! cannot make the differential tests pass vacuously.

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{ALL_CAPS, Bundle, Caps, DOCKER_DEFAULT_CAPS, Out, Runner, Runtime, proc, unique_id};
use serde_json::json;

/// What the probe prints, split into comparable sections.
#[derive(Debug, PartialEq)]
struct Report {
    status: Vec<String>,
    hostname: String,
    mounts: Vec<String>,
    limits: String,
}

impl Report {
    fn mask(&self, key: &str) -> u64 {
        let f = proc::status_fields(&self.status.join("\n"));
        proc::cap_mask(&f, key).unwrap_or_else(|| panic!("no {key} in {:?}", self.status))
    }
}

/// Runs in the container; each section is separated by a line `===`.
const PROBE: &str = "grep -E '^(Cap|Uid|Gid|Groups|NoNewPrivs)' /proc/self/status; echo ===; \
                     hostname; echo ===; cat /proc/self/mountinfo; echo ===; cat /proc/self/limits";

fn probe(r: &Runner, b: &Bundle) -> Result<Report, Out> {
    let id = unique_id("compat");
    let out = r.run(b, &id);
    if !out.ok() {
        return Err(out);
    }
    let parts: Vec<&str> = out.stdout.split("===\n").collect();
    if parts.len() != 4 {
        return Err(out);
    }
    Ok(Report {
        status: parts[0].lines().map(str::to_string).collect(),
        hostname: parts[1].trim().to_string(),
        mounts: proc::mount_shape(parts[2]),
        limits: parts[3].to_string(),
    })
}

fn bundle_with(configure: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = Bundle::new();
    b.sh(PROBE);
    configure(&mut b);
    b
}

/// Runs `b` under both runtimes and asserts every section is equal; returns both reports.
fn differential(b: &Bundle) -> Option<(Report, Report)> {
    let runc = Runner::new(Runtime::Runc)?;
    let capsa = Runner::new(Runtime::Capsa)?;
    let want = probe(&runc, b).unwrap_or_else(|o| panic!("runc failed on this bundle: {o}"));
    let got = probe(&capsa, b).unwrap_or_else(|o| panic!("capsa-runc failed where runc ran: {o}"));
    assert_eq!(
        got.status, want.status,
        "/proc/self/status lines (left capsa, right runc)"
    );
    assert_eq!(
        got.hostname, want.hostname,
        "hostname (left capsa, right runc)"
    );
    assert_eq!(
        got.mounts, want.mounts,
        "mount shape (left capsa, right runc)"
    );
    assert_eq!(
        got.limits, want.limits,
        "/proc/self/limits (left capsa, right runc)"
    );
    Some((want, got))
}

/// Declares a differential case: the bundle configuration and the expected masks
/// (CapEff, CapAmb) that runc must show, so the case is known to mean something.
macro_rules! diff_case {
    ($name:ident, $baseline:ident, $cfg:expr, eff = $eff:expr, amb = $amb:expr) => {
        #[test]
        fn $name() {
            require_root!();
            let b = bundle_with($cfg);
            if let Some((runc, _)) = differential(&b) {
                assert_eq!(runc.mask("CapEff"), $eff, "runc CapEff");
            }
        }
        #[test]
        fn $baseline() {
            require_root!();
            let Some(r) = Runner::new(Runtime::Runc) else {
                return;
            };
            let rep = probe(&r, &bundle_with($cfg)).unwrap_or_else(|o| panic!("runc: {o}"));
            assert_eq!(rep.mask("CapEff"), $eff, "runc CapEff: {:?}", rep.status);
            assert_eq!(rep.mask("CapAmb"), $amb, "runc CapAmb: {:?}", rep.status);
            assert_eq!(
                rep.mask("CapInh") & !$amb,
                0,
                "runc CapInh: {:?}",
                rep.status
            );
            assert!(!rep.mounts.is_empty() && rep.limits.contains("Max open files"));
        }
    };
}

const DOCKER_MASK: u64 = 0xa804_25fb;
const KILL: u64 = 1 << 5;
const NET_BIND_SERVICE: u64 = 1 << 10;

diff_case!(
    diff_docker_default_caps,
    runc_baseline_docker_default_caps,
    |_b: &mut Bundle| {},
    eff = DOCKER_MASK,
    amb = 0
);
diff_case!(
    diff_no_caps,
    runc_baseline_no_caps,
    |b: &mut Bundle| {
        b.caps(&Caps::default());
    },
    eff = 0,
    amb = 0
);
diff_case!(
    diff_only_net_bind_service,
    runc_baseline_only_net_bind_service,
    |b: &mut Bundle| {
        b.caps(&Caps::bep(&["CAP_NET_BIND_SERVICE"]));
    },
    eff = NET_BIND_SERVICE,
    amb = 0
);
// Ambient for a non-root user: the kernel keeps an ambient cap only if it is in both P
// and I (capabilities(7)), and execve then puts it in P' and E'.
diff_case!(
    diff_ambient_kill_for_uid_1000,
    runc_baseline_ambient_kill_for_uid_1000,
    |b: &mut Bundle| {
        b.user(1000, 1000, &[]).caps(&Caps {
            bounding: &["CAP_KILL"],
            effective: &["CAP_KILL"],
            permitted: &["CAP_KILL"],
            inheritable: &["CAP_KILL"],
            ambient: &["CAP_KILL"],
        });
    },
    eff = KILL,
    amb = KILL
);
// Ambient listed without inheritable: the raise must be skipped (runc warns), not fatal.
diff_case!(
    diff_ambient_without_inheritable_is_dropped,
    runc_baseline_ambient_without_inheritable_is_dropped,
    |b: &mut Bundle| {
        b.user(1000, 1000, &[]).caps(&Caps {
            bounding: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            effective: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            permitted: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            inheritable: &["CAP_KILL"],
            ambient: &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        });
    },
    eff = KILL,
    amb = KILL
);
diff_case!(
    diff_nobody_with_additional_gids,
    runc_baseline_nobody_with_additional_gids,
    |b: &mut Bundle| {
        b.user(65534, 65534, &[1000, 10]);
    },
    eff = 0,
    amb = 0
);
diff_case!(
    diff_rlimits,
    runc_baseline_rlimits,
    |b: &mut Bundle| {
        b.rlimits(&[
            ("RLIMIT_NOFILE", 512, 4096),
            ("RLIMIT_NPROC", 100, 200),
            ("RLIMIT_CORE", 0, 0),
            ("RLIMIT_MEMLOCK", 65536, 65536),
        ]);
    },
    eff = DOCKER_MASK,
    amb = 0
);
diff_case!(
    diff_hostname,
    runc_baseline_hostname,
    |b: &mut Bundle| {
        b.hostname("compat-host-7");
    },
    eff = DOCKER_MASK,
    amb = 0
);
diff_case!(
    diff_readonly_root_with_tmpfs,
    runc_baseline_readonly_root_with_tmpfs,
    |b: &mut Bundle| {
        b.readonly_root(true).add_mount(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=1024k"]
        }));
    },
    eff = DOCKER_MASK,
    amb = 0
);
diff_case!(
    diff_cgroup_namespace_and_no_new_privs_off,
    runc_baseline_cgroup_namespace_and_no_new_privs_off,
    |b: &mut Bundle| {
        b.no_new_privileges(false)
            .namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    },
    eff = DOCKER_MASK,
    amb = 0
);
diff_case!(
    diff_bind_mounts_and_propagation,
    runc_baseline_bind_mounts_and_propagation,
    |b: &mut Bundle| {
        let rootfs = b.rootfs();
        let _ = std::fs::create_dir_all(rootfs.join("data"));
        b.add_mount(json!({
            "destination": "/mnt/ro-bin", "type": "bind", "source": rootfs.join("bin"),
            "options": ["rbind", "ro", "nosuid", "rprivate"]
        }))
        .add_mount(json!({
            "destination": "/mnt/data", "type": "none", "source": rootfs.join("data"),
            "options": ["bind", "rw", "noexec", "nodev"]
        }));
    },
    eff = DOCKER_MASK,
    amb = 0
);

/// All 41 capability names: runc 1.1.5 fails (CAP_SYS_RESOURCE is not in this host's
/// bounding set, so capset gives EPERM); capsa must succeed and grant exactly what the
/// host can: CapBnd = CapPrm = CapEff = the test process's own bounding set.
fn all_caps_bundle() -> Bundle {
    bundle_with(|b| {
        b.caps(&Caps::bep(ALL_CAPS));
    })
}

#[test]
fn runc_baseline_all_caps_fails_with_eperm() {
    require_root!();
    let Some(r) = Runner::new(Runtime::Runc) else {
        return;
    };
    let host = proc::host_cap_bnd();
    if host.count_ones() as usize == ALL_CAPS.len() {
        eprintln!(
            "SKIP: this host can grant every capability; the case needs a reduced bounding set"
        );
        return;
    }
    let err = probe(&r, &all_caps_bundle()).expect_err("runc should fail on ungrantable caps");
    assert!(
        err.text_lower().contains("operation not permitted"),
        "{err}"
    );
}

#[test]
fn diff_all_host_caps_capsa_succeeds_where_runc_fails() {
    require_root!();
    let (Some(runc), Some(capsa)) = (Runner::new(Runtime::Runc), Runner::new(Runtime::Capsa))
    else {
        return;
    };
    let host = proc::host_cap_bnd();
    let b = all_caps_bundle();
    let runc_out = probe(&runc, &b);
    if host.count_ones() as usize != ALL_CAPS.len() {
        let err = runc_out.expect_err("runc should fail on ungrantable caps");
        assert!(
            err.text_lower().contains("operation not permitted"),
            "{err}"
        );
    }
    let rep =
        probe(&capsa, &b).unwrap_or_else(|o| panic!("capsa-runc must not fail on all caps: {o}"));
    for key in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(
            rep.mask(key),
            host,
            "{key} must be the host's bounding set {host:#x}"
        );
    }
    assert_eq!(rep.mask("CapInh"), 0, "inheritable must stay empty");
    assert_eq!(rep.mask("CapAmb"), 0, "ambient must stay empty");
}

/// The same ungrantable set with the host's missing caps dropped: now runc runs, and
/// capsa must agree with it line for line.
#[test]
fn diff_all_host_grantable_caps() {
    require_root!();
    let host = proc::host_cap_bnd();
    let grantable: Vec<&str> = ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| host & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    let b = bundle_with(|b| {
        b.caps(&Caps::bep(&grantable));
    });
    if let Some((runc, _)) = differential(&b) {
        assert_eq!(runc.mask("CapEff"), host);
    }
}

#[test]
fn docker_default_caps_constant_is_dockers_mask() {
    // Guards the constant the whole matrix relies on (moby oci/caps/defaults.go).
    let names: Vec<&str> = DOCKER_DEFAULT_CAPS.to_vec();
    let mask = names.iter().fold(0u64, |m, n| {
        let i = ALL_CAPS.iter().position(|c| c == n).unwrap_or(63);
        m | (1u64 << i)
    });
    assert_eq!(mask, DOCKER_MASK);
}
