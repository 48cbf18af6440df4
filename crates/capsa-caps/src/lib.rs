//! capsa-caps: the capability model. Pure: no syscalls beyond reading /proc.

pub mod cap;

pub use cap::{Cap, CapSet, LAST_KNOWN};
