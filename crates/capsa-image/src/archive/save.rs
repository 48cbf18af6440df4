//! `capsa save`: writes images as one OCI archive (image-spec image-layout.md: `oci-layout`,
//! `index.json`, `blobs/sha256/*`) that also carries Docker's `manifest.json`, so that
//! `docker load`, `podman load` and `ctr image import` all accept it.
//!
//! Owns only the output file (written to a temp file beside it and renamed when complete).
//! It reads blobs from the store and re-hashes each while copying it, so a damaged store
//! never produces an archive with a wrong blob.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::load::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::digest::{Digest, TeeDigest};
use crate::error::ImageError;
use crate::registry::manifest::{DOCKER_MANIFEST, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::registry::{RegistryError, Result};
use crate::store::ImageStore;

/// Saves the images the arguments name (names or IDs) into an OCI archive at `output`.
pub fn save(store: &ImageStore, images: &[String], output: &Path) -> Result<()> {
    let mut index_entries = Vec::new();
    let mut docker = Vec::new();
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    for arg in images {
        let image = store.resolve(arg)?;
        let bytes = store.read_blob(&image.manifest)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Protocol(format!("stored manifest {}: {e}", image.manifest))
        })?;
        // Name only with what the user asked for when it is a name, else all its names.
        let names: Vec<_> = match crate::reference::Reference::parse(arg) {
            Ok(r) if image.references.contains(&r) => vec![r],
            _ => image.references.clone(),
        };
        let media_type = m
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let desc = |ann: Option<BTreeMap<String, String>>| {
            let mut v = serde_json::json!({
                "mediaType": media_type,
                "digest": image.manifest.to_string(),
                "size": bytes.len(),
            });
            if let Some(a) = ann {
                v["annotations"] = serde_json::json!(a);
            }
            v
        };
        if names.is_empty() {
            index_entries.push(desc(None));
        }
        for n in &names {
            let mut a = BTreeMap::new();
            a.insert(ANNOTATION_CONTAINERD_NAME.to_string(), n.to_string());
            a.insert(
                ANNOTATION_REF_NAME.to_string(),
                n.tag().unwrap_or("latest").to_string(),
            );
            index_entries.push(desc(Some(a)));
        }
        docker.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", m.config.digest.hex()),
            "RepoTags": names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
            "Layers": m.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
        if media_type == DOCKER_MANIFEST {
            tracing::debug!("saving a Docker schema 2 manifest in an OCI layout");
        }
        blobs.insert(image.manifest.clone());
        blobs.insert(m.config.digest.clone());
        blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    });
    write_archive(store, output, &index, &docker, &blobs)
}

fn write_archive(
    store: &ImageStore,
    output: &Path,
    index: &serde_json::Value,
    docker: &[serde_json::Value],
    blobs: &BTreeSet<Digest>,
) -> Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".capsa-save-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create temp file in", dir, e))?;
    let out = BufWriter::with_capacity(
        1 << 20,
        tmp.reopen()
            .map_err(|e| ImageError::io("open", tmp.path(), e))?,
    );
    let mut tar = tar::Builder::new(out);
    let werr = |e: io::Error| ImageError::io("write", output, e);
    append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
    append_dir(&mut tar, "blobs/").map_err(werr)?;
    append_dir(&mut tar, "blobs/sha256/").map_err(werr)?;
    for d in blobs {
        let path = store.blob_path(d);
        let f = File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))?;
        let size = f
            .metadata()
            .map_err(|e| ImageError::io("stat", &path, e))?
            .len();
        let mut tee = TeeDigest::new(f, io::sink());
        let mut h = header(size, 0o644, tar::EntryType::Regular);
        tar.append_data(
            &mut h,
            format!("blobs/sha256/{}", d.hex()),
            (&mut tee).take(size),
        )
        .map_err(werr)?;
        let (got, n, _) = tee
            .finish()
            .map_err(|e| ImageError::io("read blob", &path, e))?;
        if &got != d || n != size {
            return Err(ImageError::DigestMismatch {
                path,
                actual: got.to_string(),
            }
            .into());
        }
    }
    let json = |v: &serde_json::Value| {
        serde_json::to_vec(v).map_err(|e| RegistryError::Protocol(e.to_string()))
    };
    append(&mut tar, "index.json", &json(index)?).map_err(werr)?;
    append(
        &mut tar,
        "manifest.json",
        &json(&serde_json::json!(docker))?,
    )
    .map_err(werr)?;
    let mut out = tar.into_inner().map_err(werr)?;
    out.flush().map_err(werr)?;
    let file = out.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(werr)?;
    tmp.persist(output)
        .map_err(|e| ImageError::io("rename into place", output, e.error))?;
    Ok(())
}

/// A deterministic header: root-owned, mtime 0, so the same images give the same archive.
fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
}

fn append_dir(tar: &mut tar::Builder<impl Write>, name: &str) -> io::Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, name, io::empty())
}
