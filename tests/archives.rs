//! Archive round trips, each image run on both sides: `capsa save` loaded by `podman load`
//! (private storage root, vfs driver) and run by `podman run`, and imported by `ctr image
//! import` into a private containerd and run by `ctr run`; archives written by podman
//! (`oci-archive`, `docker-archive`) and skopeo (`docker-archive:`) loaded by `capsa load`
//! and run by `capsa run --rm`. Needs root.
//!
//! Owns its temp dirs (stores, podman roots), the mounts under them (a guard detaches what a
//! failed run left), the podman containers' cgroup parent (a unique name, removed), and the
//! private containerd of tests/common/containerd.rs.

#[path = "common/mod.rs"]
mod common;
mod registry_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use registry_support::*;

fn skip() -> bool {
    if !is_root() || !have("podman") || !have("skopeo") || !have("runc") {
        eprintln!("skipped: needs root, podman, skopeo and runc");
        return true;
    }
    false
}

/// podman with private storage. It runs containers with runc: podman's default, crun,
/// refuses this host's hybrid cgroup layout.
fn podman(tmp: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(tmp.join("podman-root"))
        .arg("--runroot")
        .arg(tmp.join("podman-run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
            "--runtime",
        ])
        .arg(common::find_in_path("runc").unwrap_or_else(|| PathBuf::from("runc")));
    c
}

/// Detaches every mount left under the temp dir and removes the cgroups named `cgroup`
/// (podman's `--cgroup-parent`), even when an assertion failed.
struct Cleanup {
    dir: PathBuf,
    cgroup: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.dir.to_string_lossy().into_owned();
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|mp| mp.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        // podman puts conmon in a `conmon` child of the parent: remove the whole subtree,
        // deepest first (rmdir of a cgroup with tasks fails, which is the safe outcome).
        for d in common::proc::cgroup_dirs_named(&self.cgroup) {
            remove_cgroup_tree(&d);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn cleanup(tmp: &Path) -> Cleanup {
    Cleanup {
        dir: tmp.to_path_buf(),
        cgroup: common::unique_id("archives"),
    }
}

/// `podman run --rm` of `image` in a private network namespace; returns its stdout.
/// The ulimits are explicit because podman's defaults raise them, which needs
/// CAP_SYS_RESOURCE, and this host's bounding set lacks it.
fn podman_run(tmp: &Path, guard: &Cleanup, image: &str) -> String {
    run(podman(tmp)
        .args(["run", "--rm", "--network", "none"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .arg(format!("--cgroup-parent=/{}", guard.cgroup))
        .arg(image))
}

/// `capsa run --rm` of `image` from `store` (its default command); returns its stdout.
/// Its runtime state goes to `<store>/run`.
fn capsa_run(store: &Path, image: &str) -> String {
    let out = Command::new(CAPSA)
        .arg("--root")
        .arg(store)
        .args(["run", "--rm", image])
        .env_remove("CAPSA_STATE_ROOT")
        .output()
        .expect("run capsa");
    ok(&out)
}

/// A busybox rootfs with a marker file, imported into capsa as `name`.
fn import_busybox(tmp: &Path, store: &Path, name: &str) {
    let root = tmp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    for a in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("symlink");
    }
    std::fs::write(root.join("hello"), b"from capsa\n").expect("hello");
    let tarball = tmp.join("rootfs.tar");
    std::fs::write(&tarball, tar_dir(&root)).expect("tar");
    ok(&capsa(
        store,
        &[
            "import",
            tarball.to_str().expect("utf8"),
            name,
            "--change",
            "CMD [\"/bin/cat\",\"/hello\"]",
        ],
        &[],
    ));
}

/// The file `rel` in the (single-layer) image `name` of a capsa store.
fn read_in_image(store: &Path, name: &str, rel: &str) -> Vec<u8> {
    let out = ok(&capsa(store, &["images", "--format", "json", name], &[]));
    let v: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("one image")).expect("json");
    for l in v["Layers"].as_array().expect("layers").iter().rev() {
        let p = layer_root(store, l.as_str().expect("diff id")).join(rel);
        if let Ok(d) = std::fs::read(&p) {
            return d;
        }
    }
    panic!("{rel} not found in {name}");
}

#[test]
fn capsa_save_is_loaded_by_podman_and_back_by_capsa() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let guard = cleanup(tmp.path());
    let store = tmp.path().join("store");
    let name = "localhost/capsa-archives/bb:1";
    import_busybox(tmp.path(), &store, name);
    let archive = tmp.path().join("capsa.tar");
    ok(&capsa(
        &store,
        &["save", "-o", archive.to_str().expect("utf8"), name],
        &[],
    ));
    let out = run(podman(tmp.path()).arg("load").arg("-i").arg(&archive));
    assert!(
        out.contains("capsa-archives/bb:1"),
        "podman load said: {out}"
    );
    let images = run(podman(tmp.path()).args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(images.contains("localhost/capsa-archives/bb:1"), "{images}");
    // podman's own view of the content: export the image's filesystem and read the file.
    let cid = run(podman(tmp.path()).args(["create", name]));
    let exported = tmp.path().join("export.tar");
    run(podman(tmp.path())
        .args(["export", "-o"])
        .arg(&exported)
        .arg(cid.trim()));
    let listing = run(Command::new("tar")
        .arg("-xOf")
        .arg(&exported)
        .arg("hello")
        .stdin(std::process::Stdio::null())
        .env("LC_ALL", "C"));
    assert_eq!(listing, "from capsa\n");
    run(podman(tmp.path()).args(["rm", cid.trim()]));
    // podman runs it: CMD ["/bin/cat","/hello"] from the image config.
    assert_eq!(podman_run(tmp.path(), &guard, name), "from capsa\n");
    // And the same archive loads into a fresh capsa store.
    let store2 = tmp.path().join("store2");
    let out = ok(&capsa(
        &store2,
        &["load", "-i", archive.to_str().expect("utf8")],
        &[],
    ));
    assert!(
        out.contains("Loaded image: localhost/capsa-archives/bb:1"),
        "{out}"
    );
    assert_eq!(read_in_image(&store2, name, "hello"), b"from capsa\n");
    assert_store_consistent(&store2);
    assert_eq!(capsa_run(&store2, name), "from capsa\n");
}

#[test]
fn podman_and_skopeo_archives_load_into_capsa() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let _guard = cleanup(tmp.path());
    let store = tmp.path().join("store");
    let name = "localhost/capsa-archives/src:1";
    import_busybox(tmp.path(), &store, name);
    let archive = tmp.path().join("capsa.tar");
    ok(&capsa(
        &store,
        &["save", "-o", archive.to_str().expect("utf8"), name],
        &[],
    ));
    run(podman(tmp.path()).arg("load").arg("-i").arg(&archive));
    for format in ["oci-archive", "docker-archive"] {
        let out = tmp.path().join(format!("podman-{format}.tar"));
        run(podman(tmp.path())
            .args(["save", "--format", format, "-o"])
            .arg(&out)
            .arg(name));
        let s = tmp.path().join(format!("store-{format}"));
        let said = ok(&capsa(
            &s,
            &["load", "-i", out.to_str().expect("utf8")],
            &[],
        ));
        assert!(said.contains("Loaded image"), "{format}: {said}");
        assert_eq!(
            read_in_image(&s, name, "hello"),
            b"from capsa\n",
            "{format}"
        );
        assert_store_consistent(&s);
        assert_eq!(capsa_run(&s, name), "from capsa\n", "{format}");
    }
    // skopeo's docker-archive (the classic `docker save` layout: <id>/layer.tar, repositories).
    let oci = tmp.path().join("oci");
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg({
        std::fs::create_dir_all(&oci).expect("mkdir");
        &oci
    }));
    let dock = tmp.path().join("skopeo-docker.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:1", oci.display()))
        .arg(format!(
            "docker-archive:{}:capsa-archives/skopeo:2",
            dock.display()
        )));
    let s = tmp.path().join("store-skopeo");
    let said = ok(&capsa(
        &s,
        &["load", "-i", dock.to_str().expect("utf8")],
        &[],
    ));
    assert!(
        said.contains("Loaded image: capsa-archives/skopeo:2"),
        "{said}"
    );
    assert_eq!(
        read_in_image(&s, "capsa-archives/skopeo:2", "hello"),
        b"from capsa\n"
    );
    assert_eq!(capsa_run(&s, "capsa-archives/skopeo:2"), "from capsa\n");
    // A gzip-compressed docker save loads too.
    let gz = tmp.path().join("skopeo-docker.tar.gz");
    std::fs::write(
        &gz,
        compress(&std::fs::read(&dock).expect("read"), Comp::Gzip),
    )
    .expect("write");
    let s = tmp.path().join("store-gz");
    ok(&capsa(&s, &["load", "-i", gz.to_str().expect("utf8")], &[]));
    assert_eq!(capsa_run(&s, "capsa-archives/skopeo:2"), "from capsa\n");
}

#[test]
fn capsa_save_is_imported_and_run_by_ctr() {
    if !is_root() || !have("runc") {
        eprintln!("skipped: needs root and runc");
        return;
    }
    let engine = match common::containerd::Containerd::start() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("skipped: containerd cannot start here: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let _guard = cleanup(tmp.path());
    let store = tmp.path().join("store");
    let name = "localhost/capsa-archives/ctr:1";
    import_busybox(tmp.path(), &store, name);
    let archive = tmp.path().join("capsa.tar");
    ok(&capsa(
        &store,
        &["save", "-o", archive.to_str().expect("utf8"), name],
        &[],
    ));
    // ctr names the image from the index's io.containerd.image.name annotation.
    let imported = engine.ctr(&["images", "import", &archive.to_string_lossy()]);
    imported.assert_ok("ctr images import");
    let listed = engine.ctr(&["images", "ls", "-q"]);
    assert!(listed.stdout.lines().any(|l| l == name), "{listed}");
    // ctr runs it with its default runtime (runc): the image config's CMD prints the file.
    let id = common::unique_id("ctr");
    let out = engine.ctr(&["run", "--rm", name, &id]);
    out.assert_ok("ctr run");
    assert_eq!(out.stdout, "from capsa\n", "{out}");
}
