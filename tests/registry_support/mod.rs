//! Shared by tests/registry.rs, tests/archives.rs and tests/hostile_images.rs: a private
//! Debian `docker-registry` on a loopback port (own config, own storage, killed by PID), OCI
//! layouts built from directories with GNU tar, a hostile HTTP registry for forged content,
//! and `capsa` invocations against a temp store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub const CAPSA: &str = env!("CARGO_BIN_EXE_capsa");

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A private docker-registry: its own config in `dir`, storage in `dir/data`.
pub struct Registry {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Registry {
    pub fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let mut r = Registry {
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        std::fs::create_dir_all(dir.join("data")).expect("mkdir data");
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "auth:\n  htpasswd:\n    realm: capsa-test\n    path: {}\n",
                p.display()
            )
        });
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n{auth}",
            dir.join("data").display(),
            r.port
        );
        std::fs::write(dir.join("config.yml"), cfg).expect("write config");
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("registry.log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry by its PID (SIGKILL: it dies mid-transfer).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs capsa with `--root store` and the given env.
pub fn capsa(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(CAPSA);
    c.arg("--root").arg(store).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run capsa")
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "capsa failed: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "capsa should have failed; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    Plain,
    Gzip,
    Zstd,
}

/// A layer tar made from a directory by GNU tar (numeric owners, xattrs incl. file caps).
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let o = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--sort=name",
            "-C",
        ])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(
        o.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

pub fn compress(data: &[u8], c: Comp) -> Vec<u8> {
    let prog: &[&str] = match c {
        Comp::Plain => return data.to_vec(),
        Comp::Gzip => &["gzip", "-n", "-1", "-c"],
        Comp::Zstd => &["zstd", "-q", "-1", "-c"],
    };
    let mut child = Command::new(prog[0])
        .args(&prog[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("compressor");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let o = child.wait_with_output().expect("compress");
    w.join().expect("join").expect("write");
    o.stdout
}

pub fn media(c: Comp) -> &'static str {
    match c {
        Comp::Plain => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// An OCI image layout on disk, built blob by blob.
pub struct Layout {
    pub dir: PathBuf,
    index: Vec<serde_json::Value>,
}

/// One built image: its manifest bytes and the layers' diff IDs.
pub struct Built {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub diff_ids: Vec<String>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    pub fn blob(&self, data: &[u8]) -> String {
        let hex = sha256_hex(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).expect("blob");
        format!("sha256:{hex}")
    }

    /// Builds an image from (tar, compression) layers for `arch`; returns its manifest.
    pub fn image(&self, layers: &[(Vec<u8>, Comp)], arch: &str) -> Built {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, c) in layers {
            diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
            let blob = compress(tar, *c);
            let d = self.blob(&blob);
            descs
                .push(serde_json::json!({"mediaType": media(*c), "digest": d, "size": blob.len()}));
        }
        let config = serde_json::json!({
            "created": "2026-01-02T03:04:05Z", "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = serde_json::to_vec(&config).expect("json");
        let cd = self.blob(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        let digest = self.blob(&manifest);
        Built {
            manifest,
            digest,
            diff_ids,
        }
    }

    /// Names a manifest or index in index.json under `tag`.
    pub fn tag(&mut self, tag: &str, media_type: &str, digest: &str, size: usize) {
        self.index.push(
            serde_json::json!({"mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        );
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).expect("json"),
        )
        .expect("index");
    }

    pub fn tag_image(&mut self, tag: &str, b: &Built) {
        let d = b.digest.clone();
        self.tag(
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &d,
            b.manifest.len(),
        );
    }
}

/// skopeo copy from an OCI layout to the registry (it re-verifies every digest).
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .args(extra)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}")));
}

/// The unpacked dir of a layer in a capsa store.
pub fn layer_root(store: &Path, diff_id: &str) -> PathBuf {
    store
        .join("layers")
        .join(diff_id.trim_start_matches("sha256:"))
        .join("root")
}

/// Every image record's layers and blobs exist and are complete: the store is consistent.
pub fn assert_store_consistent(store: &Path) {
    let Ok(data) = std::fs::read(store.join("images.json")) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(&data).expect("images.json parses");
    for (_, img) in v["images"].as_object().cloned().unwrap_or_default() {
        for key in ["manifest", "config"] {
            let d = img[key].as_str().expect("digest");
            assert!(
                store
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:"))
                    .is_file(),
                "missing {key} blob {d}"
            );
        }
        for l in img["layers"].as_array().cloned().unwrap_or_default() {
            let diff = l["diff_id"]
                .as_str()
                .expect("diff_id")
                .trim_start_matches("sha256:")
                .to_string();
            let blob = l["blob"]
                .as_str()
                .expect("blob")
                .trim_start_matches("sha256:")
                .to_string();
            assert!(
                store.join("layers").join(&diff).join("complete").is_file(),
                "layer {diff} incomplete"
            );
            assert!(
                store.join("blobs/sha256").join(&blob).is_file(),
                "blob {blob} missing"
            );
        }
    }
    // Nothing under layers/ lacks its marker (a half-written layer never looks complete).
    for e in std::fs::read_dir(store.join("layers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        assert!(
            e.path().join("complete").is_file(),
            "{} has no complete marker",
            e.path().display()
        );
    }
}

/// A hostile registry: serves fixed bodies by path over HTTP/1.1 (one request per connection).
pub struct FakeRegistry {
    pub port: u16,
    stop: Arc<Mutex<bool>>,
}

impl FakeRegistry {
    pub fn start(routes: HashMap<String, (String, Vec<u8>)>) -> FakeRegistry {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(Mutex::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if *s2.lock().expect("lock") {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let head_only = line.starts_with("HEAD");
                let (status, ct, body) = match routes.get(&path) {
                    Some((ct, b)) => ("200 OK", ct.clone(), b.clone()),
                    None if path == "/v2/" => ("200 OK", "application/json".into(), b"{}".to_vec()),
                    None => (
                        "404 Not Found",
                        "application/json".into(),
                        br#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#.to_vec(),
                    ),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if !head_only {
                    let _ = conn.write_all(&body);
                }
                let _ = conn.flush();
                let _ = reader.read(&mut [0u8; 0]);
            }
        });
        FakeRegistry { port, stop }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
