//! Hostile images are refused with an error naming the layer and the entry, and nothing is
//! written outside the store. A small hostile registry (tests/registry_support) serves forged
//! manifests and blobs that a real registry would refuse to store. Needs root.

mod registry_support;

use std::collections::HashMap;
use std::path::Path;

use registry_support::*;

/// One raw tar entry; names are written byte for byte (the tar crate refuses `..`).
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn raw_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, kind, link, data): (&str, tar::EntryType, &str, &[u8]) = match e {
            Entry::File(n, d) => (n, tar::EntryType::Regular, "", d),
            Entry::Symlink(n, t) => (n, tar::EntryType::Symlink, t, b""),
            Entry::Hardlink(n, t) => (n, tar::EntryType::Link, t, b""),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Serves one image whose single layer is `blob`, declared with `digest` and `size` in the
/// manifest and with `diff_id` in the config.
fn serve(
    blob: Vec<u8>,
    digest: Option<String>,
    size: Option<usize>,
    diff_id: String,
) -> (FakeRegistry, String) {
    let real = format!("sha256:{}", sha256_hex(&blob));
    let digest = digest.unwrap_or_else(|| real.clone());
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}))
    .expect("json");
    let cd = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
            "size": size.unwrap_or(blob.len())}]})).expect("json");
    let mut routes = HashMap::new();
    routes.insert(
        "/v2/evil/img/manifests/1".to_string(),
        (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            manifest,
        ),
    );
    routes.insert(
        format!("/v2/evil/img/blobs/{cd}"),
        ("application/octet-stream".to_string(), config),
    );
    routes.insert(
        format!("/v2/evil/img/blobs/{digest}"),
        ("application/octet-stream".to_string(), blob),
    );
    (FakeRegistry::start(routes), digest)
}

/// Pulls the hostile image; returns stderr after checking that nothing escaped or stayed.
fn pull_refused(tmp: &Path, reg: &FakeRegistry, env: &[(&str, &str)]) -> String {
    let store = tmp.join("store");
    let e = err(&capsa(
        &store,
        &["pull", &format!("127.0.0.1:{}/evil/img:1", reg.port)],
        env,
    ));
    let sentinel: Vec<_> = std::fs::read_dir(tmp.join("sentinel"))
        .expect("sentinel")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        sentinel,
        vec![std::ffi::OsString::from("secret")],
        "something was written outside the store"
    );
    assert_eq!(
        std::fs::read(tmp.join("sentinel/secret")).expect("secret"),
        b"secret\n"
    );
    assert_eq!(
        std::fs::read_dir(store.join("layers"))
            .expect("layers")
            .count(),
        0,
        "a layer was stored"
    );
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).expect("tmp").count(),
        0,
        "staging left behind"
    );
    assert_eq!(ok(&capsa(&store, &["images", "-q"], &[])).trim(), "");
    e
}

fn setup() -> Option<tempfile::TempDir> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(tmp.path().join("sentinel")).expect("sentinel");
    std::fs::write(tmp.path().join("sentinel/secret"), b"secret\n").expect("secret");
    Some(tmp)
}

fn hostile_layer(tmp: &Path, entries: &[Entry<'_>]) -> String {
    let tar = raw_tar(entries);
    let diff = format!("sha256:{}", sha256_hex(&tar));
    let blob = compress(&tar, Comp::Gzip);
    let (reg, digest) = serve(blob, None, None, diff);
    let e = pull_refused(tmp, &reg, &[]);
    assert!(
        e.contains(&format!("layer {digest}")),
        "the error does not name the layer: {e}"
    );
    e
}

#[test]
fn dotdot_entries_are_refused() {
    let Some(tmp) = setup() else { return };
    let e = hostile_layer(
        tmp.path(),
        &[Entry::File(
            "../../../../../../../../../../../tmp/pwned-capsa",
            b"x",
        )],
    );
    assert!(e.contains("entry \"../../") && e.contains("'..'"), "{e}");
}

#[test]
fn absolute_entries_are_refused() {
    let Some(tmp) = setup() else { return };
    let target = format!("{}/sentinel/pwned", tmp.path().display());
    let e = hostile_layer(tmp.path(), &[Entry::File(&target, b"x")]);
    assert!(
        e.contains(&format!("entry {target:?}")) && e.contains("absolute paths are refused"),
        "{e}"
    );
}

#[test]
fn symlink_then_file_escapes_are_refused() {
    let Some(tmp) = setup() else { return };
    let sentinel = format!("{}/sentinel", tmp.path().display());
    let e = hostile_layer(
        tmp.path(),
        &[
            Entry::Symlink("evil", &sentinel),
            Entry::File("evil/pwned", b"x"),
        ],
    );
    assert!(e.contains("entry \"evil/pwned\""), "{e}");
    let e2 = {
        std::fs::remove_dir_all(tmp.path().join("store")).expect("clean");
        hostile_layer(
            tmp.path(),
            &[
                Entry::Symlink("up", "../../../../../../../.."),
                Entry::File("up/tmp/pwned-capsa", b"x"),
            ],
        )
    };
    assert!(e2.contains("entry \"up/tmp/pwned-capsa\""), "{e2}");
}

#[test]
fn hardlinks_out_of_the_layer_are_refused() {
    let Some(tmp) = setup() else { return };
    let secret = format!("{}/sentinel/secret", tmp.path().display());
    let e = hostile_layer(tmp.path(), &[Entry::Hardlink("stolen", &secret)]);
    assert!(e.contains("entry \"stolen\""), "{e}");
    std::fs::remove_dir_all(tmp.path().join("store")).expect("clean");
    let sentinel = format!("{}/sentinel", tmp.path().display());
    let e = hostile_layer(
        tmp.path(),
        &[
            Entry::Symlink("evil", &sentinel),
            Entry::Hardlink("stolen", "evil/secret"),
        ],
    );
    assert!(e.contains("entry \"stolen\""), "{e}");
}

#[test]
fn a_digest_mismatch_is_refused() {
    let Some(tmp) = setup() else { return };
    let tar = raw_tar(&[Entry::File("ok", b"fine\n")]);
    let diff = format!("sha256:{}", sha256_hex(&tar));
    let claimed = format!("sha256:{}", sha256_hex(b"something else"));
    let (reg, _) = serve(
        compress(&tar, Comp::Gzip),
        Some(claimed.clone()),
        None,
        diff,
    );
    let e = pull_refused(tmp.path(), &reg, &[]);
    assert!(
        e.contains(&format!("layer {claimed}")) && e.contains("digest mismatch"),
        "{e}"
    );
}

#[test]
fn a_manifest_that_lies_about_sizes_is_refused() {
    let Some(tmp) = setup() else { return };
    let tar = raw_tar(&[Entry::File("ok", &[7u8; 100_000])]);
    let diff = format!("sha256:{}", sha256_hex(&tar));
    let blob = compress(&tar, Comp::Gzip);
    let (reg, digest) = serve(blob.clone(), None, Some(blob.len() / 2), diff.clone());
    let e = pull_refused(tmp.path(), &reg, &[]);
    assert!(
        e.contains(&digest) && e.contains("more than the") && e.contains("lying manifest"),
        "{e}"
    );
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    let Some(tmp) = setup() else { return };
    let big = vec![0u8; 64 << 20];
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(big.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "bomb", &big[..]).expect("append");
        b.into_inner().expect("tar")
    };
    let diff = format!("sha256:{}", sha256_hex(&tar));
    let blob = compress(&tar, Comp::Gzip);
    assert!(blob.len() < 1 << 20, "the bomb should be small compressed");
    let (reg, digest) = serve(blob, None, None, diff);
    let e = pull_refused(tmp.path(), &reg, &[("CAPSA_MAX_LAYER_SIZE", "8388608")]);
    assert!(
        e.contains(&format!("layer {digest}")) && e.contains("size limit of 8388608 bytes"),
        "{e}"
    );
}
