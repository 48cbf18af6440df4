//! The image store: content-addressed blobs, unpacked layers, image records, names and leases.
//!
//! Owns everything under the store root except `containers/` (the front end's) and the
//! upper/work dirs of snapshots (snapshot.rs). Layout (docs/images.md):
//!
//! ```text
//! <root>/lock                     flock: serialises every change below
//! <root>/images.json              image records and name -> manifest digest refs (atomic rename)
//! <root>/blobs/sha256/<hex>       manifests, configs, layer blobs; named by their sha256
//! <root>/layers/<diffid-hex>/     root/ (the unpacked layer), layer.json, complete (written last)
//! <root>/leases/<container>.json  what a container's snapshot uses; GC keeps it
//! <root>/tmp/                     staging: nothing here is referenced
//! ```
//!
//! Invariant: a blob or layer becomes visible (renamed out of tmp/) only under the lock and in
//! the same critical section that references it, so garbage collection never races a commit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, digest_reader};
use crate::error::{ImageError, Result};
use crate::lock::StoreLock;
use crate::reference::Reference;

/// The store's default root.
pub const DEFAULT_ROOT: &str = "/var/lib/capsa";
const INDEX: &str = "images.json";
const INDEX_VERSION: u32 = 1;
/// Staging entries older than this are left-overs of a crashed capsa; GC removes them.
const STALE_TMP_SECS: u64 = 24 * 3600;

/// One layer of an image: its blob as stored and its unpacked directory's diff ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// sha256 of the uncompressed tar: names `layers/<hex>` and goes in the config's rootfs.
    pub diff_id: Digest,
    /// sha256 of the blob as stored (compressed or not): names `blobs/sha256/<hex>`.
    pub blob: Digest,
    pub media_type: String,
    pub blob_size: u64,
    /// Bytes of file data in the unpacked layer.
    pub unpacked_size: u64,
}

/// An image in the store. Its ID is the digest of its config, as in Docker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub manifest: Digest,
    pub config: Digest,
    /// Bottom layer first, as in the manifest and rootfs.diff_ids.
    pub layers: Vec<LayerRef>,
    /// Creation time (Unix seconds) from the config.
    pub created: i64,
    /// Sum of the layers' unpacked sizes.
    pub size: u64,
    /// The names that point at this image (filled in on read; refs are the source of truth).
    #[serde(skip)]
    pub references: Vec<Reference>,
}

impl Image {
    /// The image ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    version: u32,
    /// Keyed by manifest digest.
    #[serde(default)]
    pub(crate) images: BTreeMap<String, Image>,
    /// Full reference (`docker.io/library/busybox:latest`) -> manifest digest.
    #[serde(default)]
    pub(crate) refs: BTreeMap<String, Digest>,
}

/// What a snapshot uses; kept in `leases/<container>.json` so GC and rmi see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<LayerRef>,
}

/// One effect of `rmi`, printed as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed (`Untagged: busybox:latest`).
    Untagged(String),
    /// An image record was removed (`Deleted: sha256:...`).
    Deleted(Digest),
}

/// The front end's answer to "does a container use this image?": the user's name, if any.
pub type InUse = dyn Fn(&Image) -> Option<String>;

/// Options for [`ImageStore::remove`].
#[derive(Default)]
pub struct RemoveOptions<'a> {
    /// Remove even when a container uses the image or several names point at it.
    pub force: bool,
    /// Asked for each candidate image; returns a description of the user (a container name)
    /// when one uses it. Leases written by snapshots are checked in any case.
    pub in_use: Option<&'a InUse>,
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// The image store at one root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let store = ImageStore { root: root.into() };
        for dir in [
            store.root.clone(),
            store.blobs_dir(),
            store.layers_dir(),
            store.tmp_dir(),
            store.leases_dir(),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|e| ImageError::io("create the store directory", &dir, e))?;
        }
        Ok(store)
    }

    /// The root chosen by `--root`/`CAPSA_ROOT`, else [`DEFAULT_ROOT`].
    pub fn default_root() -> PathBuf {
        std::env::var_os("CAPSA_ROOT").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// The unpacked directory of a layer: an overlayfs lower dir.
    pub fn layer_root(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex()).join("root")
    }

    /// Whether a layer is fully unpacked (its `complete` marker, written last, exists).
    pub fn layer_complete(&self, diff_id: &Digest) -> bool {
        self.layers_dir()
            .join(diff_id.hex())
            .join("complete")
            .exists()
    }

    /// Reads a blob and checks that it still hashes to its name.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let data = fs::read(&path).map_err(|e| ImageError::io("read blob", &path, e))?;
        let actual = Digest::of_bytes(&data);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                path,
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// Re-hashes a blob of any size (for checks and `save`).
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let f = File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))?;
        let (actual, size) = digest_reader(f).map_err(|e| ImageError::io("read blob", &path, e))?;
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                path,
                actual: actual.to_string(),
            });
        }
        Ok(size)
    }

    /// The image's OCI config, verified against its digest.
    pub fn config(&self, image: &Image) -> Result<oci_spec::image::ImageConfiguration> {
        let data = self.read_blob(&image.config)?;
        serde_json::from_slice(&data).map_err(|e| ImageError::Json {
            path: self.blob_path(&image.config),
            source: e,
        })
    }

    /// The image's OCI manifest, verified against its digest.
    pub fn manifest(&self, image: &Image) -> Result<oci_spec::image::ImageManifest> {
        let data = self.read_blob(&image.manifest)?;
        serde_json::from_slice(&data).map_err(|e| ImageError::Json {
            path: self.blob_path(&image.manifest),
            source: e,
        })
    }

    pub(crate) fn read_index(&self) -> Result<Index> {
        let path = self.root.join(INDEX);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(ImageError::io("read", &path, e)),
        };
        serde_json::from_slice(&data).map_err(|e| ImageError::Json { path, source: e })
    }

    /// Replaces images.json atomically (temp file, fsync, rename); the caller holds the lock.
    pub(crate) fn write_index(&self, index: &mut Index) -> Result<()> {
        index.version = INDEX_VERSION;
        let data = serde_json::to_vec_pretty(index).map_err(|e| ImageError::Json {
            path: self.root.join(INDEX),
            source: e,
        })?;
        write_atomic(&self.root, INDEX, &data, true)
    }

    /// Every image, newest first, with the names that point at it.
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.read_index()?;
        let mut out: Vec<Image> = index
            .images
            .keys()
            .filter_map(|k| with_refs(&index, k))
            .collect();
        out.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then_with(|| a.config.cmp(&b.config))
        });
        Ok(out)
    }

    /// Finds an image by name (`busybox`, `busybox:1`, `name@sha256:<manifest>`), by full ID
    /// (`sha256:<config>`) or by a unique ID prefix.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image> {
        let index = self.read_index()?;
        let (key, _) = find(&index, name_or_id)?;
        with_refs(&index, &key).ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))
    }

    /// Points `target` (default tag `latest`) at the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image> {
        let target = Reference::parse(target)?;
        if target.digest().is_some() {
            return Err(ImageError::Conflict(format!(
                "refusing to create a tag with a digest reference: {target}"
            )));
        }
        let _lock = StoreLock::acquire(&self.root)?;
        let mut index = self.read_index()?;
        let (key, _) = find(&index, source)?;
        let manifest = index
            .images
            .get(&key)
            .map(|i| i.manifest.clone())
            .ok_or_else(|| ImageError::NotFound(source.to_string()))?;
        index.refs.insert(target.to_string(), manifest);
        self.write_index(&mut index)?;
        with_refs(&index, &key).ok_or_else(|| ImageError::NotFound(source.to_string()))
    }

    /// `rmi`: untags a name, and deletes the image once nothing names it; then collects garbage.
    /// Follows Docker's conflict rules (see docs/images.md).
    pub fn remove(&self, name_or_id: &str, opts: &RemoveOptions<'_>) -> Result<Vec<Removal>> {
        let _lock = StoreLock::acquire(&self.root)?;
        let mut index = self.read_index()?;
        let (key, by_ref) = find(&index, name_or_id)?;
        let image =
            with_refs(&index, &key).ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))?;
        let mut out = Vec::new();
        if let Some(r) = by_ref.as_ref().filter(|_| image.references.len() > 1) {
            index.refs.remove(&r.to_string());
            out.push(Removal::Untagged(r.familiar()));
            self.write_index(&mut index)?;
            return Ok(out);
        }
        if !opts.force {
            self.check_removable(&image, by_ref.as_ref(), opts)?;
        }
        for r in &image.references {
            index.refs.remove(&r.to_string());
            out.push(Removal::Untagged(r.familiar()));
        }
        index.images.remove(&key);
        out.push(Removal::Deleted(image.config.clone()));
        self.write_index(&mut index)?;
        self.collect_garbage_locked(&index)?;
        Ok(out)
    }

    /// Docker's refusals without `-f`: an image in use, or named in several repositories.
    fn check_removable(
        &self,
        image: &Image,
        by_ref: Option<&Reference>,
        opts: &RemoveOptions<'_>,
    ) -> Result<()> {
        let id = image.config.short();
        let mut users: Vec<String> = self
            .leases()?
            .into_iter()
            .filter(|l| l.manifest == image.manifest)
            .map(|l| l.container_id)
            .collect();
        if let Some(f) = opts.in_use
            && let Some(user) = f(image)
            && !users.contains(&user)
        {
            users.push(user);
        }
        if let Some(user) = users.first() {
            return Err(ImageError::Conflict(match by_ref {
                Some(r) => format!(
                    "unable to remove repository reference \"{}\" (must force) - container {user} is using its referenced image {id}",
                    r.familiar()
                ),
                None => format!(
                    "unable to delete {id} (must be forced) - image is being used by container {user}"
                ),
            }));
        }
        if by_ref.is_none() && image.references.len() > 1 {
            return Err(ImageError::Conflict(format!(
                "unable to delete {id} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        Ok(())
    }

    /// Removes blobs and layers no image record and no lease references.
    pub fn collect_garbage(&self) -> Result<GcStats> {
        let _lock = StoreLock::acquire(&self.root)?;
        let index = self.read_index()?;
        self.collect_garbage_locked(&index)
    }

    fn collect_garbage_locked(&self, index: &Index) -> Result<GcStats> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        let mut keep = |manifest: &Digest, config: &Digest, ls: &[LayerRef]| {
            blobs.insert(manifest.hex().to_string());
            blobs.insert(config.hex().to_string());
            for l in ls {
                blobs.insert(l.blob.hex().to_string());
                layers.insert(l.diff_id.hex().to_string());
            }
        };
        for img in index.images.values() {
            keep(&img.manifest, &img.config, &img.layers);
        }
        for lease in self.leases()? {
            keep(&lease.manifest, &lease.config, &lease.layers);
        }
        let mut stats = GcStats::default();
        for (name, path) in list_dir(&self.blobs_dir())? {
            if !blobs.contains(&name) {
                stats.bytes += fs::symlink_metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path).map_err(|e| ImageError::io("remove blob", &path, e))?;
                stats.blobs += 1;
            }
        }
        for (name, path) in list_dir(&self.layers_dir())? {
            if !layers.contains(&name) {
                self.remove_layer_dir(&name, &path)?;
                stats.layers += 1;
            }
        }
        self.remove_stale_tmp()?;
        Ok(stats)
    }

    /// Renames the layer into tmp/ first, so a half-deleted layer is never seen under layers/.
    fn remove_layer_dir(&self, name: &str, path: &Path) -> Result<()> {
        let doomed = self
            .tmp_dir()
            .join(format!("gc-{name}-{}", std::process::id()));
        fs::rename(path, &doomed)
            .map_err(|e| ImageError::io("move layer out of the store", path, e))?;
        fs::remove_dir_all(&doomed).map_err(|e| ImageError::io("remove layer", &doomed, e))
    }

    fn remove_stale_tmp(&self) -> Result<()> {
        for (_, path) in list_dir(&self.tmp_dir())? {
            let age = fs::symlink_metadata(&path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a.as_secs() > STALE_TMP_SECS) {
                let res = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                res.map_err(|e| ImageError::io("remove stale staging entry", &path, e))?;
            }
        }
        Ok(())
    }

    /// Every lease (one per prepared container snapshot).
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        for (name, path) in list_dir(&self.leases_dir())? {
            if !name.ends_with(".json") {
                continue;
            }
            let data = fs::read(&path).map_err(|e| ImageError::io("read lease", &path, e))?;
            out.push(serde_json::from_slice(&data).map_err(|e| ImageError::Json {
                path: path.clone(),
                source: e,
            })?);
        }
        Ok(out)
    }

    /// Records that `container_id` uses `image`, checking under the lock that the image and its
    /// layers are still there (so GC cannot remove them between the check and the lease).
    pub(crate) fn add_lease(&self, container_id: &str, image: &Image) -> Result<Lease> {
        let _lock = StoreLock::acquire(&self.root)?;
        let index = self.read_index()?;
        if !index.images.contains_key(&image.manifest.to_string()) {
            return Err(ImageError::NotFound(image.config.to_string()));
        }
        for l in &image.layers {
            if !self.layer_complete(&l.diff_id) {
                return Err(ImageError::Format(format!(
                    "layer {} of image {} is missing or incomplete: the store is damaged (remove the image and import it again)",
                    l.diff_id,
                    image.config.short()
                )));
            }
            // Layers from an older capsa get user.overlay.opaque once, before any container
            // (possibly user-namespaced, `userxattr`) stacks them; a stat when already done.
            crate::layer_upgrade::ensure_user_opaque(&self.layers_dir().join(l.diff_id.hex()))?;
        }
        let lease = Lease {
            container_id: container_id.to_string(),
            manifest: image.manifest.clone(),
            config: image.config.clone(),
            layers: image.layers.clone(),
        };
        let data = serde_json::to_vec(&lease).map_err(|e| ImageError::Json {
            path: self.leases_dir(),
            source: e,
        })?;
        write_atomic(
            &self.leases_dir(),
            &format!("{container_id}.json"),
            &data,
            false,
        )?;
        Ok(lease)
    }

    /// Drops a container's lease; its layers become collectable if no image uses them.
    pub(crate) fn drop_lease(&self, container_id: &str) -> Result<()> {
        let _lock = StoreLock::acquire(&self.root)?;
        let path = self.leases_dir().join(format!("{container_id}.json"));
        let lease: Option<Lease> = fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ImageError::io("remove lease", &path, e)),
        }
        let index = self.read_index()?;
        // While the image record exists it references everything the lease did, so nothing
        // new became garbage: skip the scan on the common `rm` path.
        if lease.is_some_and(|l| index.images.contains_key(&l.manifest.to_string())) {
            return Ok(());
        }
        self.collect_garbage_locked(&index).map(|_| ())
    }
}

/// The image record under `key` with the names that point at it.
fn with_refs(index: &Index, key: &str) -> Option<Image> {
    let mut img = index.images.get(key)?.clone();
    img.references = index
        .refs
        .iter()
        .filter(|(_, d)| d.to_string() == key)
        .filter_map(|(r, _)| Reference::parse(r).ok())
        .collect();
    Some(img)
}

/// Resolves a user's argument to an image key and, when it was a name, that name.
pub(crate) fn find(index: &Index, arg: &str) -> Result<(String, Option<Reference>)> {
    if let Some(hex) = arg.strip_prefix("sha256:") {
        return find_by_id(index, hex, arg).map(|k| (k, None));
    }
    if Digest::from_hex(arg).is_some() {
        return find_by_id(index, arg, arg).map(|k| (k, None));
    }
    let parsed = Reference::parse(arg);
    if let Ok(r) = &parsed {
        if let Some(d) = r.digest() {
            let key = d.to_string();
            if index.images.contains_key(&key) {
                return Ok((key, None));
            }
        } else if let Some(d) = index.refs.get(&r.to_string()) {
            return Ok((d.to_string(), Some(r.clone())));
        }
    }
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return find_by_id(index, arg, arg).map(|k| (k, None));
    }
    match parsed {
        Err(e) => Err(e.into()),
        Ok(_) => Err(ImageError::NotFound(arg.to_string())),
    }
}

fn find_by_id(index: &Index, prefix: &str, arg: &str) -> Result<String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut hits = index
        .images
        .iter()
        .filter(|(_, img)| img.config.hex().starts_with(&prefix))
        .map(|(k, _)| k.clone());
    let first = hits
        .next()
        .ok_or_else(|| ImageError::NotFound(arg.to_string()))?;
    // Several manifests may share one config (same image, other compression): any will do
    // unless the prefix is short enough to match different configs.
    let first_cfg = index.images.get(&first).map(|i| i.config.clone());
    if hits.any(|k| index.images.get(&k).map(|i| i.config.clone()) != first_cfg) {
        return Err(ImageError::Ambiguous(arg.to_string()));
    }
    Ok(first)
}

/// Lists a directory's entries by name, skipping nothing; a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ImageError::io("list", dir, e))?;
        out.push((ent.file_name().to_string_lossy().into_owned(), ent.path()));
    }
    Ok(out)
}

/// Writes `dir/name` atomically: a temp file in the same directory, fsync (when `durable`),
/// rename over the old one (rename(2) is atomic within a filesystem), fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8], durable: bool) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create temp file in", dir, e))?;
    tmp.write_all(data)
        .map_err(|e| ImageError::io("write", tmp.path(), e))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| ImageError::io("fsync", tmp.path(), e))?;
    }
    let dest = dir.join(name);
    tmp.persist(&dest)
        .map_err(|e| ImageError::io("rename into place", &dest, e.error))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync directory", dir, e))
}

/// Writes a small blob (config, manifest) into the store, verified by construction.
pub(crate) fn put_small_blob(store: &ImageStore, data: &[u8]) -> Result<Digest> {
    let digest = Digest::of_bytes(data);
    if !store.blob_path(&digest).exists() {
        write_atomic(&store.blobs_dir(), digest.hex(), data, true)?;
    }
    Ok(digest)
}
