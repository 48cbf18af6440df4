//! `capsa pull`: resolve a reference to one platform's manifest, fetch the config, download
//! and unpack the layers in parallel, and commit the image.
//!
//! Owns the pull's partial downloads (`tmp/pull-<blob hex>.partial`, each flock'ed by the one
//! pull that writes it) and the staging dirs of the layers it unpacks. Each layer is read from
//! the network once: the bytes are appended to the partial file, hashed, decompressed and
//! unpacked in one pass. If the connection breaks, the partial file keeps what arrived and
//! its length is the offset the next pull resumes from with an HTTP Range request (RFC 9110
//! section 14); its first bytes are replayed from disk through the same hasher and unpacker.
//! A partial file never looks like a blob: it only enters `blobs/` after its digest and size
//! match the descriptor.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::fs::FlockOperation;
use sha2::{Digest as _, Sha256};
use ureq::http::StatusCode;

use super::client::{ACCEPT_MANIFESTS, Client, ClientOptions, Resp, header, status_error};
use super::ingest::{self, Fetched, StagedLayer};
use super::manifest::{self, Descriptor, Document, MAX_DOCUMENT, Manifest, Platform};
use super::{Progress, RegistryError, Result};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::reference::Reference;
use crate::store::{Image, ImageStore, LayerRef};
use crate::unpack::UnpackLimits;

/// Options of `capsa pull`.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub client: ClientOptions,
    /// The platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    pub limits: UnpackLimits,
    /// How many layers download at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            client: ClientOptions::default(),
            platform: None,
            limits: UnpackLimits::default(),
            parallel: 3,
        }
    }
}

/// Pulls `reference` into the store and names it; returns the image and its manifest digest.
pub fn pull(
    store: &ImageStore,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Image> {
    let client = Client::new(reference.domain(), &opts.client)?;
    let repo = Repo {
        client: &client,
        path: reference.path().to_string(),
    };
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let tag_or_digest = reference
        .digest()
        .map(ToString::to_string)
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    progress.message(&format!(
        "{}: Pulling from {}",
        tag_or_digest,
        reference.familiar_name()
    ));
    let (bytes, manifest) = repo.resolve(&tag_or_digest, reference.digest(), &want)?;
    manifest::check_manifest(&manifest, &reference.familiar())?;
    let config_bytes = repo.fetch_small(&manifest.config, "config")?;
    let diff_ids = config_diff_ids(&config_bytes, &manifest)?;
    let mut attempts = 0;
    loop {
        let (layers, staged) = fetch_layers(store, &repo, &manifest, &diff_ids, opts, progress)?;
        let fetched = Fetched {
            manifest_bytes: &bytes,
            manifest: &manifest,
            config_bytes: &config_bytes,
            layers,
            staged,
            names: vec![reference.clone()],
        };
        match ingest::commit(store, fetched)? {
            Ok(image) => {
                progress.message(&format!("Digest: {}", image.manifest));
                return Ok(image);
            }
            // A concurrent rmi collected layers we found present: fetch them again.
            Err(missing) if attempts < 3 => {
                attempts += 1;
                progress.message(&format!(
                    "{} layer(s) were removed by a concurrent rmi; fetching them again",
                    missing.len()
                ));
            }
            Err(missing) => {
                return Err(RegistryError::Protocol(format!(
                    "layers {missing:?} keep disappearing during the pull (a concurrent rmi?)"
                )));
            }
        }
    }
}

/// The config's `rootfs.diff_ids`, one per manifest layer.
fn config_diff_ids(config: &[u8], m: &Manifest) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<Digest>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(|e| RegistryError::Protocol(format!("image config: {e}")))?;
    if c.rootfs.diff_ids.len() != m.layers.len() {
        return Err(RegistryError::Verify(format!(
            "the manifest has {} layers but the config lists {} diff IDs",
            m.layers.len(),
            c.rootfs.diff_ids.len()
        )));
    }
    Ok(c.rootfs.diff_ids)
}

/// One repository on one registry.
pub(crate) struct Repo<'a> {
    pub client: &'a Client,
    pub path: String,
}

impl Repo<'_> {
    pub fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{actions}", self.path)
    }

    fn get(&self, url: &str, what: &str, accept: Option<&str>, range: Option<u64>) -> Result<Resp> {
        self.client.call(&self.scope("pull"), what, |auth| {
            let mut r = self.client.agent().get(url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            if let Some(a) = accept {
                r = r.header("Accept", a);
            }
            if let Some(off) = range {
                r = r.header("Range", &format!("bytes={off}-"));
            }
            r.call()
        })
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and Content-Type.
    fn fetch_manifest(&self, reference: &str, limit: u64) -> Result<(Vec<u8>, Option<String>)> {
        let url = self
            .client
            .url(&format!("{}/manifests/{reference}", self.path));
        let what = format!("fetch manifest {}:{reference}", self.path);
        let mut resp = self.get(&url, &what, Some(ACCEPT_MANIFESTS), None)?;
        if !resp.status().is_success() {
            return Err(status_error(&mut resp, &self.client.registry, &what));
        }
        let ct = header(&resp, "content-type");
        let bytes = read_limited(resp, limit, &what)?;
        Ok((bytes, ct))
    }

    /// Resolves a tag or digest to one image manifest, through an index if there is one.
    /// Every document fetched by digest is checked against that digest and size.
    fn resolve(
        &self,
        r: &str,
        pinned: Option<&Digest>,
        want: &Platform,
    ) -> Result<(Vec<u8>, Manifest)> {
        let (bytes, ct) = self.fetch_manifest(r, MAX_DOCUMENT)?;
        if let Some(d) = pinned {
            verify_bytes(&bytes, d, None, "manifest")?;
        }
        match manifest::parse_document(&bytes, ct.as_deref(), r)? {
            Document::Manifest(m) => Ok((bytes, m)),
            Document::Index(idx) => {
                let desc = manifest::select_platform(&idx, want, r)?;
                let (bytes, ct) =
                    self.fetch_manifest(&desc.digest.to_string(), desc.size.min(MAX_DOCUMENT) + 1)?;
                verify_bytes(&bytes, &desc.digest, Some(desc.size), "platform manifest")?;
                match manifest::parse_document(&bytes, ct.as_deref(), r)? {
                    Document::Manifest(m) => Ok((bytes, m)),
                    Document::Index(_) => Err(RegistryError::Protocol(format!(
                        "{r}: an index entry for {want} points at another index"
                    ))),
                }
            }
        }
    }

    /// Fetches a small blob (the config) whole, verified against its descriptor.
    fn fetch_small(&self, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
        let url = self
            .client
            .url(&format!("{}/blobs/{}", self.path, d.digest));
        let label = format!("fetch {what} {}", d.digest);
        let mut resp = self.get(&url, &label, None, None)?;
        if !resp.status().is_success() {
            return Err(status_error(&mut resp, &self.client.registry, &label));
        }
        let bytes = read_limited(resp, d.size.min(MAX_DOCUMENT) + 1, &label)?;
        verify_bytes(&bytes, &d.digest, Some(d.size), what)?;
        Ok(bytes)
    }
}

fn read_limited(resp: Resp, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Protocol(format!("{what}: reading the answer failed: {e}")))?;
    if out.len() as u64 >= limit {
        return Err(RegistryError::Verify(format!(
            "{what}: the answer is larger than {} bytes (a lying manifest or a hostile registry)",
            limit.saturating_sub(1)
        )));
    }
    Ok(out)
}

/// Checks bytes against a descriptor's digest and (when known) size.
pub(crate) fn verify_bytes(
    bytes: &[u8],
    want: &Digest,
    size: Option<u64>,
    what: &str,
) -> Result<()> {
    if let Some(s) = size
        && bytes.len() as u64 != s
    {
        return Err(RegistryError::Verify(format!(
            "{what} {want}: got {} bytes but the descriptor says {s} (a lying manifest?)",
            bytes.len()
        )));
    }
    let got = Digest::of_bytes(bytes);
    if &got != want {
        return Err(RegistryError::Verify(format!(
            "{what}: digest mismatch: expected {want}, got {got}"
        )));
    }
    Ok(())
}

/// Downloads and unpacks the layers the store lacks, a few at a time.
fn fetch_layers(
    store: &ImageStore,
    repo: &Repo<'_>,
    m: &Manifest,
    diff_ids: &[Digest],
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(Vec<LayerRef>, Vec<StagedLayer>)> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Option<StagedLayer>>>>> =
        Mutex::new((0..m.layers.len()).map(|_| None).collect());
    let workers = opts.parallel.clamp(1, 8).min(m.layers.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= m.layers.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = fetch_layer(
                        store,
                        repo,
                        &m.layers[i],
                        &diff_ids[i],
                        &opts.limits,
                        progress,
                    );
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| RegistryError::Protocol("a download thread panicked".into()))?;
    let mut layers = Vec::new();
    let mut staged = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let d = &m.layers[i];
        match r {
            Some(Ok(Some(s))) => {
                layers.push(s.layer.clone());
                staged.push(s);
            }
            Some(Ok(None)) => layers.push(ingest::stored_layer(store, &diff_ids[i]).unwrap_or(
                LayerRef {
                    diff_id: diff_ids[i].clone(),
                    blob: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    blob_size: d.size,
                    unpacked_size: 0,
                },
            )),
            Some(Err(e)) => return Err(e),
            // Not reached because another layer failed first.
            None => {}
        }
    }
    if layers.len() != m.layers.len() {
        return Err(RegistryError::Protocol(
            "a layer download was cancelled".into(),
        ));
    }
    Ok((layers, staged))
}

/// One layer: skipped when stored, else downloaded (resuming a partial file), verified and
/// unpacked. Returns None when the store already has it.
fn fetch_layer(
    store: &ImageStore,
    repo: &Repo<'_>,
    d: &Descriptor,
    diff_id: &Digest,
    limits: &UnpackLimits,
    progress: &dyn Progress,
) -> Result<Option<StagedLayer>> {
    if ingest::have_layer(store, &d.digest, diff_id) {
        progress.layer_done(&d.digest, true);
        return Ok(None);
    }
    let compression = manifest::layer_compression(&d.media_type)?;
    let (file, path) = lock_partial(store, &d.digest)?;
    // Another pull may have committed this layer while we waited for the flock.
    if ingest::have_layer(store, &d.digest, diff_id) {
        let _ = std::fs::remove_file(&path);
        progress.layer_done(&d.digest, true);
        return Ok(None);
    }
    let mut offset = file
        .metadata()
        .map_err(|e| ImageError::io("stat", &path, e))?
        .len();
    if offset > d.size {
        file.set_len(0)
            .map_err(|e| ImageError::io("truncate", &path, e))?;
        offset = 0;
    }
    let net = if offset < d.size {
        let (body, start) = open_blob(repo, d, offset)?;
        if start == 0 && offset > 0 {
            file.set_len(0)
                .map_err(|e| ImageError::io("truncate", &path, e))?;
        }
        offset = start;
        Some(body)
    } else {
        None
    };
    progress.layer_start(&d.digest, d.size, offset);
    let label = d.digest.to_string();
    let mut stream = BlobStream::new(&file, &path, offset, net, d, progress)?;
    let failure = stream.failure.clone();
    let verified = stream.verified.clone();
    let staged = ingest::stage_unpack(
        store,
        &label,
        &mut stream,
        compression,
        limits,
        Some(diff_id),
    );
    if staged.is_ok() {
        // Decompressors may stop at the end of their frame; the digest covers every byte.
        let _ = io::copy(&mut stream, &mut io::sink());
    }
    // A network failure or a digest mismatch explains a broken tar stream better than the
    // unpacker's own message does.
    if let Some(err) = failure.borrow_mut().take() {
        return Err(discard_unless_resumable(&path, err));
    }
    let (dir, diff, stats) = staged.map_err(|e| discard_unless_resumable(&path, e))?;
    if !*verified.borrow() {
        return Err(RegistryError::Protocol(format!(
            "layer {label}: the blob was not read to its end"
        )));
    }
    file.sync_all()
        .map_err(|e| ImageError::io("fsync", &path, e))?;
    let layer = LayerRef {
        diff_id: diff,
        blob: d.digest.clone(),
        media_type: d.media_type.clone(),
        blob_size: d.size,
        unpacked_size: stats.bytes,
    };
    ingest::finish_layer_dir(dir.path(), &layer, &stats)?;
    progress.layer_done(&d.digest, false);
    Ok(Some(StagedLayer {
        dir,
        layer,
        blob: Some(path),
        _hold: Some(file),
    }))
}

/// Only a broken connection leaves a partial download worth resuming; a blob that was
/// refused (bad digest, lying size, hostile entries) is removed so nothing of it stays.
fn discard_unless_resumable(path: &std::path::Path, e: RegistryError) -> RegistryError {
    if !matches!(e, RegistryError::Interrupted { .. }) {
        let _ = std::fs::remove_file(path);
    }
    e
}

/// Opens and flocks `tmp/pull-<hex>.partial`. If the file was renamed into the store while we
/// waited (the flock is on the inode), opens the new one.
fn lock_partial(store: &ImageStore, d: &Digest) -> Result<(File, PathBuf)> {
    let path = store.tmp_dir().join(format!("pull-{}.partial", d.hex()));
    loop {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ImageError::io("open partial download", &path, e))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| ImageError::sys("flock", &path, e))?;
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok((file, path));
        }
    }
}

/// Starts the blob GET, from `offset` when resuming. Returns the body and the offset the
/// registry actually starts at (0 when it ignored the Range header and sent it all).
fn open_blob(
    repo: &Repo<'_>,
    d: &Descriptor,
    offset: u64,
) -> Result<(ureq::BodyReader<'static>, u64)> {
    let url = repo
        .client
        .url(&format!("{}/blobs/{}", repo.path, d.digest));
    let what = format!("fetch layer {}", d.digest);
    let range = (offset > 0).then_some(offset);
    let mut resp = repo.get(&url, &what, None, range)?;
    let start = match resp.status() {
        StatusCode::PARTIAL_CONTENT => offset,
        StatusCode::OK => 0,
        StatusCode::RANGE_NOT_SATISFIABLE => {
            return Err(RegistryError::Verify(format!(
                "layer {}: the registry refused a range at {offset} of {} bytes (the blob is smaller than the manifest says?)",
                d.digest, d.size
            )));
        }
        _ => return Err(status_error(&mut resp, &repo.client.registry, &what)),
    };
    Ok((resp.into_body().into_reader(), start))
}

/// The blob as one stream: the bytes already on disk, then the network's, which are appended
/// to the partial file as they pass. It hashes and counts everything, refuses bytes beyond the
/// descriptor's size, and checks the digest at the end. Failures are kept in `failure` so the
/// caller can report them instead of the unpacker's "bad tar stream".
struct BlobStream<'a> {
    disk: Option<io::Take<File>>,
    net: Option<ureq::BodyReader<'static>>,
    partial: &'a File,
    hasher: Sha256,
    done: u64,
    desc: &'a Descriptor,
    progress: &'a dyn Progress,
    failure: Rc<RefCell<Option<RegistryError>>>,
    verified: Rc<RefCell<bool>>,
}

impl<'a> BlobStream<'a> {
    fn new(
        partial: &'a File,
        path: &std::path::Path,
        offset: u64,
        net: Option<ureq::BodyReader<'static>>,
        desc: &'a Descriptor,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let mut replay = partial
            .try_clone()
            .map_err(|e| ImageError::io("dup", path, e))?;
        replay
            .rewind()
            .map_err(|e| ImageError::io("seek", path, e))?;
        Ok(BlobStream {
            disk: Some(replay.take(offset)),
            net,
            partial,
            hasher: Sha256::new(),
            done: 0,
            desc,
            progress,
            failure: Rc::new(RefCell::new(None)),
            verified: Rc::new(RefCell::new(false)),
        })
    }

    fn fail(&self, e: RegistryError) -> io::Error {
        let msg = e.to_string();
        *self.failure.borrow_mut() = Some(e);
        io::Error::other(msg)
    }

    fn interrupted(&self, reason: String) -> io::Error {
        self.fail(RegistryError::Interrupted {
            digest: self.desc.digest.clone(),
            done: self.done,
            size: self.desc.size,
            reason,
        })
    }

    /// At the end of the stream: the size and digest must be the descriptor's.
    fn check_end(&mut self) -> io::Result<()> {
        if self.done < self.desc.size {
            return Err(self.interrupted("the registry closed the connection early".into()));
        }
        let got = Digest::from_hex(&to_hex(&self.hasher.clone().finalize()))
            .ok_or_else(|| io::Error::other("bad hash"))?;
        if got != self.desc.digest {
            return Err(self.fail(RegistryError::Verify(format!(
                "layer {}: digest mismatch: the downloaded blob hashes to {got} (the partial download was removed)",
                self.desc.digest
            ))));
        }
        *self.verified.borrow_mut() = true;
        Ok(())
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(disk) = &mut self.disk {
            let n = disk.read(buf)?;
            if n > 0 {
                self.hasher.update(&buf[..n]);
                self.done += n as u64;
                return Ok(n);
            }
            self.disk = None;
        }
        let Some(net) = &mut self.net else {
            if !*self.verified.borrow() {
                self.check_end()?;
            }
            return Ok(0);
        };
        let n = match net.read(buf) {
            Ok(n) => n,
            Err(e) => return Err(self.interrupted(e.to_string())),
        };
        if n == 0 {
            self.net = None;
            self.check_end()?;
            return Ok(0);
        }
        if self.done + n as u64 > self.desc.size {
            return Err(self.fail(RegistryError::Verify(format!(
                "layer {}: the registry sent more than the {} bytes the manifest declares (a lying manifest)",
                self.desc.digest, self.desc.size
            ))));
        }
        let mut w = self.partial;
        if let Err(e) = w.write_all(&buf[..n]) {
            return Err(self.fail(
                ImageError::Io {
                    op: "write partial download",
                    path: PathBuf::from(self.desc.digest.hex()),
                    source: e,
                }
                .into(),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.done += n as u64;
        self.progress.layer_bytes(&self.desc.digest, n as u64);
        Ok(n)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
