//! `capsa-runc`: the runc-compatible personality as its own small binary.
//!
//! The same code as `capsa runc ...` (and the `capsa` binary invoked as `capsa-runc`), linked
//! without the image, engine and tracing crates, in its own package so that it is optimized
//! for size (root Cargo.toml) and linked with packed relocations (build.rs): engines exec the
//! runtime several times per container, so its size, start-up page faults and peak RSS are on
//! the hot path (docs/performance.md).

#[path = "../../capsa/src/runc/mod.rs"]
mod runc;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(runc::main(args));
}
