//! Image archives: `capsa load` of `docker save` tarballs (classic and Docker 25+ OCI-in-tar)
//! and OCI archives, and `capsa save` of OCI archives that Docker, Podman and containerd load.
pub mod load;
pub mod save;
