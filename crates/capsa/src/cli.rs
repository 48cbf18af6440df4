//! The Docker-style front end: `capsa caps`, `capsa run`, ...

use clap::{Parser, Subcommand};
use std::ffi::OsString;

#[derive(Parser)]
#[command(
    name = "capsa",
    version,
    about = "A daemonless, least-privilege container runtime"
)]
struct Cli {
    /// Where images and container layers live (default /var/lib/capsa).
    #[arg(long, global = true, env = "CAPSA_ROOT", value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    /// The system config file (default /etc/capsa/capsa.toml; also CAPSA_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, decode, explain and resolve Linux capabilities.
    Caps(crate::caps_cmd::CapsArgs),
    #[command(flatten)]
    Container(crate::container_cmd::ContainerCommand),
    /// Import a rootfs tarball as an image (like `docker import`).
    Import(crate::image_cmd::ImportArgs),
    /// List images.
    Images(crate::image_cmd::ImagesArgs),
    /// Remove images.
    Rmi(crate::image_cmd::RmiArgs),
    /// Give an image another name.
    Tag(crate::image_cmd::TagArgs),
    /// Pull an image from a registry.
    Pull(crate::registry_cmd::PullArgs),
    /// Push an image to a registry.
    Push(crate::registry_cmd::PushArgs),
    /// Log in to a registry (credentials go to Docker's config.json).
    Login(crate::registry_cmd::LoginArgs),
    /// Log out from a registry.
    Logout(crate::registry_cmd::LogoutArgs),
    /// Load images from a `docker save` tarball or an OCI archive.
    Load(crate::registry_cmd::LoadArgs),
    /// Save images to an OCI archive (also loadable by docker, podman and ctr).
    Save(crate::registry_cmd::SaveArgs),
    /// Record the capabilities a workload uses, propose the minimal set and verify it.
    Profile(Box<crate::profile_cmd::ProfileArgs>),
}

/// Parses the user command line and runs it; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if let Command::Caps(args) = cli.command {
        return crate::caps_cmd::run(args);
    }
    // Every other command reads the system config: its `root` applies when --root is not given.
    let config = match capsa_engine::sysconfig::load(cli.config.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("capsa: {e}");
            return 125;
        }
    };
    let cli = Cli {
        root: cli.root.or_else(|| config.root.clone()),
        ..cli
    };
    match cli.command {
        Command::Caps(args) => crate::caps_cmd::run(args),
        Command::Container(cmd) => crate::container_cmd::main(cli.root.as_deref(), &config, cmd),
        Command::Import(args) => crate::image_cmd::import(cli.root.as_deref(), args),
        Command::Images(args) => crate::image_cmd::images(cli.root.as_deref(), args),
        Command::Rmi(args) => crate::image_cmd::rmi(cli.root.as_deref(), args),
        Command::Tag(args) => crate::image_cmd::tag(cli.root.as_deref(), args),
        Command::Pull(args) => crate::registry_cmd::pull(cli.root.as_deref(), args),
        Command::Push(args) => crate::registry_cmd::push(cli.root.as_deref(), args),
        Command::Login(args) => crate::registry_cmd::login(args),
        Command::Logout(args) => crate::registry_cmd::logout(args),
        Command::Load(args) => crate::registry_cmd::load(cli.root.as_deref(), args),
        Command::Save(args) => crate::registry_cmd::save(cli.root.as_deref(), args),
        Command::Profile(args) => {
            crate::profile_cmd::run(cli.root.as_deref(), cli.config.as_deref(), &config, *args)
        }
    }
}
