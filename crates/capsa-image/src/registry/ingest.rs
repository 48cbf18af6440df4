//! The path every image from outside takes into the store (pulls and archive loads): a layer
//! blob stream is hashed, decompressed, unpacked into a staging dir under `tmp/` and checked
//! against its descriptor and diff ID; then one commit under the store lock renames blobs and
//! layers into place and records the image with its original manifest bytes (so that its
//! manifest digest is the one the registry or archive named).
//!
//! Owns staging dirs and partial blobs under `tmp/`. It writes nothing else except inside
//! the commit, and it never changes a layer that is already complete.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::manifest::{Compression, Manifest};
use super::{RegistryError, Result};
use crate::digest::{Digest, TeeDigest};
use crate::error::ImageError;
use crate::lock::StoreLock;
use crate::reference::Reference;
use crate::store::{Image, ImageStore, LayerRef, put_small_blob, sync_dir, write_atomic};
use crate::time;
use crate::unpack::{LayerStats, UnpackLimits, unpack_layer};

/// A layer unpacked and verified in `tmp/`, and the blob file that goes with it.
pub struct StagedLayer {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) layer: LayerRef,
    /// The verified blob file (moved into `blobs/` by the commit), when not already stored.
    pub(crate) blob: Option<PathBuf>,
    /// Holds the partial download's flock until the commit (pull.rs).
    pub(crate) _hold: Option<File>,
}

/// Wraps the decompressor the media type names around a raw blob stream.
pub fn decoder<'a>(raw: impl Read + 'a, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(raw)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        ),
    })
}

/// Guesses the compression of a blob from its first bytes (docker-archive layers carry no
/// media type): gzip (RFC 1952) and zstd (RFC 8878) magic, else a plain tar.
pub fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Decompresses and unpacks one layer stream into a new staging dir, returning the dir, the
/// diff ID (sha256 of the uncompressed tar) and what was written. The caller verifies the
/// raw stream's digest; this checks the diff ID when `expect` is given.
pub fn stage_unpack(
    store: &ImageStore,
    label: &str,
    raw: impl Read,
    c: Compression,
    limits: &UnpackLimits,
    expect: Option<&Digest>,
) -> Result<(tempfile::TempDir, Digest, LayerStats)> {
    let tmp = store.tmp_dir();
    let dir = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(&tmp)
        .map_err(|e| ImageError::io("create staging dir in", &tmp, e))?;
    let root = dir.path().join("root");
    fs::create_dir(&root).map_err(|e| ImageError::io("create", &root, e))?;
    let bad_stream = |e: io::Error| ImageError::Unpack {
        layer: label.to_string(),
        entry: "<stream>".to_string(),
        reason: format!("cannot decompress: {e}"),
    };
    let decoded = decoder(raw, c).map_err(bad_stream)?;
    // One byte over the limit proves the stream is too big without reading all of it.
    let mut plain = TeeDigest::new(decoded.take(limits.max_bytes.saturating_add(1)), io::sink());
    let stats = unpack_layer(label, &mut plain, &root, limits)?;
    let (diff_id, size, _) = plain.finish().map_err(bad_stream)?;
    if size > limits.max_bytes {
        return Err(ImageError::Unpack {
            layer: label.to_string(),
            entry: "<end of archive>".to_string(),
            reason: format!(
                "the layer exceeds the size limit of {} bytes (a decompression bomb?); raise CAPSA_MAX_LAYER_SIZE if it is genuine",
                limits.max_bytes
            ),
        }
        .into());
    }
    if let Some(want) = expect
        && *want != diff_id
    {
        return Err(RegistryError::Verify(format!(
            "layer {label}: its uncompressed content hashes to {diff_id}, but the image config says {want} (a damaged or forged image)"
        )));
    }
    Ok((dir, diff_id, stats))
}

/// Writes layer.json and then, last and after a syncfs, the `complete` marker.
pub fn finish_layer_dir(dir: &Path, layer: &LayerRef, stats: &LayerStats) -> Result<()> {
    let meta = serde_json::json!({ "layer": layer, "entries": stats.entries });
    let data = serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::Json {
        path: dir.join("layer.json"),
        source: e,
    })?;
    write_atomic(dir, "layer.json", &data, false)?;
    // Written by this unpacker: its opaque dirs carry user.overlay.opaque too.
    crate::layer_upgrade::mark_fresh(dir)?;
    let d = File::open(dir).map_err(|e| ImageError::io("open", dir, e))?;
    rustix::fs::syncfs(&d).map_err(|e| ImageError::sys("syncfs", dir, e))?;
    write_atomic(dir, "complete", b"", true)?;
    Ok(())
}

/// The stored record of a complete layer (for layers a pull finds already present).
pub fn stored_layer(store: &ImageStore, diff_id: &Digest) -> Option<LayerRef> {
    let path = store.layers_dir().join(diff_id.hex()).join("layer.json");
    let data = fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    serde_json::from_value(v.get("layer")?.clone()).ok()
}

/// Whether both the blob and the unpacked layer are already in the store.
pub fn have_layer(store: &ImageStore, blob: &Digest, diff_id: &Digest) -> bool {
    store.blob_path(blob).exists() && store.layer_complete(diff_id)
}

/// An image ready to commit: its documents as fetched and its layers in order.
pub struct Fetched<'a> {
    pub manifest_bytes: &'a [u8],
    pub manifest: &'a Manifest,
    pub config_bytes: &'a [u8],
    pub layers: Vec<LayerRef>,
    pub staged: Vec<StagedLayer>,
    pub names: Vec<Reference>,
}

/// The commit: under the lock, checks that layers the caller found present are still there
/// (a concurrent `rmi` may have collected them), moves staged blobs and layers into place,
/// writes the config and manifest blobs, records the image and points the names at it.
/// Returns the layers that went missing instead when there are any, so the caller can fetch
/// them again.
pub fn commit(
    store: &ImageStore,
    f: Fetched<'_>,
) -> Result<std::result::Result<Image, Vec<Digest>>> {
    let _lock = StoreLock::acquire(store.root())?;
    let staged_ids: Vec<&Digest> = f.staged.iter().map(|s| &s.layer.diff_id).collect();
    let missing: Vec<Digest> = f
        .layers
        .iter()
        .filter(|l| !staged_ids.contains(&&l.diff_id) && !have_layer(store, &l.blob, &l.diff_id))
        .map(|l| l.diff_id.clone())
        .collect();
    if !missing.is_empty() {
        return Ok(Err(missing));
    }
    for s in &f.staged {
        move_staged(store, s)?;
    }
    let config = put_small_blob(store, f.config_bytes)?;
    if config != f.manifest.config.digest {
        return Err(RegistryError::Verify(format!(
            "the config hashes to {config}, not to {} as the manifest says",
            f.manifest.config.digest
        )));
    }
    let manifest = put_small_blob(store, f.manifest_bytes)?;
    let created = serde_json::from_slice::<serde_json::Value>(f.config_bytes)
        .ok()
        .and_then(|v| v.get("created")?.as_str().and_then(time::parse_rfc3339))
        .unwrap_or(0);
    let image = Image {
        manifest: manifest.clone(),
        config,
        size: f.layers.iter().map(|l| l.unpacked_size).sum(),
        layers: f.layers,
        created,
        references: Vec::new(),
    };
    let mut index = store.read_index()?;
    index.images.insert(manifest.to_string(), image.clone());
    for n in &f.names {
        index.refs.insert(n.to_string(), manifest.clone());
    }
    store.write_index(&mut index)?;
    Ok(Ok(Image {
        references: f.names,
        ..image
    }))
}

fn move_staged(store: &ImageStore, s: &StagedLayer) -> Result<()> {
    let blob_dest = store.blob_path(&s.layer.blob);
    if let Some(src) = &s.blob
        && !blob_dest.exists()
    {
        fs::rename(src, &blob_dest).map_err(|e| ImageError::io("move blob into", &blob_dest, e))?;
        sync_dir(&store.blobs_dir())?;
    }
    if store.layer_complete(&s.layer.diff_id) {
        return Ok(());
    }
    let dest = store.layers_dir().join(s.layer.diff_id.hex());
    if dest.exists() {
        // Only a crash between the rename and the marker leaves this; replace it.
        fs::remove_dir_all(&dest)
            .map_err(|e| ImageError::io("remove incomplete layer", &dest, e))?;
    }
    // The blob may sit inside the staging dir (archive loads); it is in blobs/ by now.
    let _ = fs::remove_file(s.dir.path().join("blob"));
    fs::rename(s.dir.path(), &dest).map_err(|e| ImageError::io("move layer into", &dest, e))?;
    sync_dir(&store.layers_dir())?;
    Ok(())
}
