//! The capsa binary: command-line parsing and output only, no policy.
//!
//! One binary, two personalities: invoked as `capsa-runc` (or `runc`) it speaks runc's
//! command-line contract for containerd, Docker and Podman; otherwise it is the
//! Docker-style user front end.

mod caps_cmd;
mod cli;
mod container_cmd;
mod image_cmd;
mod profile_cmd;
mod registry_cmd;
mod runc;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if argv0 == "capsa-init" {
        // `--init`: PID 1 of a container, reaping orphans (capsa-engine reaper).
        capsa_engine::reaper::main(args)
    } else if argv0 == "capsa-runc" || argv0 == "runc" {
        runc::main(args)
    } else if args.get(1).is_some_and(|a| a == "runc") {
        // `capsa runc ...` is the same personality, for when no link is installed.
        args.remove(1);
        runc::main(args)
    } else {
        cli::main(args)
    };
    std::process::exit(code);
}
