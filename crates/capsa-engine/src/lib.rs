//! capsa-engine: the Docker-style front end of capsa, as a library.
//!
//! It owns what a user means by "a container": a record under `<root>/containers/<id>/`
//! (name, image, the flags it was created with, its state and exit code), the generation of
//! its OCI `config.json` from the image config plus the `docker run`-style flags, the small
//! per-container monitor that outlives `capsa run -d`, and the operations (`run`, `create`,
//! `start`, `stop`, `kill`, `rm`, `ps`, `inspect`, `logs`, `exec`, `wait`).
//!
//! It must not touch: capability policy (that is `capsa-caps::resolve`), how a bundle becomes
//! processes (that is `capsa-runtime`), or the image store's layout (that is `capsa-image`).
//! The binary on top only parses flags and prints.

pub mod cap_profile;
pub mod caps;
pub mod create;
pub mod engine;
pub mod error;
pub mod exec;
pub mod names;
mod netns;
pub mod options;
pub mod paths;
pub mod query;
pub mod reaper;
pub mod record;
pub mod spec;
pub mod status;
mod sys;
pub mod sysconfig;
pub mod time;
mod tty;
pub mod user;
pub mod userns;
pub mod userns_caps;

pub use create::Created;
pub use engine::Engine;
pub use error::Error;
pub use exec::ExecOptions;
pub use options::{ContainerConfig, RunOptions};
pub use paths::Paths;
pub use query::PsRow;
