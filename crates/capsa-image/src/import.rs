//! `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer OCI image, and
//! [`ImageStore::add_layer`] stacks a tar on an existing image the same way.
//!
//! Owns staging (tmp/), the layer blob and unpacked dir, the OCI config and manifest it
//! writes, and the commit into the store. It reads the input once: the raw bytes go to the
//! blob file and its hasher, the decompressed bytes to the diff-ID hasher and the unpacker.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::Path;

use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, RootFsBuilder,
};

use crate::change::{self, Change};
use crate::digest::{Digest, TeeDigest};
use crate::error::{ImageError, Result};
use crate::lock::StoreLock;
use crate::reference::Reference;
use crate::store::{Image, ImageStore, LayerRef, put_small_blob, sync_dir, write_atomic};
use crate::time;
use crate::unpack::{LayerStats, UnpackLimits, unpack_layer};

/// OCI image-spec media types of layer blobs, by compression.
pub const MEDIA_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Options of `capsa import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The name to give the image (`REPOSITORY[:TAG]`); none leaves it `<none>:<none>`.
    pub reference: Option<Reference>,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    /// The history comment (`--message`).
    pub message: Option<String>,
    /// Where the tar came from, for the history entry and error messages.
    pub source: String,
    pub limits: UnpackLimits,
}

/// A layer unpacked and hashed in tmp/, not yet visible in the store.
struct StagedLayer {
    dir: tempfile::TempDir,
    layer: LayerRef,
}

impl ImageStore {
    /// Imports a rootfs tarball as a new one-layer image and prints nothing; returns the image.
    pub fn import(&self, input: impl Read, opts: &ImportOptions) -> Result<Image> {
        self.add_layer(None, input, opts)
    }

    /// Unpacks `input` as a new top layer over `base` (or over nothing) and commits the new
    /// image. Whiteouts in the tar hide files of `base` once stacked by overlayfs.
    pub fn add_layer(
        &self,
        base: Option<&Image>,
        input: impl Read,
        opts: &ImportOptions,
    ) -> Result<Image> {
        let changes = opts
            .changes
            .iter()
            .map(|c| change::parse(c))
            .collect::<Result<Vec<_>>>()?;
        let staged = self.stage_layer(input, &opts.source, &opts.limits)?;
        let base_config = base.map(|b| self.config(b)).transpose()?;
        let created = time::now_unix();
        let config = build_config(base_config, &changes, &staged.layer, opts, created)?;
        let config_bytes = to_json(&config, self.root())?;
        let mut layers = base.map(|b| b.layers.clone()).unwrap_or_default();
        layers.push(staged.layer.clone());
        self.commit(
            staged,
            &config_bytes,
            layers,
            created,
            opts.reference.as_ref(),
        )
    }

    /// Reads the input once into tmp/: the raw bytes to the blob file, the decompressed tar
    /// through the unpacker; then writes layer.json and the `complete` marker.
    fn stage_layer(
        &self,
        input: impl Read,
        source: &str,
        limits: &UnpackLimits,
    ) -> Result<StagedLayer> {
        let tmp = self.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io("create staging dir in", &tmp, e))?;
        let root = dir.path().join("root");
        fs::create_dir(&root).map_err(|e| ImageError::io("create", &root, e))?;
        let blob_path = dir.path().join("blob");
        let blob = File::create(&blob_path).map_err(|e| ImageError::io("create", &blob_path, e))?;
        let mut raw = TeeDigest::new(input, BufWriter::with_capacity(256 * 1024, blob));
        let (media_type, diff_id, stats) = {
            let (decoded, media_type) = decompress(&mut raw, source)?;
            // One byte over the limit proves the stream is too big without reading it all.
            let mut plain =
                TeeDigest::new(decoded.take(limits.max_bytes.saturating_add(1)), io::sink());
            let stats = unpack_layer(source, &mut plain, &root, limits)?;
            let (diff_id, size, _) = plain.finish().map_err(|e| read_error(source, e))?;
            if size > limits.max_bytes {
                return Err(too_big(source, limits));
            }
            (media_type, diff_id, stats)
        };
        let (blob_digest, blob_size, writer) = raw.finish().map_err(|e| read_error(source, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| ImageError::io("write", &blob_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ImageError::io("fsync", &blob_path, e))?;
        let layer = LayerRef {
            diff_id,
            blob: blob_digest,
            media_type: media_type.to_string(),
            blob_size,
            unpacked_size: stats.bytes,
        };
        finish_layer_dir(dir.path(), &layer, &stats)?;
        Ok(StagedLayer { dir, layer })
    }

    /// Under the lock: moves the blob and layer into place (unless an identical one is already
    /// there), writes config and manifest, records the image and points the name at it.
    fn commit(
        &self,
        staged: StagedLayer,
        config: &[u8],
        layers: Vec<LayerRef>,
        created: i64,
        name: Option<&Reference>,
    ) -> Result<Image> {
        let _lock = StoreLock::acquire(self.root())?;
        let config_digest = put_small_blob(self, config)?;
        let manifest = build_manifest(&config_digest, config.len() as u64, &layers)?;
        let manifest_bytes = to_json(&manifest, self.root())?;
        let manifest_digest = put_small_blob(self, &manifest_bytes)?;
        self.move_staged(&staged)?;
        let size = layers.iter().map(|l| l.unpacked_size).sum();
        let image = Image {
            manifest: manifest_digest.clone(),
            config: config_digest,
            layers,
            created,
            size,
            references: Vec::new(),
        };
        let mut index = self.read_index()?;
        index
            .images
            .insert(manifest_digest.to_string(), image.clone());
        if let Some(r) = name {
            index.refs.insert(r.to_string(), manifest_digest);
        }
        self.write_index(&mut index)?;
        Ok(Image {
            references: name.into_iter().cloned().collect(),
            ..image
        })
    }

    fn move_staged(&self, staged: &StagedLayer) -> Result<()> {
        let blob_dest = self.blob_path(&staged.layer.blob);
        if !blob_dest.exists() {
            let src = staged.dir.path().join("blob");
            fs::rename(&src, &blob_dest)
                .map_err(|e| ImageError::io("move blob into", &blob_dest, e))?;
            sync_dir(&self.blobs_dir())?;
        }
        let layer_dest = self.layers_dir().join(staged.layer.diff_id.hex());
        if self.layer_complete(&staged.layer.diff_id) {
            return Ok(());
        }
        if layer_dest.exists() {
            // Only a crash between rename and marker could leave this; replace it.
            fs::remove_dir_all(&layer_dest)
                .map_err(|e| ImageError::io("remove incomplete layer", &layer_dest, e))?;
        }
        let _ = fs::remove_file(staged.dir.path().join("blob"));
        fs::rename(staged.dir.path(), &layer_dest)
            .map_err(|e| ImageError::io("move layer into", &layer_dest, e))?;
        sync_dir(&self.layers_dir())
    }
}

/// Picks the decompressor from the magic bytes (gzip RFC 1952, zstd RFC 8878 frame magic).
fn decompress<'a>(
    mut input: impl Read + 'a,
    source: &str,
) -> Result<(Box<dyn Read + 'a>, &'static str)> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(read_error(source, e)),
        }
    }
    let prefixed = io::Cursor::new(head[..n].to_vec()).chain(input);
    match &head[..n] {
        [0x1f, 0x8b, ..] => Ok((
            Box::new(flate2::read::MultiGzDecoder::new(prefixed)),
            MEDIA_TAR_GZIP,
        )),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let dec = ruzstd::decoding::StreamingDecoder::new(prefixed).map_err(|e| {
                ImageError::Format(format!("{source}: not a valid zstd stream: {e}"))
            })?;
            Ok((Box::new(dec), MEDIA_TAR_ZSTD))
        }
        [b'B', b'Z', b'h', ..] | [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            Err(ImageError::Format(format!(
                "{source}: bzip2 and xz archives are not supported; decompress it first or use gzip or zstd"
            )))
        }
        _ => Ok((Box::new(prefixed), MEDIA_TAR)),
    }
}

fn read_error(source: &str, e: io::Error) -> ImageError {
    ImageError::Format(format!("cannot read {source}: {e}"))
}

fn too_big(source: &str, limits: &UnpackLimits) -> ImageError {
    ImageError::Unpack {
        layer: source.to_string(),
        entry: "<end of archive>".to_string(),
        reason: format!(
            "the layer exceeds the size limit of {} bytes (a decompression bomb?)",
            limits.max_bytes
        ),
    }
}

/// Writes the layer's metadata and then, last, the marker that says the layer is complete.
fn finish_layer_dir(dir: &Path, layer: &LayerRef, stats: &LayerStats) -> Result<()> {
    let meta = serde_json::json!({ "layer": layer, "entries": stats.entries });
    let data = serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::Json {
        path: dir.join("layer.json"),
        source: e,
    })?;
    write_atomic(dir, "layer.json", &data, false)?;
    // Written by this unpacker: its opaque dirs carry user.overlay.opaque too.
    crate::layer_upgrade::mark_fresh(dir)?;
    // Unpacked files are not fsynced one by one; one syncfs makes them durable before the
    // marker claims the layer is complete.
    let d = File::open(dir).map_err(|e| ImageError::io("open", dir, e))?;
    rustix::fs::syncfs(&d).map_err(|e| ImageError::sys("syncfs", dir, e))?;
    write_atomic(dir, "complete", b"", true)
}

fn build_config(
    base: Option<ImageConfiguration>,
    changes: &[Change],
    layer: &LayerRef,
    opts: &ImportOptions,
    created: i64,
) -> Result<ImageConfiguration> {
    let err = |e: oci_spec::OciSpecError| {
        ImageError::Format(format!("cannot build the image config: {e}"))
    };
    let mut config = match &base {
        Some(b) => b.config().clone().unwrap_or_default(),
        None => ConfigBuilder::default().build().map_err(err)?,
    };
    for c in changes {
        change::apply(c, &mut config);
    }
    let mut diff_ids = base
        .as_ref()
        .map(|b| b.rootfs().diff_ids().clone())
        .unwrap_or_default();
    diff_ids.push(layer.diff_id.to_string());
    let mut history = base
        .as_ref()
        .and_then(|b| b.history().clone())
        .unwrap_or_default();
    let mut h = HistoryBuilder::default()
        .created(time::rfc3339(created))
        .created_by(format!("capsa import {}", opts.source));
    if let Some(m) = &opts.message {
        h = h.comment(m.clone());
    }
    history.push(h.build().map_err(err)?);
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(err)?;
    let mut b = ImageConfigurationBuilder::default()
        .created(time::rfc3339(created))
        .config(config)
        .rootfs(rootfs)
        .history(history);
    if let Some(base) = &base {
        b = b
            .architecture(base.architecture().clone())
            .os(base.os().clone());
    }
    b.build().map_err(err)
}

fn build_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[LayerRef],
) -> Result<oci_spec::image::ImageManifest> {
    let err = |e: oci_spec::OciSpecError| {
        ImageError::Format(format!("cannot build the image manifest: {e}"))
    };
    let digest = |d: &Digest| {
        d.to_string()
            .parse::<oci_spec::image::Digest>()
            .map_err(err)
    };
    let config_desc = Descriptor::new(MediaType::ImageConfig, config_size, digest(config)?);
    let mut layer_descs = Vec::new();
    for l in layers {
        let mt = match l.media_type.as_str() {
            MEDIA_TAR => MediaType::ImageLayer,
            MEDIA_TAR_GZIP => MediaType::ImageLayerGzip,
            MEDIA_TAR_ZSTD => MediaType::ImageLayerZstd,
            other => MediaType::Other(other.to_string()),
        };
        layer_descs.push(Descriptor::new(mt, l.blob_size, digest(&l.blob)?));
    }
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(err)
}

fn to_json(v: &impl serde::Serialize, root: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ImageError::Json {
        path: root.to_path_buf(),
        source: e,
    })
}
