//! `capsa push`: uploads an image's blobs and then its manifest (distribution-spec "push").
//!
//! Owns the upload conversation only; it reads blobs from the store (verifying each before it
//! is sent) and never writes to the store.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use ureq::http::StatusCode;

use super::client::{Client, ClientOptions, header, status_error};
use super::manifest::{DOCKER_MANIFEST, Manifest, OCI_MANIFEST};
use super::pull::Repo;
use super::{Progress, RegistryError, Result};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::reference::Reference;
use crate::store::ImageStore;

/// Options of `capsa push`.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// Blobs larger than this go up in PATCH chunks of this size; smaller ones in one PUT.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            client: ClientOptions::default(),
            chunk_size: 64 << 20,
        }
    }
}

/// Pushes the image `source` names in the store to `target`; returns the manifest digest.
pub fn push(
    store: &ImageStore,
    source: &str,
    target: &Reference,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Digest> {
    let image = store.resolve(source)?;
    let manifest_bytes = store.read_blob(&image.manifest)?;
    let m: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| RegistryError::Protocol(format!("stored manifest {}: {e}", image.manifest)))?;
    let client = Client::new(target.domain(), &opts.client)?;
    let repo = Repo {
        client: &client,
        path: target.path().to_string(),
    };
    progress.message(&format!(
        "The push refers to repository [{}]",
        target.name()
    ));
    let mut blobs: Vec<(Digest, u64)> = m
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.size))
        .collect();
    blobs.push((m.config.digest.clone(), m.config.size));
    for (digest, size) in &blobs {
        if repo.blob_exists(digest)? {
            progress.layer_done(digest, true);
            continue;
        }
        store.verify_blob(digest)?;
        progress.layer_start(digest, *size, 0);
        repo.upload(store, digest, *size, opts.chunk_size, progress)?;
        progress.layer_done(digest, false);
    }
    let media_type = m.media_type.clone().unwrap_or_else(|| {
        if m.config.media_type.contains("docker") {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        }
        .to_string()
    });
    let tag = target.tag().unwrap_or("latest");
    repo.put_manifest(tag, &manifest_bytes, &media_type)?;
    progress.message(&format!(
        "{tag}: digest: {} size: {}",
        image.manifest,
        manifest_bytes.len()
    ));
    Ok(image.manifest)
}

impl Repo<'_> {
    fn push_scope(&self) -> String {
        self.scope("pull,push")
    }

    fn blob_exists(&self, d: &Digest) -> Result<bool> {
        let url = self.client.url(&format!("{}/blobs/{d}", self.path));
        let what = format!("check blob {d}");
        let mut resp = self.client.call(&self.push_scope(), &what, |auth| {
            let mut r = self.client.agent().head(&url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&mut resp, &self.client.registry, &what)),
        }
    }

    /// POST an upload session, then either one PUT with the whole blob (monolithic) or PATCH
    /// chunks with Content-Range followed by a closing PUT (distribution-spec "chunked").
    fn upload(
        &self,
        store: &ImageStore,
        d: &Digest,
        size: u64,
        chunk: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let what = format!("upload blob {d}");
        let start = self.client.url(&format!("{}/blobs/uploads/", self.path));
        let mut resp = self.client.call(&self.push_scope(), &what, |auth| {
            let mut r = self.client.agent().post(&start);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send_empty()
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&mut resp, &self.client.registry, &what));
        }
        let mut location = self.location(&resp, &what)?;
        let path = store.blob_path(d);
        let mut file = File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))?;
        let mut sent = 0u64;
        if size > chunk {
            while sent < size {
                let n = chunk.min(size - sent);
                location = self.patch_chunk(&location, &mut file, sent, n, &what)?;
                sent += n;
                progress.layer_bytes(d, n);
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={d}");
        let remaining = size - sent;
        let mut resp = self.client.call(&self.push_scope(), &what, |auth| {
            file.seek(SeekFrom::Start(sent)).map_err(ureq::Error::Io)?;
            let mut body = (&mut file).take(remaining);
            let mut r = self
                .client
                .agent()
                .put(&url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", &remaining.to_string());
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(ureq::SendBody::from_reader(&mut body))
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&mut resp, &self.client.registry, &what));
        }
        progress.layer_bytes(d, remaining);
        Ok(())
    }

    fn patch_chunk(
        &self,
        location: &str,
        file: &mut File,
        from: u64,
        n: u64,
        what: &str,
    ) -> Result<String> {
        let mut resp = self.client.call(&self.push_scope(), what, |auth| {
            file.seek(SeekFrom::Start(from)).map_err(ureq::Error::Io)?;
            let mut body = (&mut *file).take(n);
            let mut r = self
                .client
                .agent()
                .patch(location)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", &n.to_string())
                .header("Content-Range", &format!("{from}-{}", from + n - 1));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(ureq::SendBody::from_reader(&mut body))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&mut resp, &self.client.registry, what));
        }
        self.location(&resp, what)
    }

    fn location(&self, resp: &super::client::Resp, what: &str) -> Result<String> {
        header(resp, "location")
            .map(|l| self.client.absolute(&l))
            .ok_or_else(|| {
                RegistryError::Protocol(format!("{what}: the registry sent no upload Location"))
            })
    }

    fn put_manifest(&self, tag: &str, bytes: &[u8], media_type: &str) -> Result<()> {
        let url = self.client.url(&format!("{}/manifests/{tag}", self.path));
        let what = format!("put manifest {}:{tag}", self.path);
        let mut resp = self.client.call(&self.push_scope(), &what, |auth| {
            let mut r = self
                .client
                .agent()
                .put(&url)
                .header("Content-Type", media_type);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(bytes)
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&mut resp, &self.client.registry, &what));
        }
        Ok(())
    }
}
