//! `capsa pull`, `push`, `login` and `logout` against a real registry: the Debian
//! `docker-registry` binary, started per test on a loopback port with its own config file and
//! storage in a temp dir, and killed by its PID. Needs root (layers keep owners, xattrs and
//! whiteout device nodes).

mod registry_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registry_support::*;

fn skip() -> bool {
    if !is_root() || !have("docker-registry") || !have("skopeo") {
        eprintln!("skipped: needs root, docker-registry and skopeo");
        return true;
    }
    false
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// Three layers (gzip, zstd, plain): a base, then a whiteout and an opaque dir, then more.
fn layered_image(tmp: &Path, layout: &Layout) -> Built {
    let l1 = tmp.join("l1");
    write(
        &l1.join("bin/busybox"),
        &std::fs::read("/bin/busybox").expect("busybox"),
    );
    write(&l1.join("etc/gone"), b"removed by layer 2\n");
    write(&l1.join("opq/old"), b"hidden by the opaque dir\n");
    write(&l1.join("keep/a"), b"a\n");
    let l2 = tmp.join("l2");
    write(&l2.join("etc/.wh.gone"), b"");
    write(&l2.join("opq/.wh..wh..opq"), b"");
    write(&l2.join("opq/new"), b"new\n");
    let l3 = tmp.join("l3");
    write(&l3.join("keep/b"), b"b\n");
    layout.image(
        &[
            (tar_dir(&l1), Comp::Gzip),
            (tar_dir(&l2), Comp::Zstd),
            (tar_dir(&l3), Comp::Plain),
        ],
        "amd64",
    )
}

#[test]
fn pull_oci_and_v2s2_with_gzip_zstd_plain_layers_whiteouts_and_opaque_dirs() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = layered_image(tmp.path(), &layout);
    layout.tag_image("v1", &img);
    skopeo_push(
        &layout.dir,
        "v1",
        &format!("{}/t/layered:oci", reg.host()),
        &[],
    );
    // Docker schema 2 cannot carry zstd: a gzip-only image for it.
    let simple = layout.image(&[(tar_dir(&tmp.path().join("l1")), Comp::Gzip)], "amd64");
    layout.tag_image("v2", &simple);
    skopeo_push(
        &layout.dir,
        "v2",
        &format!("{}/t/simple:v2s2", reg.host()),
        &["--format", "v2s2"],
    );

    let store = tmp.path().join("store");
    let out = ok(&capsa(
        &store,
        &["pull", &format!("{}/t/layered:oci", reg.host())],
        &[],
    ));
    assert_eq!(out.trim(), format!("{}/t/layered:oci", reg.host()));
    // The image record lists the layers by the diff IDs we built, in order.
    let images = ok(&capsa(&store, &["images", "--format", "json"], &[]));
    assert!(
        images.contains(&format!("{:?}", img.diff_ids).replace(' ', "")),
        "{images}"
    );
    let (d1, d2, d3) = (&img.diff_ids[0], &img.diff_ids[1], &img.diff_ids[2]);
    let busybox =
        std::fs::read(layer_root(&store, d1).join("bin/busybox")).expect("busybox unpacked");
    assert_eq!(busybox, std::fs::read("/bin/busybox").expect("busybox"));
    // The whiteout became an overlayfs whiteout: a char device 0:0.
    let wh = std::fs::symlink_metadata(layer_root(&store, d2).join("etc/gone")).expect("whiteout");
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is not a 0:0 char device"
    );
    // The opaque marker became trusted.overlay.opaque=y and user.overlay.opaque=y on its dir.
    for key in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(layer_root(&store, d2).join("opq"), key, &mut buf)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(&buf[..n], b"y", "{key}");
    }
    assert!(layer_root(&store, d2).join("opq/new").is_file());
    assert_eq!(
        std::fs::read(layer_root(&store, d3).join("keep/b")).expect("b"),
        b"b\n"
    );
    ok(&capsa(
        &store,
        &["pull", &format!("{}/t/simple:v2s2", reg.host())],
        &[],
    ));
    let images = ok(&capsa(&store, &["images", "--format", "json"], &[]));
    assert!(images.contains("v2s2"), "{images}");
    assert_store_consistent(&store);
    // Nothing is left in staging after successful pulls.
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).expect("tmp").count(),
        0
    );
}

#[test]
fn pull_picks_the_platform_from_an_index() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let mut manifests = Vec::new();
    let mut built = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))] {
        let d = tmp.path().join(format!("rootfs-{arch}"));
        write(&d.join("arch"), arch.as_bytes());
        let b = layout.image(&[(tar_dir(&d), Comp::Gzip)], arch);
        let mut p = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        manifests.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": b.digest, "size": b.manifest.len(), "platform": p}),
        );
        built.push((arch, b));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
    .expect("json");
    let idx = layout.blob(&index);
    layout.tag(
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &idx,
        index.len(),
    );
    skopeo_push(
        &layout.dir,
        "multi",
        &format!("{}/t/multi:1", reg.host()),
        &["--all"],
    );
    for (platform, arch) in [
        (None, "amd64"),
        (Some("linux/arm64"), "arm64"),
        (Some("linux/arm/v7"), "arm"),
    ] {
        let store = tmp.path().join(format!("store-{arch}"));
        let name = format!("{}/t/multi:1", reg.host());
        let mut args = vec!["pull", name.as_str()];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        ok(&capsa(&store, &args, &[]));
        let b = &built.iter().find(|(a, _)| *a == arch).expect("built").1;
        let got =
            std::fs::read(layer_root(&store, &b.diff_ids[0]).join("arch")).expect("arch file");
        assert_eq!(
            got,
            arch.as_bytes(),
            "--platform {platform:?} picked the wrong image"
        );
    }
    let store = tmp.path().join("store-none");
    let e = err(&capsa(
        &store,
        &[
            "pull",
            &format!("{}/t/multi:1", reg.host()),
            "--platform",
            "linux/s390x",
        ],
        &[],
    ));
    assert!(
        e.contains("no manifest for platform linux/s390x") && e.contains("linux/arm64/v8"),
        "{e}"
    );
}

#[test]
fn file_capabilities_survive_the_pull() {
    if skip() || !have("setcap") || !have("getcap") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let root = tmp.path().join("rootfs");
    write(
        &root.join("bin/ping"),
        &std::fs::read("/bin/busybox").expect("busybox"),
    );
    run(Command::new("setcap")
        .args(["cap_net_bind_service=+ep"])
        .arg(root.join("bin/ping")));
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = layout.image(&[(tar_dir(&root), Comp::Gzip)], "amd64");
    layout.tag_image("caps", &img);
    skopeo_push(
        &layout.dir,
        "caps",
        &format!("{}/t/caps:1", reg.host()),
        &[],
    );
    let store = tmp.path().join("store");
    ok(&capsa(
        &store,
        &["pull", &format!("{}/t/caps:1", reg.host())],
        &[],
    ));
    let caps =
        run(Command::new("getcap").arg(layer_root(&store, &img.diff_ids[0]).join("bin/ping")));
    assert!(
        caps.contains("cap_net_bind_service=ep"),
        "getcap says {caps:?}"
    );
}

#[test]
fn basic_auth_with_htpasswd_login_and_logout() {
    if skip() || !have("htpasswd") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let htpasswd = tmp.path().join("htpasswd");
    // docker-registry (distribution 2.x) accepts only bcrypt entries (-B).
    run(Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["alice", "s3cret"]));
    let reg = Registry::start(&tmp.path().join("reg"), Some(&htpasswd));
    let docker_config = tmp.path().join("docker");
    let dc = docker_config.to_str().expect("utf8");
    let env = [("DOCKER_CONFIG", dc)];
    // Push a base image with capsa itself (after login): build it with import first.
    let store = tmp.path().join("store");
    let rootfs = tmp.path().join("rootfs");
    write(&rootfs.join("hello"), b"hi\n");
    let tarball = tmp.path().join("rootfs.tar");
    std::fs::write(&tarball, tar_dir(&rootfs)).expect("tar");
    let name = format!("{}/private/img:1", reg.host());
    ok(&capsa(
        &store,
        &["import", tarball.to_str().expect("utf8"), &name],
        &env,
    ));
    let e = err(&capsa(&store, &["push", &name], &env));
    assert!(e.contains("requires authentication"), "{e}");
    let mut login = Command::new(CAPSA);
    login
        .args(["login", "-u", "alice", "--password-stdin", &reg.host()])
        .env("DOCKER_CONFIG", dc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().expect("login");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"wrong\n").expect("write");
    assert!(
        !child.wait().expect("wait").success(),
        "a wrong password must fail"
    );
    let mut child = login.spawn().expect("login");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"s3cret\n").expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Stored as Docker does: auths.<host>.auth = base64("alice:s3cret").
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(cfg["auths"][reg.host()]["auth"], "YWxpY2U6czNjcmV0");
    ok(&capsa(&store, &["push", &name], &env));
    let store2 = tmp.path().join("store2");
    ok(&capsa(&store2, &["pull", &name], &env));
    assert!(ok(&capsa(&store2, &["images"], &env)).contains("private/img"));
    let out = ok(&Command::new(CAPSA)
        .args(["logout", &reg.host()])
        .env("DOCKER_CONFIG", dc)
        .output()
        .expect("logout"));
    assert!(out.contains("Removing login credentials"), "{out}");
    let e = err(&capsa(&tmp.path().join("store3"), &["pull", &name], &env));
    assert!(
        e.contains("requires authentication") && e.contains("capsa login"),
        "{e}"
    );
}

/// The big layer of the interrupted-pull test: 160 MiB of incompressible data.
fn big_image(tmp: &Path, layout: &Layout) -> Built {
    let d = tmp.join("big");
    std::fs::create_dir_all(&d).expect("mkdir");
    run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=160", "status=none"])
        .arg(format!("of={}", d.join("blob").display())));
    layout.image(&[(tar_dir(&d), Comp::Plain)], "amd64")
}

#[test]
fn a_registry_that_dies_mid_pull_leaves_nothing_half_done_and_the_pull_resumes() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut reg = Registry::start(&tmp.path().join("reg"), None);
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = big_image(tmp.path(), &layout);
    layout.tag_image("big", &img);
    let name = format!("{}/t/big:1", reg.host());
    skopeo_push(&layout.dir, "big", &name, &[]);
    let store = tmp.path().join("store");
    let pull = Command::new(CAPSA)
        .arg("--root")
        .arg(&store)
        .args(["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pull");
    // Kill the registry once a good part of the layer has arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial_size = || -> u64 {
        std::fs::read_dir(store.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    while partial_size() < 16 << 20 {
        assert!(Instant::now() < deadline, "the pull never progressed");
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.kill();
    let o = pull.wait_with_output().expect("pull");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "the pull must fail when the registry dies; stderr: {stderr}"
    );
    assert!(
        stderr.contains("broke off") || stderr.contains("cannot fetch"),
        "{stderr}"
    );
    // No half layer or blob in the store, no image record; the partial download is kept.
    assert!(
        !store
            .join("layers")
            .join(img.diff_ids[0].trim_start_matches("sha256:"))
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(store.join("layers"))
            .expect("layers")
            .count(),
        0
    );
    let blobs: Vec<_> = std::fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .collect();
    assert!(blobs.len() <= 1, "only the config may be stored: {blobs:?}");
    let kept = partial_size();
    assert!(kept > 0, "the partial download should be kept for resuming");
    assert!(!ok(&capsa(&store, &["images", "-q"], &[])).contains(&img.digest[7..19]));
    assert_store_consistent(&store);
    reg.restart();
    let o = capsa(&store, &["pull", &name], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    ok(&o);
    assert!(
        stderr.contains("Resuming download at byte"),
        "the second pull did not resume: {stderr}"
    );
    let got = std::fs::read(layer_root(&store, &img.diff_ids[0]).join("blob")).expect("blob file");
    let want = std::fs::read(tmp.path().join("big/blob")).expect("source");
    assert!(got == want, "the resumed layer differs from the source");
    assert_eq!(partial_size(), 0);
    assert_store_consistent(&store);
}

#[test]
fn concurrent_pulls_and_a_pull_racing_rmi_keep_the_store_consistent() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = layered_image(tmp.path(), &layout);
    layout.tag_image("v1", &img);
    let name = format!("{}/t/race:1", reg.host());
    skopeo_push(&layout.dir, "v1", &name, &[]);
    let store = tmp.path().join("store");
    let spawn = || {
        Command::new(CAPSA)
            .arg("--root")
            .arg(&store)
            .args(["pull", "-q", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pull")
    };
    let (a, b) = (spawn(), spawn());
    for c in [a, b] {
        ok(&c.wait_with_output().expect("pull"));
    }
    assert_store_consistent(&store);
    assert_eq!(
        ok(&capsa(&store, &["images", "-q"], &[])).lines().count(),
        1
    );
    // Pulls racing rmi: whatever the interleaving, every recorded image is whole.
    for _ in 0..4 {
        let p = spawn();
        let _ = capsa(&store, &["rmi", &name], &[]);
        let o = p.wait_with_output().expect("pull");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_store_consistent(&store);
    }
    ok(&capsa(&store, &["pull", "-q", &name], &[]));
    assert_store_consistent(&store);
}

#[path = "run_support/mod.rs"]
mod run_support;

/// Three layers over a busybox rootfs: whiteout, opaque dir, and a later layer writing
/// `lib/x` where the base has `lib -> usr/lib` (docs/images.md: the later layer's real
/// directory hides the symlink, as with Docker's overlay2 and containerd).
fn runnable_layered_image(tmp: &Path, layout: &Layout) -> Built {
    let l1 = tmp.join("run-l1");
    run_support::build_rootfs(&l1);
    write(&l1.join("etc/gone"), b"removed by layer 2\n");
    write(&l1.join("opq/old"), b"hidden by the opaque dir\n");
    write(&l1.join("usr/lib/a"), b"a\n");
    std::os::unix::fs::symlink("usr/lib", l1.join("lib")).expect("symlink");
    let l2 = tmp.join("run-l2");
    write(&l2.join("etc/.wh.gone"), b"");
    write(&l2.join("opq/.wh..wh..opq"), b"");
    write(&l2.join("opq/new"), b"new\n");
    write(&l2.join("layer2"), b"two\n");
    let l3 = tmp.join("run-l3");
    write(&l3.join("lib/x"), b"x\n");
    write(&l3.join("layer3"), b"three\n");
    layout.image(
        &[
            (tar_dir(&l1), Comp::Gzip),
            (tar_dir(&l2), Comp::Zstd),
            (tar_dir(&l3), Comp::Plain),
        ],
        "amd64",
    )
}

#[test]
fn a_pulled_multi_layer_image_runs_with_each_layer_whiteouts_and_opaque_dirs() {
    if skip() {
        return;
    }
    let Some(env) = run_support::env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = runnable_layered_image(tmp.path(), &layout);
    layout.tag_image("run", &img);
    let name = format!("{}/t/runnable:1", reg.host());
    skopeo_push(&layout.dir, "run", &name, &[]);
    env.ok(&["pull", "-q", &name]);
    let script = "cat /usr/lib/a /layer2 /layer3 /opq/new; ls -a /opq; \
                  test -e /etc/gone && echo gone-still-there; \
                  test -L /lib && echo lib-is-a-symlink; ls /lib; \
                  test -e /usr/lib/x && echo x-went-through; true";
    let out = env.ok(&["run", "--rm", &name, "sh", "-c", script]);
    assert_eq!(out, "a\ntwo\nthree\nnew\n.\n..\nnew\nx\n", "inside: {out}");
}

#[test]
fn a_pulled_file_capability_binary_binds_port_80_as_nobody() {
    if skip() || !have("setcap") {
        return;
    }
    let Some(env) = run_support::env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), None);
    let root = tmp.path().join("rootfs");
    run_support::build_rootfs(&root);
    // busybox picks the applet from argv[0]'s basename: a copy named httpd is httpd.
    write(
        &root.join("capbin/httpd"),
        &std::fs::read("/bin/busybox").expect("busybox"),
    );
    run(Command::new("chmod")
        .arg("0755")
        .arg(root.join("capbin/httpd")));
    run(Command::new("setcap")
        .args(["cap_net_bind_service=+ep"])
        .arg(root.join("capbin/httpd")));
    let mut layout = Layout::new(&tmp.path().join("oci"));
    let img = layout.image(&[(tar_dir(&root), Comp::Gzip)], "amd64");
    layout.tag_image("caps", &img);
    let name = format!("{}/t/capsrun:1", reg.host());
    skopeo_push(&layout.dir, "caps", &name, &[]);
    env.ok(&["pull", "-q", &name]);
    // As uid 65534 with the default set: nothing effective or ambient, NET_BIND_SERVICE in
    // the bounding set. The plain httpd is refused port 80; the file-capability copy gains
    // cap_net_bind_service at execve (capabilities(7)) and serves.
    let script = "httpd -p 80 -h /www 2>&1 || echo plain-refused; \
                  /capbin/httpd -p 80 -h /www && sleep 0.3 && wget -q -O- http://127.0.0.1:80/";
    let out = env.ok(&["run", "--rm", "--user", "65534", &name, "sh", "-c", script]);
    assert!(
        out.contains("plain-refused"),
        "plain httpd bound port 80: {out}"
    );
    assert!(out.ends_with("hello from capsa\n"), "{out}");
}
