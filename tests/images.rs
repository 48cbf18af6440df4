//! End-to-end tests (root) of the image store: `capsa import`, `images`, `tag`, `rmi`, layer
//! unpacking (metadata, file capabilities, whiteouts through a real overlay mount), hostile
//! tars, and concurrent writers.
//!
//! Owns only its temp dirs (a private store root each) and the overlay mounts it makes, which
//! a guard removes even when an assertion fails.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use capsa_image::{ImageStore, ImportOptions, Snapshot};

const CAPSA: &str = env!("CARGO_BIN_EXE_capsa");

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("capsa-images-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn capsa(root: &Path, args: &[&str]) -> Output {
    Command::new(CAPSA)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run capsa {args:?}: {e}"))
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = capsa(root, args);
    assert!(
        out.status.success(),
        "capsa {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(root: &Path, args: &[&str]) -> String {
    let out = capsa(root, args);
    assert!(
        !out.status.success(),
        "capsa {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sh(script: &str) {
    let st = Command::new("sh").arg("-ec").arg(script).status();
    assert!(matches!(st, Ok(s) if s.success()), "sh failed: {script}");
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A busybox rootfs with every kind of entry a layer can hold.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let r = dir.join("rootfs");
    sh(&format!(
        r#"
        R={r}
        mkdir -p $R/bin $R/etc $R/dev $R/tmp $R/srv/data
        cp /bin/busybox $R/bin/busybox
        ln -s busybox $R/bin/sh
        ln -s /bin/busybox $R/bin/ls
        ln $R/bin/busybox $R/bin/busybox-hard
        cp /bin/busybox $R/bin/httpd-cap
        setcap cap_net_bind_service=+ep $R/bin/httpd-cap
        echo secret > $R/etc/owned
        chown 1000:2000 $R/etc/owned && chmod 0640 $R/etc/owned
        cp /bin/busybox $R/bin/suid && chmod 4755 $R/bin/suid
        chmod 2755 $R/srv/data && chown 33:33 $R/srv/data
        chmod 1777 $R/tmp
        mkfifo $R/dev/fifo
        mknod $R/dev/null c 1 3
        mknod $R/dev/loopx b 7 200
        touch -h -d '2001-02-03 04:05:06' $R/bin/sh
        touch -d '2002-03-04 05:06:07' $R/etc/owned $R/srv/data
        "#,
        r = r.display()
    ));
    r
}

fn tar_rootfs(rootfs: &Path, out: &Path) {
    sh(&format!(
        "tar --xattrs --xattrs-include='security.capability' --numeric-owner -C {} -cf {} .",
        rootfs.display(),
        out.display()
    ));
}

#[test]
fn import_keeps_modes_owners_links_devices_and_file_caps() {
    let t = tmp();
    let root = t.path().join("store");
    let rootfs = busybox_rootfs(t.path());
    let tarball = t.path().join("rootfs.tar");
    tar_rootfs(&rootfs, &tarball);

    let id = ok(
        &root,
        &[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "ENV A=1",
            "-m",
            "hello",
            tarball.to_str().unwrap_or(""),
            "busybox:test",
        ],
    );
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "import prints the image id: {id:?}"
    );

    let store = ImageStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
    let img = store
        .resolve("busybox:test")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(img.id().to_string(), id.trim());
    assert_eq!(img.layers.len(), 1);
    let layer = store.layer_root(&img.layers[0].diff_id);
    assert!(store.layer_complete(&img.layers[0].diff_id));

    let md = |p: &str| fs::symlink_metadata(layer.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let src = |p: &str| fs::symlink_metadata(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for p in [
        "bin/busybox",
        "bin/suid",
        "etc/owned",
        "srv/data",
        "tmp",
        "dev/fifo",
        "dev/null",
        "dev/loopx",
        "bin/sh",
    ] {
        assert_eq!(md(p).mode(), src(p).mode(), "mode of {p}");
        assert_eq!(
            (md(p).uid(), md(p).gid()),
            (src(p).uid(), src(p).gid()),
            "owner of {p}"
        );
    }
    assert_eq!(md("bin/suid").mode() & 0o7777, 0o4755);
    assert_eq!(md("srv/data").mode() & 0o7777, 0o2755);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!((md("etc/owned").uid(), md("etc/owned").gid()), (1000, 2000));
    assert_eq!(md("etc/owned").mtime(), src("etc/owned").mtime());
    assert_eq!(
        md("srv/data").mtime(),
        src("srv/data").mtime(),
        "directory mtimes are restored last"
    );
    assert_eq!(
        md("bin/sh").mtime(),
        src("bin/sh").mtime(),
        "symlink mtimes"
    );
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).ok(),
        Some(PathBuf::from("busybox"))
    );
    assert_eq!(
        fs::read_link(layer.join("bin/ls")).ok(),
        Some(PathBuf::from("/bin/busybox"))
    );
    assert_eq!(
        md("bin/busybox").ino(),
        md("bin/busybox-hard").ino(),
        "hard link shares the inode"
    );
    assert_eq!(md("bin/busybox").nlink(), 2);
    assert!(md("dev/fifo").file_type().is_fifo());
    assert!(md("dev/null").file_type().is_char_device());
    assert_eq!(md("dev/null").rdev(), src("dev/null").rdev());
    assert!(md("dev/loopx").file_type().is_block_device());
    assert_eq!(md("dev/loopx").rdev(), src("dev/loopx").rdev());
    assert_eq!(
        fs::read(layer.join("bin/busybox")).ok(),
        fs::read("/bin/busybox").ok()
    );

    let cap = getxattr(&layer.join("bin/httpd-cap"), "security.capability");
    assert!(cap.is_some(), "security.capability survives the import");
    assert_eq!(
        cap,
        getxattr(&rootfs.join("bin/httpd-cap"), "security.capability")
    );
    let getcap = Command::new("getcap")
        .arg(layer.join("bin/httpd-cap"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    assert!(
        getcap
            .as_deref()
            .unwrap_or("")
            .contains("cap_net_bind_service=ep"),
        "getcap: {getcap:?}"
    );

    let config = store.config(&img).unwrap_or_else(|e| panic!("{e}"));
    let c = config.config().clone().unwrap_or_default();
    assert_eq!(c.cmd().clone(), Some(vec!["sh".to_string()]));
    assert_eq!(c.env().clone(), Some(vec!["A=1".to_string()]));
    assert_eq!(
        config.rootfs().diff_ids(),
        &vec![img.layers[0].diff_id.to_string()]
    );
    let history = config.history().clone().unwrap_or_default();
    assert_eq!(
        history.first().and_then(|h| h.comment().clone()).as_deref(),
        Some("hello")
    );

    // The same tar gzipped, through stdin: a new blob, the same diff ID, one shared layer dir.
    sh(&format!("gzip -c {0} > {0}.gz", tarball.display()));
    let gz = fs::File::open(t.path().join("rootfs.tar.gz")).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(CAPSA)
        .args([
            OsStr::new("--root"),
            root.as_os_str(),
            OsStr::new("import"),
            OsStr::new("-"),
            OsStr::new("busybox:gz"),
        ])
        .stdin(Stdio::from(gz))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gz_img = store
        .resolve("busybox:gz")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gz_img.layers[0].diff_id, img.layers[0].diff_id);
    assert_ne!(gz_img.layers[0].blob, img.layers[0].blob);
    assert!(gz_img.layers[0].media_type.ends_with("+gzip"));
    assert_eq!(
        fs::read_dir(root.join("layers"))
            .map(|d| d.count())
            .unwrap_or(0),
        1
    );
    for d in [
        &gz_img.manifest,
        &gz_img.config,
        &gz_img.layers[0].blob,
        &img.layers[0].blob,
    ] {
        store.verify_blob(d).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Builds a tar from (path, kind) specs with the `tar` crate; names are written raw, so
/// hostile names (`../x`, `/abs`) reach the unpacker as an attacker would send them.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Zeros(&'a str, u64),
}

fn raw_header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_old();
    let bytes = name.as_bytes();
    assert!(bytes.len() < 100, "test names fit the old header");
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

fn make_tar(path: &Path, entries: &[E<'_>]) {
    let f = fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut b = tar::Builder::new(f);
    for e in entries {
        let res = match e {
            E::Dir(n) => {
                let mut h = raw_header(n, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty())
            }
            E::File(n, data) => {
                let mut h = raw_header(n, tar::EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, *data)
            }
            E::Symlink(n, target) | E::Hardlink(n, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = raw_header(n, kind, 0, 0o777);
                let tb = target.as_bytes();
                h.as_old_mut().linkname[..tb.len()].copy_from_slice(tb);
                h.set_cksum();
                b.append(&h, std::io::empty())
            }
            E::Zeros(n, size) => {
                let mut h = raw_header(n, tar::EntryType::Regular, *size, 0o644);
                h.set_cksum();
                b.append(&h, std::io::repeat(0).take(*size))
            }
        };
        res.unwrap_or_else(|err| panic!("tar append: {err}"));
    }
    b.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// Unmounts and removes a snapshot even when the test fails.
struct SnapshotGuard<'a> {
    store: &'a ImageStore,
    id: String,
    dir: PathBuf,
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = Snapshot::remove(self.store, &self.id, &self.dir) {
            eprintln!("cleanup of snapshot {}: {e}", self.id);
        }
    }
}

fn mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

#[test]
fn whiteouts_and_opaque_dirs_through_overlay() {
    let t = tmp();
    let root = t.path().join("store");
    let base_tar = t.path().join("base.tar");
    make_tar(
        &base_tar,
        &[
            E::Dir("keep/"),
            E::File("keep/a", b"a"),
            E::File("gone", b"old"),
            E::Dir("opq/"),
            E::File("opq/old1", b"1"),
            E::Dir("opq/sub/"),
            E::File("opq/sub/old2", b"2"),
            E::Dir("dir2/"),
            E::File("dir2/x", b"x"),
        ],
    );
    ok(
        &root,
        &["import", base_tar.to_str().unwrap_or(""), "layers:base"],
    );
    let store = ImageStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
    let base = store
        .resolve("layers:base")
        .unwrap_or_else(|e| panic!("{e}"));

    let top_tar = t.path().join("top.tar");
    make_tar(
        &top_tar,
        &[
            E::File(".wh.gone", b""),
            E::Dir("opq/"),
            E::File("opq/.wh..wh..opq", b""),
            E::File("opq/new", b"n"),
            E::File("dir2/y", b"y"),
        ],
    );
    let opts = ImportOptions {
        reference: Some("layers:top".parse().unwrap_or_else(|e| panic!("{e}"))),
        source: "top.tar".into(),
        ..Default::default()
    };
    let top_file = fs::File::open(&top_tar).unwrap_or_else(|e| panic!("{e}"));
    let img = store
        .add_layer(Some(&base), top_file, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(img.layers.len(), 2);

    // The unpacked top layer holds overlayfs whiteouts, not .wh. files.
    let top = store.layer_root(&img.layers[1].diff_id);
    let wh = fs::symlink_metadata(top.join("gone")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is char 0:0"
    );
    assert!(!top.join(".wh.gone").exists());
    // Both spellings: trusted.* for host overlays, user.* for `userxattr` overlays.
    for key in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        assert_eq!(
            getxattr(&top.join("opq"), key),
            Some(b"y".to_vec()),
            "{key}"
        );
    }
    assert!(!top.join("opq/.wh..wh..opq").exists());

    let cdir = t.path().join("containers/c1");
    let cid = format!("c1-{}", std::process::id());
    let started = Instant::now();
    let snap = Snapshot::prepare(&store, &img, &cid, &cdir).unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    let _guard = SnapshotGuard {
        store: &store,
        id: cid.clone(),
        dir: cdir.clone(),
    };
    eprintln!("Snapshot::prepare (lease + dirs + overlay mount of 2 layers) took {took:?}");
    assert!(mounted(&snap.rootfs) && snap.is_mounted());

    let r = &snap.rootfs;
    assert_eq!(fs::read(r.join("keep/a")).ok(), Some(b"a".to_vec()));
    assert!(!r.join("gone").exists(), "whiteout hides the lower file");
    let mut opq: Vec<String> = fs::read_dir(r.join("opq"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    opq.sort();
    assert_eq!(
        opq,
        vec!["new".to_string()],
        "opaque dir hides all lower entries"
    );
    let mut d2: Vec<String> = fs::read_dir(r.join("dir2"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    d2.sort();
    assert_eq!(
        d2,
        vec!["x".to_string(), "y".to_string()],
        "non-opaque dirs merge"
    );

    // Writes land in the container's upper dir, never in the shared layers.
    fs::write(r.join("keep/a"), b"changed").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fs::read(store.layer_root(&img.layers[0].diff_id).join("keep/a")).ok(),
        Some(b"a".to_vec())
    );
    assert_eq!(
        fs::read(snap.upper.join("keep/a")).ok(),
        Some(b"changed".to_vec())
    );

    // rmi refuses while the snapshot's lease exists; -f untags but the layers stay.
    let err = fails(&root, &["rmi", "layers:top"]);
    assert!(err.contains("conflict") && err.contains(&cid), "{err}");
    ok(&root, &["rmi", "-f", "layers:top"]);
    assert!(
        store.layer_complete(&img.layers[1].diff_id),
        "a leased layer survives rmi -f"
    );
    assert!(r.join("keep/a").exists());

    Snapshot::remove(&store, &cid, &cdir).unwrap_or_else(|e| panic!("{e}"));
    assert!(!mounted(&snap.rootfs));
    assert!(!snap.upper.exists() && !snap.work.exists() && !snap.rootfs.exists());
    assert!(
        !store.layer_complete(&img.layers[1].diff_id),
        "GC takes the top layer once the lease is gone"
    );
    assert!(
        store.layer_complete(&base.layers[0].diff_id),
        "the base image keeps its layer"
    );

    // The mount is on `capsa run`'s hot path: measure prepare (lease, dirs, record, overlay
    // mount) and remove (unmount, delete, lease drop + GC) over a few rounds.
    let (mut prep, mut rm) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let id = format!("bench{i}-{}", std::process::id());
        let dir = t.path().join("containers").join(&id);
        let t0 = Instant::now();
        let s = Snapshot::prepare(&store, &base, &id, &dir).unwrap_or_else(|e| panic!("{e}"));
        let _g = SnapshotGuard {
            store: &store,
            id: id.clone(),
            dir: dir.clone(),
        };
        prep.push(t0.elapsed());
        assert!(s.is_mounted());
        let t1 = Instant::now();
        Snapshot::remove(&store, &id, &dir).unwrap_or_else(|e| panic!("{e}"));
        rm.push(t1.elapsed());
    }
    prep.sort();
    rm.sort();
    eprintln!(
        "snapshot median over 10: prepare {:?}, remove {:?}",
        prep[5], rm[5]
    );
}

/// Every hostile tar is refused with its entry named, and nothing appears outside the store.
#[test]
fn hostile_tars_are_refused_and_write_nothing_outside() {
    let t = tmp();
    let root = t.path().join("store");
    let sentinel = t.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap_or_else(|e| panic!("{e}"));
    let s = sentinel.to_string_lossy().into_owned();
    let abs_file = format!("{s}/abs");
    let up = "../".repeat(12);
    let rel_escape = format!("{up}{}", s.trim_start_matches('/'));
    let passwd_links = fs::metadata("/etc/passwd").map(|m| m.nlink()).unwrap_or(0);

    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        ("dotdot", vec![E::File("../x", b"x")], "../x"),
        (
            "dotdot-deep",
            vec![E::Dir("a/"), E::File("a/../../x", b"x")],
            "a/../../x",
        ),
        ("absolute", vec![E::File(&abs_file, b"x")], &abs_file),
        (
            "symlink-abs",
            vec![E::Symlink("evil", &s), E::File("evil/pwned", b"x")],
            "evil/pwned",
        ),
        (
            "symlink-rel",
            vec![E::Symlink("evil", &rel_escape), E::File("evil/pwned", b"x")],
            "evil/pwned",
        ),
        (
            "symlink-dir",
            vec![E::Symlink("evil", &s), E::Dir("evil/sub/")],
            "evil/sub/",
        ),
        ("hardlink-abs", vec![E::Hardlink("hl", "/etc/passwd")], "hl"),
        (
            "hardlink-dotdot",
            vec![E::Hardlink("hl", "../../../../../../etc/passwd")],
            "hl",
        ),
        (
            "hardlink-via-symlink",
            vec![E::Symlink("etc", "/etc"), E::Hardlink("hl", "etc/passwd")],
            "hl",
        ),
        (
            "hardlink-missing",
            vec![E::Hardlink("hl", "nothing/here")],
            "hl",
        ),
    ];
    for (what, entries, entry) in &cases {
        let p = t.path().join(format!("{what}.tar"));
        make_tar(&p, entries);
        let err = fails(
            &root,
            &[
                "import",
                p.to_str().unwrap_or(""),
                &format!("hostile:{what}"),
            ],
        );
        assert!(
            err.contains(&format!("entry {entry:?}")),
            "{what}: the error names the entry {entry:?}: {err}"
        );
        assert!(
            err.contains(&format!("{what}.tar")),
            "{what}: the error names the layer: {err}"
        );
    }

    // A decompression bomb: 64 MiB of zeros gzip to ~64 KiB; the limit is 8 MiB.
    let bomb = t.path().join("bomb.tar");
    make_tar(&bomb, &[E::Zeros("zeros", 64 << 20)]);
    sh(&format!("gzip -f {}", bomb.display()));
    let out = Command::new(CAPSA)
        .arg("--root")
        .arg(&root)
        .args([
            "import",
            t.path().join("bomb.tar.gz").to_str().unwrap_or(""),
            "hostile:bomb",
        ])
        .env("CAPSA_MAX_LAYER_SIZE", (8u64 << 20).to_string())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("entry \"zeros\"") && err.contains("size limit"),
        "bomb: {err}"
    );

    assert_eq!(
        fs::read_dir(&sentinel).map(|d| d.count()).unwrap_or(99),
        0,
        "nothing written outside the store"
    );
    assert!(!Path::new(&abs_file).exists());
    assert_eq!(
        fs::metadata("/etc/passwd").map(|m| m.nlink()).unwrap_or(0),
        passwd_links,
        "no hard link to /etc/passwd"
    );
    assert_eq!(
        ok(&root, &["images", "-q"]).trim(),
        "",
        "no image was recorded"
    );
    for d in ["layers", "blobs/sha256", "tmp"] {
        assert_eq!(
            fs::read_dir(root.join(d)).map(|d| d.count()).unwrap_or(99),
            0,
            "{d} is empty after refusals"
        );
    }

    // In-layer symlinks still work: a relative symlink dir inside the layer is followed.
    let good = t.path().join("good.tar");
    make_tar(
        &good,
        &[
            E::Dir("usr/lib/"),
            E::Symlink("lib", "usr/lib"),
            E::File("lib/libx.so", b"x"),
        ],
    );
    ok(&root, &["import", good.to_str().unwrap_or(""), "fine:1"]);
    let store = ImageStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
    let img = store.resolve("fine:1").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        store
            .layer_root(&img.layers[0].diff_id)
            .join("usr/lib/libx.so")
            .is_file()
    );
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn images_tag_rmi_round_trip() {
    let t = tmp();
    let root = t.path().join("store");
    let tarball = t.path().join("a.tar");
    make_tar(&tarball, &[E::File("hello", b"world")]);
    let id = ok(&root, &["import", tarball.to_str().unwrap_or(""), "app:1"])
        .trim()
        .to_string();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    ok(&root, &["tag", "app:1", "localhost:5000/team/app:v2"]);
    ok(&root, &["tag", short, "other"]);
    let table = ok(&root, &["images"]);
    let header = table.lines().next().unwrap_or("");
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table.contains("localhost:5000/team/app") && table.contains("v2") && table.contains(short),
        "{table}"
    );
    let rows = json_lines(&ok(&root, &["images", "--format", "json"]));
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["Repository"].as_str().unwrap_or(""),
                r["Tag"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["app:1", "localhost:5000/team/app:v2", "other:latest"]
    );
    assert!(rows.iter().all(|r| r["ID"] == short));

    let err = fails(&root, &["tag", "app:1", "Bad/Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = fails(&root, &["rmi", "nosuch"]);
    assert!(err.contains("No such image: nosuch"), "{err}");
    let err = fails(&root, &["rmi", short]);
    assert!(err.contains("referenced in multiple repositories"), "{err}");

    assert_eq!(
        ok(&root, &["rmi", "other"]).trim(),
        "Untagged: other:latest"
    );
    assert_eq!(
        ok(&root, &["rmi", "localhost:5000/team/app:v2"]).trim(),
        "Untagged: localhost:5000/team/app:v2"
    );
    let out = ok(&root, &["rmi", "app:1"]);
    assert_eq!(out, format!("Untagged: app:1\nDeleted: {id}\n"));
    assert_eq!(ok(&root, &["images", "-q"]).trim(), "");
    for d in ["layers", "blobs/sha256"] {
        assert_eq!(
            fs::read_dir(root.join(d)).map(|d| d.count()).unwrap_or(99),
            0,
            "GC emptied {d}"
        );
    }

    // An unnamed import is listed as <none> and removable by ID prefix.
    let id = ok(&root, &["import", tarball.to_str().unwrap_or("")])
        .trim()
        .to_string();
    assert!(ok(&root, &["images"]).contains("<none>"));
    ok(&root, &["rmi", &id["sha256:".len().."sha256:".len() + 6]]);
}

#[test]
fn concurrent_imports_and_removals_keep_the_store_consistent() {
    let t = tmp();
    let root = t.path().join("store");
    let a = t.path().join("a.tar");
    let b = t.path().join("b.tar");
    let big = vec![7u8; 2 << 20];
    make_tar(
        &a,
        &[E::Dir("d/"), E::File("d/a", &big), E::File("x", b"a")],
    );
    make_tar(&b, &[E::File("y", b"b")]);
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));

    let spawn = |args: Vec<String>| {
        Command::new(CAPSA)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut kids = Vec::new();
    for i in 0..4 {
        kids.push(spawn(vec![
            "import".into(),
            a.to_string_lossy().into_owned(),
            format!("a:{i}"),
        ]));
        kids.push(spawn(vec![
            "import".into(),
            b.to_string_lossy().into_owned(),
            format!("b:{i}"),
        ]));
    }
    for k in kids {
        let out = k.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = json_lines(&ok(&root, &["images", "--format", "json"]));
    assert_eq!(listed.len(), 8, "every import is listed");
    assert_eq!(
        fs::read_dir(root.join("layers"))
            .map(|d| d.count())
            .unwrap_or(0),
        2,
        "identical layers are stored once"
    );

    // Removals racing new imports of the same content.
    let mut kids = Vec::new();
    for i in 0..4 {
        kids.push(spawn(vec!["rmi".into(), format!("a:{i}")]));
        kids.push(spawn(vec![
            "import".into(),
            a.to_string_lossy().into_owned(),
            format!("a2:{i}"),
        ]));
    }
    for k in kids {
        let out = k.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = ImageStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
    let images = store.images().unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = images
        .iter()
        .flat_map(|i| i.references.iter().map(|r| r.familiar()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["a2:0", "a2:1", "a2:2", "a2:3", "b:0", "b:1", "b:2", "b:3"]
    );
    for img in &images {
        for d in std::iter::once(&img.manifest)
            .chain([&img.config])
            .chain(img.layers.iter().map(|l| &l.blob))
        {
            store.verify_blob(d).unwrap_or_else(|e| panic!("{e}"));
        }
        for l in &img.layers {
            assert!(store.layer_complete(&l.diff_id));
            assert!(store.layer_root(&l.diff_id).is_dir());
        }
    }
}

/// A layer an older capsa unpacked (opaque dirs with only `trusted.overlay.opaque`, no
/// `user-opaque` marker) gets `user.overlay.opaque` on its first lease. The walk follows no
/// symlink: a link out of the layer to a directory marked opaque leaves that directory alone.
#[test]
fn older_layers_get_user_opaque_on_first_lease_and_the_walk_stays_inside() {
    let t = tmp();
    let sentinel = t.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap_or_else(|e| panic!("{e}"));
    rustix::fs::setxattr(
        &sentinel,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap_or_else(|e| panic!("setxattr on the sentinel: {e}"));
    let target = sentinel.to_string_lossy().into_owned();
    let tar_path = t.path().join("old.tar");
    make_tar(
        &tar_path,
        &[
            E::Dir("a/"),
            E::Dir("a/b/"),
            E::File("a/b/.wh..wh..opq", b""),
            E::Symlink("a/up", ".."),
            E::Dir("opq/"),
            E::File("opq/.wh..wh..opq", b""),
            E::Symlink("out", &target),
        ],
    );
    let root = t.path().join("store");
    ok(&root, &["import", tar_path.to_str().unwrap_or(""), "old:1"]);
    let store = ImageStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
    let img = store.resolve("old:1").unwrap_or_else(|e| panic!("{e}"));
    let layer_dir = root.join("layers").join(img.layers[0].diff_id.hex());
    let lroot = layer_dir.join("root");
    // Make it look like an older capsa's layer.
    for d in ["opq", "a/b"] {
        rustix::fs::lremovexattr(lroot.join(d), "user.overlay.opaque")
            .unwrap_or_else(|e| panic!("{d}: {e}"));
    }
    fs::remove_file(layer_dir.join("user-opaque")).unwrap_or_else(|e| panic!("{e}"));

    let cdir = t.path().join("containers/c-upgrade");
    let cid = format!("c-upgrade-{}", std::process::id());
    let _snap = Snapshot::prepare(&store, &img, &cid, &cdir).unwrap_or_else(|e| panic!("{e}"));
    let _guard = SnapshotGuard {
        store: &store,
        id: cid.clone(),
        dir: cdir.clone(),
    };
    for d in ["opq", "a/b"] {
        assert_eq!(
            getxattr(&lroot.join(d), "user.overlay.opaque"),
            Some(b"y".to_vec()),
            "{d} was upgraded"
        );
    }
    assert!(layer_dir.join("user-opaque").is_file(), "marker written");
    assert_eq!(getxattr(&lroot.join("a"), "user.overlay.opaque"), None);
    assert_eq!(
        getxattr(&sentinel, "user.overlay.opaque"),
        None,
        "the walk followed a symlink out of the layer"
    );
}
