//! capsa-runtime: an OCI bundle becomes a running container.
