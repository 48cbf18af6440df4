//! `capsa load`: `docker save` tarballs (`manifest.json` + `<id>/layer.tar`, and Docker 25+'s
//! OCI layout inside the tar) and OCI archives (`index.json` + `blobs/`), plain or compressed.
//!
//! Owns an extraction dir under the store's `tmp/` (removed when the load ends). The archive
//! is first copied out as plain files (only regular files and directories are written; links
//! are remembered and resolved by name inside the archive, never on disk), then each image
//! goes through the same verify-unpack-commit path as a pull (registry/ingest.rs).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{Digest, TeeDigest};
use crate::error::ImageError;
use crate::import::{MEDIA_TAR, MEDIA_TAR_GZIP, MEDIA_TAR_ZSTD};
use crate::reference::Reference;
use crate::registry::ingest::{self, Fetched, StagedLayer};
use crate::registry::manifest::{
    self, Compression, Descriptor, Document, MAX_DOCUMENT, Manifest, OCI_CONFIG, OCI_MANIFEST,
    Platform,
};
use crate::registry::{RegistryError, Result};
use crate::store::{Image, ImageStore, LayerRef};
use crate::unpack::UnpackLimits;
use crate::unpack::path as entry_path;

/// The annotations that name an image in an OCI layout (containerd's full name, and the
/// image-spec's ref name, which Docker and skopeo set to a tag and Podman to a full name).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The files of an extracted archive, with its links resolved by name.
struct Extracted {
    dir: tempfile::TempDir,
    links: HashMap<String, String>,
    source: String,
}

impl Extracted {
    /// The file an archive path names, following the archive's own links (a few hops).
    fn path(&self, name: &str) -> Result<PathBuf> {
        let mut name = normalise(name);
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => break,
            }
        }
        entry_path::components(name.as_bytes()).map_err(|r| {
            RegistryError::Protocol(format!("{}: entry {name:?}: {}", self.source, r.reason()))
        })?;
        let p = self.dir.path().join("files").join(&name);
        if !p.is_file() {
            return Err(RegistryError::Protocol(format!(
                "{}: the archive has no file {name:?} (is it complete?)",
                self.source
            )));
        }
        Ok(p)
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let mut out = Vec::new();
        File::open(&p)
            .and_then(|f| f.take(MAX_DOCUMENT + 1).read_to_end(&mut out))
            .map_err(|e| ImageError::io("read", &p, e))?;
        if out.len() as u64 > MAX_DOCUMENT {
            return Err(RegistryError::Verify(format!(
                "{}: {name} is larger than {MAX_DOCUMENT} bytes",
                self.source
            )));
        }
        Ok(out)
    }

    fn has(&self, name: &str) -> bool {
        self.path(name).is_ok()
    }
}

fn normalise(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Loads every image in the archive; returns each with the names it got.
pub fn load(
    store: &ImageStore,
    path: &Path,
    limits: &UnpackLimits,
) -> Result<Vec<(Image, Vec<Reference>)>> {
    let ex = extract(store, path)?;
    let docker_names = docker_repo_tags(&ex)?;
    let mut out = Vec::new();
    if ex.has("index.json") {
        for (bytes, m, names) in oci_manifests(&ex)? {
            let mut names = names;
            if let Some(n) = docker_names.get(&m.config.digest) {
                names.extend(n.iter().cloned());
            }
            names.dedup();
            let image = load_one(store, &ex, &bytes, &m, None, names.clone(), limits)?;
            out.push((image, names));
        }
    } else if ex.has("manifest.json") {
        for entry in docker_entries(&ex)? {
            let (bytes, m, layer_files) = docker_manifest(&ex, &entry)?;
            let names = parse_names(&entry.repo_tags);
            let image = load_one(
                store,
                &ex,
                &bytes,
                &m,
                Some(&layer_files),
                names.clone(),
                limits,
            )?;
            out.push((image, names));
        }
    } else {
        return Err(RegistryError::Protocol(format!(
            "{}: neither index.json (OCI archive) nor manifest.json (docker save) found",
            ex.source
        )));
    }
    Ok(out)
}

/// Copies the archive's regular files into `tmp/load-*/files`, refusing unsafe names.
fn extract(store: &ImageStore, path: &Path) -> Result<Extracted> {
    let source = path.display().to_string();
    let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let mut input = BufReader::with_capacity(1 << 20, f);
    let head = {
        use std::io::BufRead;
        input
            .fill_buf()
            .map_err(|e| ImageError::io("read", path, e))?
            .to_vec()
    };
    let decoded = ingest::decoder(input, ingest::sniff(&head))
        .map_err(|e| RegistryError::Protocol(format!("{source}: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.tmp_dir())
        .map_err(|e| ImageError::io("create staging dir in", &store.tmp_dir(), e))?;
    let files = dir.path().join("files");
    fs::create_dir(&files).map_err(|e| ImageError::io("create", &files, e))?;
    let mut links = HashMap::new();
    let mut archive = tar::Archive::new(decoded);
    let bad =
        |e: io::Error| RegistryError::Protocol(format!("{source}: not a valid tar archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = entry_path::components(&raw).map_err(|r| {
            RegistryError::Protocol(format!("{source}: entry {name:?}: {}", r.reason()))
        })?;
        let rel: PathBuf = comps.iter().collect();
        let key = normalise(&name);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(files.join(&rel))
                    .map_err(|e| ImageError::io("create", &rel, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dest = files.join(&rel);
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).map_err(|e| ImageError::io("create", p, e))?;
                }
                let mut out =
                    File::create(&dest).map_err(|e| ImageError::io("create", &dest, e))?;
                io::copy(&mut entry, &mut out).map_err(bad)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    // Symlink targets are relative to the link's directory (old docker save
                    // links `<id>/layer.tar` to `../<other>/layer.tar`).
                    let base = key.rsplit_once('/').map_or("", |(d, _)| d);
                    resolve_relative(base, &target)
                } else {
                    Some(normalise(&target))
                };
                let resolved = resolved.ok_or_else(|| {
                    RegistryError::Protocol(format!(
                        "{source}: link {name:?} -> {target:?} leaves the archive"
                    ))
                })?;
                links.insert(key, resolved);
            }
            _ => {}
        }
    }
    Ok(Extracted { dir, links, source })
}

/// Joins a relative link target onto its directory, refusing to climb above the archive root.
fn resolve_relative(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `docker save`'s manifest.json entries.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_entries(ex: &Extracted) -> Result<Vec<DockerEntry>> {
    let data = ex.read_small("manifest.json")?;
    serde_json::from_slice(&data)
        .map_err(|e| RegistryError::Protocol(format!("{}: manifest.json: {e}", ex.source)))
}

/// Names by config digest from manifest.json, when the archive has one.
fn docker_repo_tags(ex: &Extracted) -> Result<HashMap<Digest, Vec<Reference>>> {
    let mut out = HashMap::new();
    if !ex.has("manifest.json") {
        return Ok(out);
    }
    for e in docker_entries(ex)? {
        let cfg = ex.read_small(&e.config)?;
        out.insert(Digest::of_bytes(&cfg), parse_names(&e.repo_tags));
    }
    Ok(out)
}

fn parse_names(tags: &Option<Vec<String>>) -> Vec<Reference> {
    tags.iter()
        .flatten()
        .filter_map(|t| Reference::parse(t).ok())
        .collect()
}

/// Builds an OCI manifest for a docker-archive entry; returns it with each layer's file.
fn docker_manifest(ex: &Extracted, e: &DockerEntry) -> Result<(Vec<u8>, Manifest, Vec<PathBuf>)> {
    let cfg = ex.read_small(&e.config)?;
    let mut layers = Vec::new();
    let mut files = Vec::new();
    for l in &e.layers {
        let p = ex.path(l)?;
        let mut head = [0u8; 4];
        let f = File::open(&p).map_err(|e| ImageError::io("open", &p, e))?;
        let n = f
            .take(4)
            .read(&mut head)
            .map_err(|e| ImageError::io("read", &p, e))?;
        let media = match ingest::sniff(&head[..n]) {
            Compression::None => MEDIA_TAR,
            Compression::Gzip => MEDIA_TAR_GZIP,
            Compression::Zstd => MEDIA_TAR_ZSTD,
        };
        let (digest, size) = crate::digest::digest_reader(
            File::open(&p).map_err(|e| ImageError::io("open", &p, e))?,
        )
        .map_err(|e| ImageError::io("read", &p, e))?;
        layers.push(Descriptor {
            media_type: media.into(),
            digest,
            size,
            platform: None,
            annotations: None,
            urls: None,
        });
        files.push(p);
    }
    let m = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: Digest::of_bytes(&cfg),
            size: cfg.len() as u64,
            platform: None,
            annotations: None,
            urls: None,
        },
        layers,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| RegistryError::Protocol(e.to_string()))?;
    Ok((bytes, m, files))
}

/// The image manifests an OCI layout's index.json names (through nested indexes, picking the
/// host platform), with the names from their annotations.
/// A manifest's bytes, the parsed manifest and the names it carries.
type Named = (Vec<u8>, Manifest, Vec<Reference>);

fn oci_manifests(ex: &Extracted) -> Result<Vec<Named>> {
    let index_bytes = ex.read_small("index.json")?;
    let Document::Index(index) = manifest::parse_document(&index_bytes, None, "index.json")? else {
        return Err(RegistryError::Protocol(format!(
            "{}: index.json is not an image index",
            ex.source
        )));
    };
    let mut out = Vec::new();
    for d in &index.manifests {
        let names = annotation_names(d);
        let (bytes, m) = oci_resolve(ex, d)?;
        out.push((bytes, m, names));
    }
    Ok(out)
}

fn oci_resolve(ex: &Extracted, d: &Descriptor) -> Result<(Vec<u8>, Manifest)> {
    let bytes = ex.read_small(&blob_name(&d.digest))?;
    crate::registry::pull::verify_bytes(&bytes, &d.digest, Some(d.size), "manifest")?;
    match manifest::parse_document(&bytes, Some(&d.media_type), &d.digest.to_string())? {
        Document::Manifest(m) => Ok((bytes, m)),
        Document::Index(idx) => {
            let sel = manifest::select_platform(&idx, &Platform::host(), &d.digest.to_string())?;
            let sel = sel.clone();
            oci_resolve(ex, &sel)
        }
    }
}

fn annotation_names(d: &Descriptor) -> Vec<Reference> {
    let Some(a) = &d.annotations else {
        return Vec::new();
    };
    if let Some(n) = a.get(ANNOTATION_CONTAINERD_NAME)
        && let Ok(r) = Reference::parse(n)
    {
        return vec![r];
    }
    // A ref name is a full reference only when it has a repository (Podman); a bare tag
    // (Docker, skopeo) says nothing about the repository.
    match a.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains('/') || n.contains(':') => {
            Reference::parse(n).ok().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Verifies and unpacks the layers the store lacks, then commits the image.
fn load_one(
    store: &ImageStore,
    ex: &Extracted,
    bytes: &[u8],
    m: &Manifest,
    layer_files: Option<&[PathBuf]>,
    names: Vec<Reference>,
    limits: &UnpackLimits,
) -> Result<Image> {
    manifest::check_manifest(m, &ex.source)?;
    let config_bytes = ex.read_small(&blob_name(&m.config.digest)).or_else(|e| {
        // docker-archive configs are named `<hex>.json` (the caller built the manifest).
        layer_files.map_or(Err(e), |_| find_config(ex, &m.config.digest))
    })?;
    crate::registry::pull::verify_bytes(
        &config_bytes,
        &m.config.digest,
        Some(m.config.size),
        "config",
    )?;
    let diff_ids = config_diff_ids(&config_bytes, m)?;
    let mut layers = Vec::new();
    let mut staged = Vec::new();
    for (i, d) in m.layers.iter().enumerate() {
        if ingest::have_layer(store, &d.digest, &diff_ids[i]) {
            layers.push(
                ingest::stored_layer(store, &diff_ids[i]).unwrap_or(LayerRef {
                    diff_id: diff_ids[i].clone(),
                    blob: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    blob_size: d.size,
                    unpacked_size: 0,
                }),
            );
            continue;
        }
        let file = match layer_files {
            Some(f) => f[i].clone(),
            None => ex.path(&blob_name(&d.digest))?,
        };
        let s = stage_file(store, &file, d, &diff_ids[i], limits)?;
        layers.push(s.layer.clone());
        staged.push(s);
    }
    let fetched = Fetched {
        manifest_bytes: bytes,
        manifest: m,
        config_bytes: &config_bytes,
        layers,
        staged,
        names,
    };
    match ingest::commit(store, fetched)? {
        Ok(image) => Ok(image),
        Err(missing) => Err(RegistryError::Protocol(format!(
            "layers {missing:?} were removed while loading (a concurrent rmi?): load again"
        ))),
    }
}

fn find_config(ex: &Extracted, d: &Digest) -> Result<Vec<u8>> {
    ex.read_small(&format!("{}.json", d.hex()))
}

fn config_diff_ids(config: &[u8], m: &Manifest) -> Result<Vec<Digest>> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| RegistryError::Protocol(format!("image config: {e}")))?;
    let ids: Vec<Digest> = v
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .ok_or_else(|| RegistryError::Protocol("image config: no rootfs.diff_ids".into()))?;
    if ids.len() != m.layers.len() {
        return Err(RegistryError::Verify(format!(
            "the manifest has {} layers but the config lists {} diff IDs",
            m.layers.len(),
            ids.len()
        )));
    }
    Ok(ids)
}

/// Hashes the blob file while unpacking it, and checks digest, size and diff ID.
fn stage_file(
    store: &ImageStore,
    file: &Path,
    d: &Descriptor,
    diff_id: &Digest,
    limits: &UnpackLimits,
) -> Result<StagedLayer> {
    let compression = manifest::layer_compression(&d.media_type)?;
    let f = File::open(file).map_err(|e| ImageError::io("open", file, e))?;
    let mut tee = TeeDigest::new(BufReader::with_capacity(1 << 20, f), io::sink());
    let label = d.digest.to_string();
    let (dir, diff, stats) =
        ingest::stage_unpack(store, &label, &mut tee, compression, limits, Some(diff_id))?;
    let (digest, size, _) = tee.finish().map_err(|e| ImageError::io("read", file, e))?;
    if digest != d.digest || size != d.size {
        return Err(RegistryError::Verify(format!(
            "layer {}: the archive's blob hashes to {digest} ({size} bytes); the manifest says {} ({} bytes)",
            d.digest, d.digest, d.size
        )));
    }
    let layer = LayerRef {
        diff_id: diff,
        blob: digest,
        media_type: d.media_type.clone(),
        blob_size: size,
        unpacked_size: stats.bytes,
    };
    ingest::finish_layer_dir(dir.path(), &layer, &stats)?;
    Ok(StagedLayer {
        dir,
        layer,
        blob: Some(file.to_path_buf()),
        _hold: None,
    })
}
