//! A hand-made OCI image archive (image-spec v1 layout) of a rootfs directory, for engines
//! that import images (`ctr image import`). Owns only files under the dir it is given.
//! Uses tar and sha256sum, which every Debian host has.

use super::proc::sha256;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a blob into `layout/blobs/sha256/` and returns (digest, size).
fn put_blob(layout: &Path, src: &Path) -> (String, u64) {
    let d = sha256(src);
    let dst = layout.join("blobs/sha256").join(&d);
    fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy blob {src:?}: {e}"));
    let size = fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    (format!("sha256:{d}"), size)
}

fn put_json(layout: &Path, work: &Path, name: &str, v: &serde_json::Value) -> (String, u64) {
    let p = work.join(name);
    fs::write(&p, serde_json::to_vec(v).unwrap_or_default())
        .unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    put_blob(layout, &p)
}

fn tar(args: &[&str]) {
    let st = Command::new("tar").args(args).status();
    assert!(
        matches!(st, Ok(s) if s.success()),
        "tar {args:?} failed: {st:?}"
    );
}

/// Builds `<work>/image.tar`, an OCI archive of `rootfs` named `name` (e.g.
/// `localhost/capsa-e2e:latest`), with `PATH=/bin` and `Cmd /bin/sh`.
pub fn build_archive(rootfs: &Path, work: &Path, name: &str) -> PathBuf {
    let layout = work.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let layer = work.join("layer.tar");
    let (r, l) = (rootfs.to_string_lossy(), layer.to_string_lossy());
    tar(&["--numeric-owner", "-C", &r, "-cf", &l, "."]);
    let (layer_digest, layer_size) = put_blob(&layout, &layer);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (cfg_digest, cfg_size) = put_json(&layout, work, "config.json", &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (man_digest, man_size) = put_json(&layout, work, "manifest.json", &manifest);
    let tag = name.rsplit(':').next().unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": man_digest, "size": man_size,
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": tag}}],
    });
    let write = |n: &str, v: &serde_json::Value| {
        fs::write(layout.join(n), serde_json::to_vec(v).unwrap_or_default())
            .unwrap_or_else(|e| panic!("write {n}: {e}"));
    };
    write("index.json", &index);
    write("oci-layout", &json!({"imageLayoutVersion": "1.0.0"}));
    let out = work.join("image.tar");
    let (lo, o) = (layout.to_string_lossy(), out.to_string_lossy());
    tar(&["-C", &lo, "-cf", &o, "oci-layout", "index.json", "blobs"]);
    out
}
