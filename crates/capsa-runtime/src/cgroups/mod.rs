//! cgroups: v1, v2 and the hybrid layout. Interface used by `container` and `init`.
//! Bodies are being written.

use serde::{Deserialize, Serialize};

/// The cgroup(s) of one container. Serializable: it is kept in the container's state so that
/// `delete`, `pause`, `ps` and `update` find the same directories later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {}
