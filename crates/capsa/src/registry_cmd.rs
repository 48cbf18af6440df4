//! `capsa pull`, `push`, `login`, `logout`, `load` and `save`: argument parsing, progress
//! display and output only.
//!
//! Owns the wording of these commands and the progress display (indicatif bars on a TTY,
//! plain lines otherwise, always on stderr). The registry, archive and store logic is
//! capsa-image's; this module must not touch the store's files.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use capsa_image::registry::{self, ClientOptions, Platform, Progress, PullOptions, PushOptions};
use capsa_image::{Digest, Reference, UnpackLimits, auth};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::image_cmd::open_store;

const LIMIT_ENV: &str = "CAPSA_MAX_LAYER_SIZE";

#[derive(clap::Args)]
pub struct PullArgs {
    /// The image: NAME[:TAG|@DIGEST].
    image: String,
    /// The platform to pick from a multi-platform image: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
    /// Reach this registry (host:port) over plain HTTP. Loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure: Vec<String>,
    /// Print only the image name at the end.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// The image to push; its name says where (REGISTRY/REPOSITORY[:TAG]).
    image: String,
    /// Push under this name instead (the image is found by IMAGE).
    destination: Option<String>,
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure: Vec<String>,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The registry (default docker.io).
    server: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// The password (prefer --password-stdin: a password here shows in `ps`).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure: Vec<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The registry (default docker.io).
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The archive: a `docker save` tarball or an OCI archive (plain, gzip or zstd).
    #[arg(short, long)]
    input: PathBuf,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Where to write the OCI archive.
    #[arg(short, long)]
    output: PathBuf,
    /// The images to save, by name or ID.
    #[arg(required = true)]
    images: Vec<String>,
}

fn report(r: Result<i32>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("capsa: {e:#}");
        1
    })
}

fn limits() -> Result<UnpackLimits> {
    let mut limits = UnpackLimits::default();
    if let Some(v) = std::env::var_os(LIMIT_ENV) {
        let v = v.to_string_lossy().into_owned();
        limits.max_bytes = v
            .parse()
            .with_context(|| format!("{LIMIT_ENV}={v:?} is not a byte count"))?;
    }
    Ok(limits)
}

pub fn pull(root: Option<&Path>, args: PullArgs) -> i32 {
    report(pull_inner(root, args))
}

fn pull_inner(root: Option<&Path>, args: PullArgs) -> Result<i32> {
    let store = open_store(root)?;
    let reference = Reference::parse(&args.image)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let opts = PullOptions {
        client: ClientOptions {
            insecure_registries: args.insecure,
            credentials: None,
        },
        platform,
        limits: limits()?,
        ..PullOptions::default()
    };
    let display = Display::new(args.quiet);
    let image = registry::pull(&store, &reference, &opts, &display)
        .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    display.finish();
    if !args.quiet {
        let status = if display.downloaded() {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        eprintln!("Status: {status} {}", reference.familiar());
    }
    let _ = image;
    println!("{reference}");
    Ok(0)
}

pub fn push(root: Option<&Path>, args: PushArgs) -> i32 {
    report(push_inner(root, args))
}

fn push_inner(root: Option<&Path>, args: PushArgs) -> Result<i32> {
    let store = open_store(root)?;
    let target = Reference::parse(args.destination.as_deref().unwrap_or(&args.image))?;
    let opts = PushOptions {
        client: ClientOptions {
            insecure_registries: args.insecure,
            credentials: None,
        },
        ..PushOptions::default()
    };
    let display = Display {
        push: true,
        ..Display::new(args.quiet)
    };
    let digest = registry::push(&store, &args.image, &target, &opts, &display)
        .with_context(|| format!("cannot push {}", target.familiar()))?;
    display.finish();
    if args.quiet {
        println!("{digest}");
    }
    Ok(0)
}

pub fn login(args: LoginArgs) -> i32 {
    report(login_inner(args))
}

fn registry_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    if host == "index.docker.io" || host == "registry-1.docker.io" {
        "docker.io".to_string()
    } else {
        host.to_string()
    }
}

fn login_inner(args: LoginArgs) -> Result<i32> {
    let host = registry_host(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        prompt("Password: ")?
    };
    if username.is_empty() || password.is_empty() {
        bail!("cannot log in to {host}: a username and a password are required");
    }
    let creds = auth::Credentials { username, password };
    let client = registry::Client::new(
        &host,
        &ClientOptions {
            insecure_registries: args.insecure,
            credentials: Some(creds.clone()),
        },
    )?;
    client
        .ping()
        .with_context(|| format!("cannot log in to {host}"))?;
    let path = auth::store(&host, &creds)?;
    eprintln!(
        "Credentials saved in {} (base64, not encrypted).",
        path.display()
    );
    println!("Login Succeeded");
    Ok(0)
}

fn prompt(what: &str) -> Result<String> {
    eprint!("{what}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn logout(args: LogoutArgs) -> i32 {
    report(logout_inner(args))
}

fn logout_inner(args: LogoutArgs) -> Result<i32> {
    let host = registry_host(args.server.as_deref());
    if auth::erase(&host)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(0)
}

pub fn load(root: Option<&Path>, args: LoadArgs) -> i32 {
    report(load_inner(root, args))
}

fn load_inner(root: Option<&Path>, args: LoadArgs) -> Result<i32> {
    let store = open_store(root)?;
    let images = capsa_image::archive::load::load(&store, &args.input, &limits()?)
        .with_context(|| format!("cannot load {}", args.input.display()))?;
    for (image, names) in images {
        if names.is_empty() {
            println!("Loaded image ID: {}", image.config);
        }
        for n in names {
            println!("Loaded image: {}", n.familiar());
        }
    }
    let _ = args.quiet;
    Ok(0)
}

pub fn save(root: Option<&Path>, args: SaveArgs) -> i32 {
    report(save_inner(root, args))
}

fn save_inner(root: Option<&Path>, args: SaveArgs) -> Result<i32> {
    let store = open_store(root)?;
    capsa_image::archive::save::save(&store, &args.images, &args.output)
        .with_context(|| format!("cannot save to {}", args.output.display()))?;
    Ok(0)
}

/// Progress on stderr: one bar per layer on a TTY, one line per event otherwise.
struct Display {
    quiet: bool,
    bars: Option<MultiProgress>,
    layers: Mutex<HashMap<String, ProgressBar>>,
    downloaded: std::sync::atomic::AtomicBool,
    /// Words for push instead of pull.
    push: bool,
}

impl Display {
    fn new(quiet: bool) -> Display {
        let tty = std::io::stderr().is_terminal();
        Display {
            quiet,
            bars: (tty && !quiet).then(MultiProgress::new),
            layers: Mutex::new(HashMap::new()),
            downloaded: std::sync::atomic::AtomicBool::new(false),
            push: false,
        }
    }

    fn downloaded(&self) -> bool {
        self.downloaded.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn line(&self, digest: &Digest, what: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(format!("{}: {what}", digest.short()));
            }
            None => eprintln!("{}: {what}", digest.short()),
        }
    }

    fn finish(&self) {
        if let Ok(mut l) = self.layers.lock() {
            for (_, b) in l.drain() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for Display {
    fn layer_start(&self, digest: &Digest, size: u64, resumed_from: u64) {
        self.downloaded
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if resumed_from > 0 {
            self.line(
                digest,
                &format!("Resuming download at byte {resumed_from} of {size}"),
            );
        } else {
            self.line(
                digest,
                if self.push {
                    "Pushing"
                } else {
                    "Pulling fs layer"
                },
            );
        }
        if let Some(m) = &self.bars {
            let bar = m.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .map(|s| s.progress_chars("=> "));
            if let Ok(style) = style {
                bar.set_style(style);
            }
            bar.set_prefix(digest.short().to_string());
            bar.set_position(resumed_from);
            if let Ok(mut l) = self.layers.lock() {
                l.insert(digest.to_string(), bar);
            }
        }
    }

    fn layer_bytes(&self, digest: &Digest, n: u64) {
        if let Ok(l) = self.layers.lock()
            && let Some(b) = l.get(&digest.to_string())
        {
            b.inc(n);
        }
    }

    fn layer_done(&self, digest: &Digest, cached: bool) {
        if let Ok(mut l) = self.layers.lock()
            && let Some(b) = l.remove(&digest.to_string())
        {
            b.finish_and_clear();
        }
        let what = match (self.push, cached) {
            (true, true) => "Layer already exists",
            (true, false) => "Pushed",
            (false, true) => "Already exists",
            (false, false) => "Pull complete",
        };
        self.line(digest, what);
    }

    fn message(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }
}
