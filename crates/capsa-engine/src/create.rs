//! create: a container from an image and the flags: name and id, the overlay snapshot, the
//! generated config.json, the `hostname`/`hosts` files, and the record. Bad flags fail before
//! anything is made; a failure after the snapshot removes everything it made.
//!
//! Must not start processes: `launch` does that.

use crate::caps::{self, CapRequest};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::names;
use crate::options::{ContainerConfig, NetworkMode, RunOptions};
use crate::record::{CapMasks, Record, State, write_atomic};
use crate::spec::{self, ImageDefaults, SpecInput};
use crate::userns;
use capsa_image::Snapshot;
use std::path::Path;

/// What `create` made.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub warnings: Vec<String>,
}

impl Engine {
    /// `capsa create`: validates, then makes the snapshot, spec and record.
    pub fn create(&self, opts: &RunOptions) -> Result<Created> {
        let config = opts.parse()?;
        // Docker validates CapAdd/CapDrop before anything exists; do the same, so a bad name
        // leaves nothing behind (the non-root distinction does not change validity).
        caps::resolve(
            CapRequest {
                add: &config.cap_add,
                drop: &config.cap_drop,
                privileged: config.privileged,
                non_root: false,
                defaults: config.cap_defaults.as_deref(),
            },
            caps::available(),
        )?;
        let images = self.image_store()?;
        let image = images
            .resolve(&config.image)
            .map_err(|_| Error::NoSuchImage(config.image.clone()))?;
        let defaults = image_defaults(&images, &image)?;
        let lock = self.store.lock()?;
        let name = self.pick_name(opts.name.as_deref())?;
        let id = names::new_id()?;
        let dir = self.store.dir(&id);
        // Before anything exists: a missing subordinate range must leave nothing behind.
        let paths = &self.store.paths;
        let mapping = userns::mapping_for(&config.userns, paths.root(), &paths.containers(), &id)?;
        let snapshot = Snapshot::prepare(&images, &image, &id, &dir).map_err(|e| {
            let _ = userns::release(paths.root(), &id);
            Error::Image(format!("cannot prepare the rootfs of {name}: {e}"))
        })?;
        let made = self.write_bundle(
            &id,
            &name,
            &config,
            &defaults,
            (&snapshot, mapping.as_ref()),
            image.id().to_string(),
        );
        drop(lock);
        match made {
            Ok(record) => Ok(Created {
                id,
                name,
                warnings: record.warnings,
            }),
            Err(e) => {
                let _ = Snapshot::remove(&images, &id, &dir);
                let _ = self.store.remove_dir(&id);
                let _ = userns::release(paths.root(), &id);
                Err(e)
            }
        }
    }

    /// `--name` (validated, unique) or a generated one.
    fn pick_name(&self, wanted: Option<&str>) -> Result<String> {
        if let Some(n) = wanted {
            let n = names::validate_name(n)?;
            self.store.check_name_free(&n)?;
            return Ok(n);
        }
        for attempt in 0..20 {
            let n = names::generate_name(attempt)?;
            if self.store.check_name_free(&n).is_ok() {
                return Ok(n);
            }
        }
        Err(Error::InvalidFlag(
            "cannot generate a free container name".into(),
        ))
    }

    fn write_bundle(
        &self,
        id: &str,
        name: &str,
        config: &ContainerConfig,
        image: &ImageDefaults,
        (snapshot, mapping): (&Snapshot, Option<&userns::Mapping>),
        image_id: String,
    ) -> Result<Record> {
        let dir = self.store.dir(id);
        let mut generated = spec::generate(&SpecInput {
            id,
            config,
            image,
            rootfs: &snapshot.rootfs,
            container_dir: &dir,
            available: caps::available(),
        })?;
        if let Some(m) = mapping {
            let overlay = userns::overlay_annotation(snapshot)?;
            userns::apply_to_spec(&mut generated.spec, m, overlay)?;
            userns::save_mapping(&dir, m)?;
        }
        write_etc_files(&dir, &generated.hostname, config.network)?;
        let spec_json = serde_json::to_vec_pretty(&generated.spec).map_err(|e| Error::Json {
            path: dir.join("config.json"),
            source: e,
        })?;
        write_atomic(&dir.join("config.json"), &spec_json)?;
        let record = Record {
            id: id.to_string(),
            name: name.to_string(),
            created: crate::time::now_nanos(),
            image: config.image.clone(),
            image_id,
            config: config.clone(),
            args: generated.args,
            hostname: generated.hostname,
            uid: generated.user.uid,
            gid: generated.user.gid,
            caps: CapMasks::from(generated.caps),
            seccomp: generated.seccomp,
            warnings: generated.warnings,
            state: State::default(),
        };
        self.store.save(&record)?;
        Ok(record)
    }
}

/// The image config's Env, Entrypoint, Cmd, WorkingDir and User.
fn image_defaults(
    store: &capsa_image::ImageStore,
    image: &capsa_image::Image,
) -> Result<ImageDefaults> {
    let cfg = store.config(image).map_err(|e| {
        Error::Image(format!(
            "cannot read the config of image {}: {e}",
            image.id()
        ))
    })?;
    let Some(c) = cfg.config() else {
        return Ok(ImageDefaults::default());
    };
    Ok(ImageDefaults {
        env: c.env().clone().unwrap_or_default(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
    })
}

/// `/etc/hostname` and `/etc/hosts` for the container (and the host's resolv.conf with
/// `--network host`), bind-mounted by the spec.
fn write_etc_files(dir: &Path, hostname: &str, network: NetworkMode) -> Result<()> {
    write_atomic(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    write_atomic(&dir.join("hosts"), hosts.as_bytes())?;
    if network == NetworkMode::Host {
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        write_atomic(&dir.join("resolv.conf"), &resolv)?;
    }
    Ok(())
}
