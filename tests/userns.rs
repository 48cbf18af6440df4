//! User namespaces end to end (root): container root is an unprivileged uid on the host, its
//! image is idmapped instead of chowned, SYS_ADMIN stays inside, `--userns=auto` ranges never
//! overlap, and every refusal says what is missing and leaves nothing behind.
//!
//! These tests create the `capsa` system user with a subordinate range on first use (what
//! `--userns-remap=default` does for users, as dockerd does with `dockremap`); the user and its
//! /etc/subuid and /etc/subgid lines are kept, as a package install would keep them.

#[path = "run_support/mod.rs"]
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Env, env, name};

const IMAGE: &str = "capsa-userns-test:1";
const PRIVILEGED_ERROR: &str = "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode";

/// The support env plus an image with the applets these tests need (mount, insmod, stat...).
fn userns_env() -> Option<Env> {
    let env = env()?;
    let src = env.root.path().join("userns-src");
    support::build_rootfs(&src);
    for a in ["mount", "umount", "mkdir", "stat", "insmod", "cut", "head"] {
        std::os::unix::fs::symlink("busybox", src.join("bin").join(a)).expect("symlink");
    }
    let tar = env.root.path().join("userns.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    env.ok(&["import", tar.to_str().expect("utf8"), IMAGE]);
    std::fs::remove_dir_all(&src).expect("remove image source");
    Some(env)
}

/// The first host uid of the `capsa` user's subordinate range (after a remapped run made it).
fn capsa_range_start() -> u32 {
    let text = std::fs::read_to_string("/etc/subuid").expect("subuid");
    text.lines()
        .find_map(|l| l.strip_prefix("capsa:"))
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
        .expect("capsa has a subordinate uid range")
}

fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("key")
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect()
}

fn uid_map(pid: i32) -> (u64, u64) {
    let m = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let f: Vec<u64> = m
        .split_whitespace()
        .map(|n| n.parse().expect("n"))
        .collect();
    assert_eq!(f.len(), 3, "one mapping line expected: {m}");
    (f[1], f[2])
}

/// A 0777 directory with a root-owned 0644 file, for bind mounts.
fn volume(env: &Env) -> PathBuf {
    let dir = env.root.path().join(format!("vol-{}", name("v")));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(dir.join("hostfile"), "host\n").expect("write");
    std::fs::set_permissions(dir.join("hostfile"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    dir
}

#[test]
fn remapped_root_is_an_unprivileged_uid_on_the_host() {
    let Some(env) = userns_env() else { return };
    let vol = volume(&env);
    let n = name("remap");
    let v = format!("{}:/vol", vol.display());
    env.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "--userns-remap=default",
        "-v",
        &v,
        IMAGE,
        "sleep",
        "30",
    ]);
    let base = capsa_range_start();
    let pid = env.pid(&n);
    // The host sees the mapped uid in every field of the Uid line.
    assert_eq!(status_ids(pid, "Uid:"), vec![base; 4]);
    assert_eq!(status_ids(pid, "Gid:"), vec![base; 4]);
    // Inside it is root and owns its image files (idmapped, never chowned).
    let inside = env.ok(&[
        "exec",
        &n,
        "sh",
        "-c",
        "id -u; stat -c %u /bin/busybox /etc/passwd; touch /vol/made-inside",
    ]);
    assert_eq!(inside, "0\n0\n0\n");
    assert_eq!(
        std::fs::metadata(vol.join("made-inside"))
            .expect("made")
            .uid(),
        base
    );
    // The image's files on disk still belong to uid 0.
    let layers = env.root.path().join("layers");
    let busybox = find_file(&layers, "busybox").expect("busybox in a layer");
    assert_eq!(std::fs::metadata(&busybox).expect("stat").uid(), 0);
    // Inspection says which namespace the caps are scoped to.
    let ins = env.inspect(&n);
    assert_eq!(ins["HostConfig"]["UsernsMode"], "remap:capsa:capsa");
    assert_eq!(ins["Capsa"]["UserNamespace"]["initial"], false);
    assert_eq!(
        ins["Capsa"]["UserNamespace"]["uid_map"][0]["outer"].as_u64(),
        Some(u64::from(base))
    );
    let caps = env.ok(&["caps", "pid", "--userns", &pid.to_string()]);
    assert!(caps.contains("not the initial one"), "{caps}");
    assert!(caps.contains(&format!("0->{base} (65536)")), "{caps}");
    let id = ins["Id"].as_str().expect("id").to_string();
    env.ok(&["rm", "-f", &n]);
    env.assert_gone(&id);
}

fn find_file(dir: &Path, file: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let p = e.path();
        if e.file_name() == file && p.is_file() {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir()
            && let Some(f) = find_file(&p, file)
        {
            return Some(f);
        }
    }
    None
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn sys_admin_under_remapping_stays_inside() {
    let Some(env) = userns_env() else { return };
    let vol = volume(&env);
    let v = format!("{}:/vol", vol.display());
    std::fs::write(vol.join("fake.ko"), b"not a module").expect("ko");
    let before = hostname();
    // SYS_MODULE too: the default seccomp profile then allows init_module/finit_module, so the
    // refusal below is the kernel's user-namespace rule, not seccomp's.
    let out = env.capsa(&[
        "run",
        "--rm",
        "--userns-remap=default",
        "--cap-add=SYS_ADMIN",
        "--cap-add=SYS_MODULE",
        "-v",
        &v,
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo tmpfs=ok; \
         echo x >> /vol/hostfile && echo write=ok || echo write=denied; \
         insmod /vol/fake.ko && echo insmod=ok || echo insmod=denied; \
         hostname evil-host && echo hostname=$(hostname)",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("tmpfs=ok"), "{stdout}{stderr}");
    assert!(stdout.contains("write=denied"), "{stdout}{stderr}");
    assert!(stdout.contains("insmod=denied"), "{stdout}{stderr}");
    // With module support the kernel refuses with EPERM (may_init_module checks the initial
    // user namespace); a kernel built without modules (no /proc/modules) says ENOSYS to anyone.
    let want = if Path::new("/proc/modules").exists() {
        "Operation not permitted"
    } else {
        "kernel does not support requested operation"
    };
    assert!(stderr.contains(want), "insmod: want {want:?}: {stderr}");
    // The container's own UTS namespace changed, the host's did not.
    assert!(stdout.contains("hostname=evil-host"), "{stdout}");
    assert_eq!(hostname(), before);
    assert_eq!(
        std::fs::read_to_string(vol.join("hostfile")).expect("read"),
        "host\n"
    );
    assert!(env.ids().is_empty());
}

#[test]
fn auto_ranges_are_disjoint_even_when_started_together() {
    let Some(env) = userns_env() else { return };
    let names: Vec<String> = (0..2).map(|i| name(&format!("auto{i}"))).collect();
    let env_ref = &env;
    std::thread::scope(|s| {
        for n in &names {
            s.spawn(move || {
                env_ref.ok(&[
                    "run",
                    "-d",
                    "--name",
                    n,
                    "--userns=auto",
                    IMAGE,
                    "sleep",
                    "30",
                ]);
            });
        }
    });
    let ranges: Vec<(u64, u64)> = names.iter().map(|n| uid_map(env.pid(n))).collect();
    let (a, b) = (ranges[0], ranges[1]);
    assert!(
        a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
        "ranges overlap: {a:?} {b:?}"
    );
    let alloc = std::fs::read_to_string(env.root.path().join("userns-ranges.json")).expect("file");
    let v: serde_json::Value = serde_json::from_str(&alloc).expect("json");
    assert_eq!(v["allocations"].as_array().map(Vec::len), Some(2));
    for n in &names {
        env.ok(&["rm", "-f", n]);
    }
    let alloc = std::fs::read_to_string(env.root.path().join("userns-ranges.json")).expect("file");
    let v: serde_json::Value = serde_json::from_str(&alloc).expect("json");
    assert_eq!(
        v["allocations"].as_array().map(Vec::len),
        Some(0),
        "ranges are freed on rm"
    );
}

/// Bytes used under `dir` (allocated blocks, like `du`), hard links counted once.
fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1", "-x"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du output")
}

#[test]
fn different_mappings_share_one_image_without_copies() {
    let Some(env) = userns_env() else { return };
    let layers = env.root.path().join("layers");
    let image_bytes = du(&layers);
    assert!(
        image_bytes > 500_000,
        "busybox image is {image_bytes} bytes"
    );
    let (a, b, c) = (name("map-a"), name("map-b"), name("map-c"));
    env.ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "--userns-remap=default",
        IMAGE,
        "sleep",
        "30",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--userns=auto",
        IMAGE,
        "sleep",
        "30",
    ]);
    env.ok(&["run", "-d", "--name", &c, IMAGE, "sleep", "30"]);
    let (ma, mb) = (uid_map(env.pid(&a)), uid_map(env.pid(&b)));
    assert_ne!(ma.0, mb.0, "two different mappings");
    for n in [&a, &b, &c] {
        let out = env.ok(&["exec", n, "stat", "-c", "%u", "/bin/busybox"]);
        assert_eq!(out, "0\n", "{n} sees its image as root's");
    }
    // No container copied the image: the layers are unchanged and every container's own
    // directory holds a few small files only.
    assert_eq!(du(&layers), image_bytes);
    let containers = du(&env.root.path().join("containers"));
    assert!(
        containers < image_bytes / 2,
        "containers use {containers} bytes for a {image_bytes}-byte image"
    );
    for n in [&a, &b, &c] {
        env.ok(&["rm", "-f", n]);
    }
}

#[test]
fn refusals_say_what_is_missing_and_leave_nothing() {
    let Some(env) = userns_env() else { return };
    let fail = |args: &[&str], want: &str| {
        let out = env.capsa(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(env.ids().is_empty(), "{args:?} left a container");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root = env.root.path().to_string_lossy().into_owned();
        assert!(!mounts.contains(&root), "{args:?} left a mount");
    };
    fail(
        &[
            "run",
            "--rm",
            "--privileged",
            "--userns-remap=default",
            IMAGE,
            "true",
        ],
        &format!("capsa: {PRIVILEGED_ERROR}\n"),
    );
    fail(
        &["create", "--privileged", "--userns=auto", IMAGE, "true"],
        PRIVILEGED_ERROR,
    );
    fail(
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "--userns=auto",
            IMAGE,
            "true",
        ],
        "cannot share the host's network namespace when user namespaces are enabled",
    );
    fail(
        &["run", "--rm", "--userns-remap=nobody", IMAGE, "true"],
        "no subordinate uid ranges for \"nobody\" in /etc/subuid: add one with `usermod --add-subuids",
    );
    fail(
        &["run", "--rm", "--userns=private", IMAGE, "true"],
        "--userns: invalid USER mode \"private\"",
    );
    fail(
        &["run", "--rm", "--userns=auto:size=0", IMAGE, "true"],
        "invalid auto option",
    );
    // --userns=host is the opt-out: privileged works again.
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        "--userns=host",
        "--userns-remap=default",
        IMAGE,
        "id",
        "-u",
    ]);
    assert_eq!(out, "0\n");
}

#[test]
fn the_system_config_sets_defaults_and_refuses_unknown_keys() {
    let Some(env) = userns_env() else { return };
    let cfg = env.root.path().join("capsa.toml");
    std::fs::write(
        &cfg,
        "userns-remap = \"default\"\ncapabilities = \"podman\"\n",
    )
    .expect("cfg");
    let c = cfg.to_str().expect("utf8");
    let base = capsa_range_start();
    let n = name("cfg");
    env.ok(&[
        "--config", c, "run", "-d", "--name", &n, IMAGE, "sleep", "30",
    ]);
    let pid = env.pid(&n);
    assert_eq!(status_ids(pid, "Uid:")[0], base);
    // podman's 11 caps (mask 0x800405fb).
    assert_eq!(support::caps_of(pid).bnd, 0x8004_05fb);
    env.ok(&["rm", "-f", &n]);
    // --userns=host opts out of the configured remapping (CAPSA_CONFIG works like --config).
    let out = env
        .cmd(&[
            "run",
            "--rm",
            "--userns=host",
            IMAGE,
            "cat",
            "/proc/self/uid_map",
        ])
        .env("CAPSA_CONFIG", c)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("4294967295"));
    // An unknown key names itself and the file.
    std::fs::write(&cfg, "userns_remap = \"default\"\n").expect("cfg");
    let out = env.capsa(&["--config", c, "run", "--rm", IMAGE, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(err.contains(c) && err.contains("userns_remap"), "{err}");
    assert!(env.ids().is_empty());
}

/// The runtime alone, through the runc CLI: linux.uidMappings, an idmapped rootfs directory
/// (annotation) and an idmapped bind mount (the OCI mount uidMappings extension).
#[test]
fn runc_cli_idmaps_rootfs_and_volumes() {
    let Some(env) = userns_env() else { return };
    let bundle = env.root.path().join("bundle");
    support::build_rootfs(&bundle.join("rootfs"));
    std::os::unix::fs::symlink("busybox", bundle.join("rootfs/bin/stat")).expect("symlink");
    let vol = volume(&env);
    let mapped = vol.join("mapped");
    std::fs::create_dir(&mapped).expect("mkdir");
    std::fs::write(mapped.join("f"), "x").expect("write");
    let plain = format!("{}", vol.display());
    let map = serde_json::json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh", "-c",
            "stat -c %u /bin/busybox /m/f; touch /new /vol/new /m/new"],
            "env": ["PATH=/bin"]},
        "root": {"path": "rootfs"},
        "annotations": {"org.capsa.rootfs.idmap": "true"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/vol", "type": "bind", "source": plain, "options": ["rbind"]},
            {"destination": "/m", "type": "bind", "source": mapped, "options": ["bind", "idmap"],
             "uidMappings": map, "gidMappings": map}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "user"}, {"type": "network"}],
            "uidMappings": map, "gidMappings": map
        }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config");
    let state = env.root.path().join("runc-state");
    let id = name("runc");
    let out = Command::new(&env.bin)
        .args(["runc", "--root"])
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .expect("capsa runc");
    let _ = Command::new(&env.bin)
        .args(["runc", "--root"])
        .arg(&state)
        .args(["delete", "-f", &id])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "0\n0\n");
    let uid = |p: &Path| std::fs::metadata(p).expect("stat").uid();
    // Through idmapped mounts, container root writes on-disk uid 0; through the plain bind, the
    // host sees the mapped uid.
    assert_eq!(uid(&bundle.join("rootfs/new")), 0);
    assert_eq!(uid(&mapped.join("new")), 0);
    assert_eq!(uid(&vol.join("new")), 300000);
    let f: serde_json::Value =
        serde_json::from_str(&env.ok(&["runc", "features"])).expect("features");
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
}

/// A store on a filesystem that cannot be idmapped (ramfs): the error names the call, the
/// filesystem and the way out, and the failed run leaves no container, state or mount.
#[test]
fn unsupported_filesystem_is_named_and_nothing_is_left() {
    let Some(env) = userns_env() else { return };
    let store = env.root.path().join("ramfs-store");
    std::fs::create_dir(&store).expect("mkdir");
    rustix::mount::mount(
        "ramfs",
        &store,
        "ramfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mount ramfs");
    let s = store.to_str().expect("utf8");
    let tar = env.root.path().join("userns.tar");
    env.ok(&[
        "--root",
        s,
        "import",
        tar.to_str().expect("utf8"),
        "ramfs:1",
    ]);
    let out = env.capsa(&[
        "--root",
        s,
        "run",
        "--rm",
        "--userns-remap=default",
        "ramfs:1",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    for want in [
        "cannot idmap (mount_setattr MOUNT_ATTR_IDMAP)",
        "EINVAL",
        "the ramfs filesystem does not support idmapped mounts",
        "use --userns=host",
    ] {
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    let left = std::fs::read_dir(store.join("containers"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().len() == 64)
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "a container directory is left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let under: Vec<&str> = mounts.lines().filter(|l| l.contains(s)).collect();
    assert_eq!(under.len(), 1, "only the ramfs itself: {under:?}");
    // Without remapping the same store works.
    assert_eq!(
        env.ok(&["--root", s, "run", "--rm", "ramfs:1", "echo", "ok"]),
        "ok\n"
    );
    rustix::mount::unmount(&store, rustix::mount::UnmountFlags::DETACH).expect("umount");
}

#[path = "registry_support/mod.rs"]
mod registry_support;

/// A two-layer image loaded from an OCI archive: the base has /opq/old, the top layer makes
/// /opq opaque (`.wh..wh..opq`) and adds /opq/new. Returns the top layer's directory.
fn opaque_image(env: &Env, tag: &str) -> PathBuf {
    let base = env.root.path().join("opq-base");
    support::build_rootfs(&base);
    std::fs::create_dir_all(base.join("opq")).expect("mkdir");
    std::fs::write(base.join("opq/old"), "hidden by the opaque dir\n").expect("write");
    let top = env.root.path().join("opq-top");
    std::fs::create_dir_all(top.join("opq")).expect("mkdir");
    std::fs::write(top.join("opq/.wh..wh..opq"), "").expect("write");
    std::fs::write(top.join("opq/new"), "new\n").expect("write");
    let mut layout = registry_support::Layout::new(&env.root.path().join("opq-oci"));
    let img = layout.image(
        &[
            (
                registry_support::tar_dir(&base),
                registry_support::Comp::Gzip,
            ),
            (
                registry_support::tar_dir(&top),
                registry_support::Comp::Plain,
            ),
        ],
        "amd64",
    );
    layout.tag_image("1", &img);
    let archive = env.root.path().join("opq-oci.tar");
    registry_support::run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout.dir)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    let out = env.ok(&["load", "-i", archive.to_str().expect("utf8")]);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .unwrap_or_else(|| panic!("no image ID in {out:?}"));
    env.ok(&["tag", id, tag]);
    for d in [&base, &top, &layout.dir, &archive] {
        let _ = std::fs::remove_dir_all(d).or_else(|_| std::fs::remove_file(d));
    }
    env.root
        .path()
        .join("layers")
        .join(img.diff_ids[1].trim_start_matches("sha256:"))
}

/// An overlay mounted inside the user namespace (`userxattr`) reads `user.overlay.opaque`,
/// not `trusted.overlay.opaque`: capsa-image writes both, and upgrades layers that an older
/// capsa unpacked with only the trusted one when a container first uses them.
#[test]
fn opaque_dirs_hide_lower_files_in_remapped_containers_too() {
    let Some(env) = env() else { return };
    let tag = "capsa-userns-opaque:1";
    let layer = opaque_image(&env, tag);
    let ls = |remap: bool| {
        let mut args = vec!["run", "--rm"];
        if remap {
            args.push("--userns-remap=default");
        }
        args.extend([tag, "ls", "-a", "/opq"]);
        env.ok(&args)
    };
    assert_eq!(
        ls(false),
        ".\n..\nnew\n",
        "host overlay (trusted.overlay.opaque)"
    );
    assert_eq!(
        ls(true),
        ".\n..\nnew\n",
        "userxattr overlay (user.overlay.opaque)"
    );
    let opq = layer.join("root/opq");
    let read = |key: &str| {
        let mut buf = [0u8; 8];
        rustix::fs::lgetxattr(&opq, key, &mut buf).map(|n| buf[..n].to_vec())
    };
    assert_eq!(read("user.overlay.opaque").as_deref(), Ok(&b"y"[..]));
    assert!(
        layer.join("user-opaque").is_file(),
        "fresh layers carry the marker"
    );
    // Without the user.* xattr (the marker still claiming it), the kernel shows the lower
    // file to the userxattr overlay: the user.* xattr is what it reads.
    rustix::fs::lremovexattr(&opq, "user.overlay.opaque").expect("removexattr");
    assert_eq!(
        ls(true),
        ".\n..\nnew\nold\n",
        "userxattr overlay without the user xattr"
    );
    assert_eq!(
        ls(false),
        ".\n..\nnew\n",
        "the host overlay needs only trusted.*"
    );
    // A layer as an older capsa left it: only the trusted xattr, no marker.
    std::fs::remove_file(layer.join("user-opaque")).expect("remove marker");
    assert_eq!(ls(true), ".\n..\nnew\n", "after the lazy upgrade");
    assert_eq!(read("user.overlay.opaque").as_deref(), Ok(&b"y"[..]));
    assert_eq!(read("trusted.overlay.opaque").as_deref(), Ok(&b"y"[..]));
    assert!(
        layer.join("user-opaque").is_file(),
        "the upgrade writes the marker"
    );
}
