//! `capsa-runc`: the runc-compatible personality as its own small binary.
//!
//! The same code as `capsa runc ...` (and the `capsa` binary invoked as `capsa-runc`), linked
//! without the image, engine and tracing crates: engines exec the runtime several times per
//! container, so its size, start-up page faults and peak RSS are on the hot path.

#[path = "runc/mod.rs"]
mod runc;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(runc::main(args));
}
