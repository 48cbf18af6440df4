//! `capsa import`, `images`, `rmi` and `tag`: argument parsing and output only.
//!
//! Owns the wording and layout of these commands' output; the store logic is capsa-image's.
//! It must not touch the store's files directly.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capsa_image::{
    Image, ImageStore, ImportOptions, Reference, Removal, RemoveOptions, UnpackLimits,
};

/// The layer size limit's override (bytes), for tests and very large rootfs tarballs.
const LIMIT_ENV: &str = "CAPSA_MAX_LAYER_SIZE";

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The rootfs tarball (plain, gzip or zstd), or `-` for standard input.
    file: String,
    /// The name to give the image: REPOSITORY[:TAG].
    reference: Option<String>,
    /// Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// A commit message for the image's history.
    #[arg(short = 'm', long)]
    message: Option<String>,
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Show only images of this repository (and tag).
    reference: Option<String>,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default) or `json` (one JSON object per line, as `docker images --format json`).
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Images to remove, by name or ID (prefix).
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove even when a container uses the image or several names point at it.
    #[arg(short, long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct TagArgs {
    /// The image to name: a name or an ID (prefix).
    source: String,
    /// The new name: REPOSITORY[:TAG].
    target: String,
}

/// Opens the store at `--root`/`CAPSA_ROOT`, else /var/lib/capsa.
pub fn open_store(root: Option<&Path>) -> Result<ImageStore> {
    let root = root.map_or_else(
        || PathBuf::from(capsa_image::DEFAULT_ROOT),
        Path::to_path_buf,
    );
    ImageStore::open(&root)
        .with_context(|| format!("cannot open the image store at {}", root.display()))
}

fn report(r: Result<i32>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("capsa: {e:#}");
        1
    })
}

pub fn import(root: Option<&Path>, args: ImportArgs) -> i32 {
    report(import_inner(root, args))
}

fn import_inner(root: Option<&Path>, args: ImportArgs) -> Result<i32> {
    let store = open_store(root)?;
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let mut limits = UnpackLimits::default();
    if let Some(v) = std::env::var_os(LIMIT_ENV) {
        let v = v.to_string_lossy();
        limits.max_bytes = v
            .parse()
            .with_context(|| format!("{LIMIT_ENV}={v:?} is not a byte count"))?;
    }
    let opts = ImportOptions {
        reference,
        changes: args.changes,
        message: args.message,
        source: args.file.clone(),
        limits,
    };
    let input: Box<dyn Read> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file))?,
        )
    };
    let image = store.import(input, &opts)?;
    println!("{}", image.id());
    Ok(0)
}

/// One row of `capsa images`: an image under one of its names (or `<none>`).
struct Row<'a> {
    repository: String,
    tag: String,
    image: &'a Image,
}

fn rows(images: &[Image]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for image in images {
        if image.references.is_empty() {
            out.push(Row {
                repository: "<none>".into(),
                tag: "<none>".into(),
                image,
            });
        }
        for r in &image.references {
            let tag = r.tag().unwrap_or("<none>").to_string();
            out.push(Row {
                repository: r.familiar_name(),
                tag,
                image,
            });
        }
    }
    out
}

pub fn images(root: Option<&Path>, args: ImagesArgs) -> i32 {
    report(images_inner(root, args))
}

fn images_inner(root: Option<&Path>, args: ImagesArgs) -> Result<i32> {
    let store = open_store(root)?;
    let all = store.images()?;
    let filter = args
        .reference
        .as_deref()
        .map(Reference::parse_name_only)
        .transpose()?;
    let mut rows = rows(&all);
    if let Some(f) = &filter {
        rows.retain(|r| r.repository == f.familiar_name() && f.tag().is_none_or(|t| t == r.tag));
    }
    let now = capsa_image::time::now_unix();
    let id = |img: &Image| {
        if args.no_trunc {
            img.id().to_string()
        } else {
            img.id().short().to_string()
        }
    };
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(r.image.id().clone()) {
                println!("{}", id(r.image));
            }
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => {
            for r in &rows {
                let v = serde_json::json!({
                    "Repository": r.repository,
                    "Tag": r.tag,
                    "ID": id(r.image),
                    "Digest": r.image.manifest.to_string(),
                    "CreatedAt": capsa_image::time::rfc3339(r.image.created),
                    "CreatedSince": since(now, r.image.created),
                    "Size": human_size(r.image.size),
                    "VirtualSize": r.image.size,
                    "Layers": r.image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
                });
                println!("{v}");
            }
        }
        "table" => print_table(&rows, now, &id),
        other => anyhow::bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(0)
}

fn print_table(rows: &[Row<'_>], now: i64, id: &dyn Fn(&Image) -> String) {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.repository.clone(),
                r.tag.clone(),
                id(r.image),
                since(now, r.image.created),
                human_size(r.image.size),
            ]
        })
        .collect();
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Docker's "About a minute ago" style (go-units HumanDuration), coarsely.
fn since(now: i64, then: i64) -> String {
    let s = (now - then).max(0);
    let (n, unit) = match s {
        0..=1 => return "Less than a second ago".into(),
        2..=59 => (s, "seconds"),
        60..=119 => return "About a minute ago".into(),
        120..=3599 => (s / 60, "minutes"),
        3600..=7199 => return "About an hour ago".into(),
        7200..=172_799 => (s / 3600, "hours"),
        172_800..=1_209_599 => (s / 86_400, "days"),
        1_209_600..=5_183_999 => (s / 604_800, "weeks"),
        5_184_000..=63_071_999 => (s / 2_592_000, "months"),
        _ => (s / 31_536_000, "years"),
    };
    format!("{n} {unit} ago")
}

/// Decimal units with three significant digits, as `docker images` prints sizes.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let t = format!("{v:.digits$}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    format!("{t}{}", units[i])
}

pub fn rmi(root: Option<&Path>, args: RmiArgs) -> i32 {
    let store = match open_store(root) {
        Ok(s) => s,
        Err(e) => return report(Err(e)),
    };
    let opts = RemoveOptions {
        force: args.force,
        in_use: None,
    };
    let mut code = 0;
    for name in &args.images {
        match store.remove(name, &opts) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        Removal::Untagged(n) => println!("Untagged: {n}"),
                        Removal::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("capsa: {e}");
                code = 1;
            }
        }
    }
    code
}

pub fn tag(root: Option<&Path>, args: TagArgs) -> i32 {
    report(
        open_store(root)
            .and_then(|s| s.tag(&args.source, &args.target).map_err(Into::into))
            .map(|_| 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(4_000_000), "4MB");
    }

    #[test]
    fn ages_like_docker() {
        assert_eq!(since(100, 100), "Less than a second ago");
        assert_eq!(since(100, 70), "30 seconds ago");
        assert_eq!(since(10_000, 10_000 - 300), "5 minutes ago");
        assert_eq!(since(1_000_000, 1_000_000 - 3 * 86_400), "3 days ago");
    }
}
