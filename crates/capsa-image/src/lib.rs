//! capsa-image: image references, the content-addressed store, `import`, layer unpacking and
//! container snapshots.
//!
//! Owns everything under the store root (default `/var/lib/capsa`) except `containers/`,
//! which belongs to the front end; within a container dir it owns only the snapshot's
//! `upper/`, `work/`, `rootfs/` and `snapshot.json`. It never touches runtime state
//! (`/run/capsa`) and knows nothing about running containers beyond the leases snapshots hold.
//!
//! The store is OCI-shaped so that registry pulls, `docker save`/OCI-archive loads, `save`
//! and `push` add producers and consumers of the same blobs: an image is an OCI manifest
//! plus an OCI config, both stored as blobs by sha256, and its ID is the config digest.

pub mod archive;
pub mod auth;
pub mod change;
pub mod digest;
pub mod error;
pub mod import;
mod layer_upgrade;
mod lock;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod unpack;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use import::ImportOptions;
pub use reference::{Reference, ReferenceError};
pub use snapshot::Snapshot;
pub use store::{
    DEFAULT_ROOT, GcStats, Image, ImageStore, LayerRef, Lease, Removal, RemoveOptions,
};
pub use unpack::{LayerStats, UnpackLimits, unpack_layer};
