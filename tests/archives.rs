//! Archive round trips: `capsa save` loaded by `podman load` (private storage root, vfs
//! driver: no mounts to clean up), and archives written by podman (`oci-archive`,
//! `docker-archive`) and skopeo (`docker-archive:`) loaded by `capsa load`. Needs root.

mod registry_support;

use std::path::Path;
use std::process::Command;

use registry_support::*;

fn skip() -> bool {
    if !is_root() || !have("podman") || !have("skopeo") {
        eprintln!("skipped: needs root, podman and skopeo");
        return true;
    }
    false
}

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
        ]);
    c
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
}

#[test]
fn podman_and_skopeo_archives_load_into_capsa() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
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
    // A gzip-compressed docker save loads too.
    let gz = tmp.path().join("skopeo-docker.tar.gz");
    std::fs::write(
        &gz,
        compress(&std::fs::read(&dock).expect("read"), Comp::Gzip),
    )
    .expect("write");
    ok(&capsa(
        &tmp.path().join("store-gz"),
        &["load", "-i", gz.to_str().expect("utf8")],
        &[],
    ));
}
