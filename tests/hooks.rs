//! The six OCI hook kinds run at the points runtime-spec config.md names (root), each test
//! run against runc 1.1.5 (the baseline) and capsa-runc:
//! - prestart and createRuntime: in the runtime namespace, after the container's namespaces
//!   exist and BEFORE its pivot_root (the init's root still shows the host tree), with the
//!   state (`creating`, the init's pid) on stdin; a file createRuntime writes into the rootfs
//!   is seen by the container;
//! - createContainer: in the container's mount namespace, before pivot_root;
//! - startContainer: in the container after pivot_root, before the user process (which sees
//!   what it wrote);
//! - poststart: in the runtime namespace after `start` (runc 1.1.5 runs it in `create`
//!   already, a known runc bug, so that one check is capsa-only);
//! - poststop: only after `delete`, with status `stopped`, no pid, the state dir gone.
//!
//! Every hook is one shell script (`hook.sh KIND OUTDIR ROOTFS`) that saves its stdin and
//! what the kernel shows it (namespaces, the init's root) for the assertions here.

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{Bundle, Runner, Runtime, unique_id};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const HOOK_SCRIPT: &str = r#"#!/bin/sh
# hook.sh KIND OUTDIR ROOTFS: save the state from stdin and what this hook sees.
kind=$1; out=$2; rootfs=$3
bb=/bin/busybox
$bb cat > "$out/$kind.json"
pid=$($bb sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$out/$kind.json")
{
  echo "mntns=$($bb readlink /proc/self/ns/mnt)"
  echo "netns=$($bb readlink /proc/self/ns/net)"
  if [ -e "$rootfs/bin/busybox" ]; then echo "host_rootfs_visible=yes"; else echo "host_rootfs_visible=no"; fi
  if [ -n "$pid" ]; then
    if [ -e "/proc/$pid/root$rootfs/bin/busybox" ]; then echo "init_before_pivot=yes"; else echo "init_before_pivot=no"; fi
    echo "init_netns=$($bb readlink /proc/$pid/ns/net)"
  fi
  if [ -n "$STATE_DIR" ]; then
    if [ -e "$STATE_DIR" ]; then echo "state_dir=present"; else echo "state_dir=gone"; fi
  fi
} > "$out/$kind.txt"
if [ "$kind" = createRuntime ]; then echo made-by-createRuntime > "$rootfs/tmp/from-create-runtime"; fi
exit 0
"#;

/// What one hook recorded: its stdin (the state JSON) and its `key=value` observations.
struct Seen {
    state: Value,
    facts: BTreeMap<String, String>,
}

fn read_seen(dir: &Path, kind: &str) -> Option<Seen> {
    let state = fs::read_to_string(dir.join(format!("{kind}.json"))).ok()?;
    let facts = fs::read_to_string(dir.join(format!("{kind}.txt"))).ok()?;
    Some(Seen {
        state: serde_json::from_str(&state)
            .unwrap_or_else(|e| panic!("{kind} got no state JSON ({e}): {state:?}")),
        facts: facts
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn must_see(dir: &Path, kind: &str) -> Seen {
    read_seen(dir, kind).unwrap_or_else(|| panic!("the {kind} hook did not run (no record)"))
}

fn own_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A hook entry running hook.sh (at `script`, a path in the namespace where it resolves).
fn hook(script: &str, kind: &str, out: &Path, rootfs: &Path, state_dir: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", script, kind, out, rootfs],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("STATE_DIR={}", state_dir.display())],
        "timeout": 20
    })
}

fn hooks_at_their_points(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    let id = unique_id("hooks");
    let out: PathBuf = b.path().join("out");
    fs::create_dir_all(&out).unwrap_or_else(|e| panic!("mkdir {out:?}: {e}"));
    let host_script = b.path().join("hook.sh");
    for p in [&host_script, &b.rootfs().join("hook.sh")] {
        fs::write(p, HOOK_SCRIPT).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
    }
    let rootfs = b.rootfs();
    let state_dir = r.root.join(&id);
    let hs = host_script.to_string_lossy().into_owned();
    let h = |kind: &str| json!([hook(&hs, kind, &out, &rootfs, &state_dir)]);
    b.config["hooks"] = json!({
        "prestart": h("prestart"),
        "createRuntime": h("createRuntime"),
        "createContainer": h("createContainer"),
        // Resolved in the container after pivot_root: the rootfs copy, writing to its /tmp.
        "startContainer": [hook("/hook.sh", "startContainer", Path::new("/tmp"), &rootfs, Path::new(""))],
        "poststart": h("poststart"),
        "poststop": h("poststop"),
    });
    b.sh("cat /tmp/from-create-runtime > /tmp/seen; \
          test -e /tmp/startContainer.json && echo start-hook-before-me >> /tmp/seen; \
          exec sleep 1000");

    let (o, pid) = r.create(&b, &id, &[]);
    o.assert_ok("create with all six hooks");
    let (host_mnt, host_net) = (own_ns("mnt"), own_ns("net"));
    for kind in ["prestart", "createRuntime"] {
        let s = must_see(&out, kind);
        assert_eq!(s.state["status"], "creating", "{kind} state: {}", s.state);
        assert_eq!(
            s.state["pid"], pid,
            "{kind} state pid vs --pid-file: {}",
            s.state
        );
        assert_eq!(s.state["id"], id.as_str(), "{kind}: {}", s.state);
        assert_eq!(
            s.facts["mntns"], host_mnt,
            "{kind} is not in the runtime mount ns"
        );
        assert_eq!(
            s.facts["netns"], host_net,
            "{kind} is not in the runtime net ns"
        );
        assert_ne!(
            s.facts["init_netns"], host_net,
            "{kind} ran before the init's netns existed"
        );
        assert_eq!(
            s.facts["init_before_pivot"], "yes",
            "{kind} ran after the init's pivot_root (its root no longer shows the host tree)"
        );
    }
    let cc = must_see(&out, "createContainer");
    assert_eq!(cc.state["status"], "creating", "{}", cc.state);
    assert_ne!(
        cc.facts["mntns"], host_mnt,
        "createContainer ran in the runtime mount ns"
    );
    assert_eq!(
        cc.facts["host_rootfs_visible"], "yes",
        "createContainer ran after pivot_root"
    );
    // runc 1.1.5 runs poststart inside `create` (opencontainers/runc#1710, moved to `start`
    // only by runc#5186); the spec (runtime.md lifecycle step 9) and capsa run it after start.
    if rt == Runtime::Capsa {
        assert!(
            read_seen(&out, "poststart").is_none(),
            "poststart ran at create"
        );
    }
    assert!(
        read_seen(&rootfs.join("tmp"), "startContainer").is_none(),
        "startContainer ran at create"
    );

    r.cmd(&["start", &id]).assert_ok("start");
    assert!(r.wait_status(&id, "running"), "not running after start");
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || {
            fs::read_to_string(rootfs.join("tmp/seen")).is_ok_and(|s| s.lines().count() == 2)
        }),
        "the container did not see the createRuntime file and the startContainer record: {:?}",
        fs::read_to_string(rootfs.join("tmp/seen"))
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("tmp/seen")).unwrap_or_default(),
        "made-by-createRuntime\nstart-hook-before-me\n"
    );
    let sc = must_see(&rootfs.join("tmp"), "startContainer");
    assert_eq!(sc.state["status"], "created", "{}", sc.state);
    assert_ne!(
        sc.facts["mntns"], host_mnt,
        "startContainer ran in the runtime mount ns"
    );
    assert_eq!(
        sc.facts["host_rootfs_visible"], "no",
        "startContainer ran before pivot_root"
    );
    let ps = must_see(&out, "poststart");
    assert_eq!(ps.state["pid"], pid, "{}", ps.state);
    assert_eq!(
        ps.facts["mntns"], host_mnt,
        "poststart is not in the runtime mount ns"
    );
    eprintln!("{}: poststart saw status {}", rt.name(), ps.state["status"]);

    r.cmd(&["kill", &id, "9"]).assert_ok("kill 9");
    assert!(r.wait_status(&id, "stopped"), "not stopped after kill");
    assert!(
        read_seen(&out, "poststop").is_none(),
        "poststop ran before delete"
    );
    r.cmd(&["delete", &id]).assert_ok("delete");
    let pst = must_see(&out, "poststop");
    assert_eq!(pst.state["status"], "stopped", "{}", pst.state);
    assert!(
        pst.state.get("pid").is_none(),
        "poststop got a pid: {}",
        pst.state
    );
    assert_eq!(
        pst.facts["mntns"], host_mnt,
        "poststop is not in the runtime mount ns"
    );
    assert_eq!(
        pst.facts["state_dir"], "gone",
        "poststop ran before the state dir was removed"
    );
}
e2e!(
    hooks_at_their_points,
    runc_hooks_at_their_points,
    capsa_hooks_at_their_points
);

/// A failing createRuntime hook fails the create and leaves nothing: no init, no state dir.
fn failing_create_runtime_hook(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    let id = unique_id("hookfail");
    b.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
    });
    b.args(&["sleep", "1000"]);
    let (o, pid) = r.create(&b, &id, &[]);
    assert!(!o.ok(), "create succeeded although createRuntime failed");
    if pid > 0 {
        assert!(
            common::proc::gone_or_zombie(pid),
            "the init {pid} survived a failed createRuntime hook"
        );
    }
    if rt == Runtime::Capsa {
        let left = common::leftovers(&r, &id, b.path());
        assert!(left.is_empty(), "left behind: {left:?}");
        // create's stderr goes to the container log (the runner's create keeps stdio there).
        let text = r.read_container_log(&id).to_lowercase();
        assert!(text.contains("createruntime hook failed"), "{text}");
    }
}
e2e!(
    failing_create_runtime_hook,
    runc_failing_create_runtime_hook,
    capsa_failing_create_runtime_hook
);
