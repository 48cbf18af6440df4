use super::*;
use crate::options::RunOptions;

const HOST: CapSet = CapSet::from_bits(0x1ff_ffff_ffff & !(1 << 24));

struct Fixture {
    rootfs: tempfile::TempDir,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("etc")).unwrap();
    std::fs::write(
        rootfs.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.path().join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\n",
    )
    .unwrap();
    Fixture {
        rootfs,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn image() -> ImageDefaults {
    ImageDefaults {
        env: vec!["PATH=/bin".into(), "A=image".into()],
        entrypoint: vec![],
        cmd: vec!["sh".into()],
        working_dir: String::new(),
        user: String::new(),
    }
}

fn generate_for(f: &Fixture, opts: RunOptions) -> Result<Generated> {
    let cfg = opts.parse()?;
    generate(&SpecInput {
        id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        config: &cfg,
        image: &image(),
        rootfs: f.rootfs.path(),
        container_dir: f.dir.path(),
        available: HOST,
    })
}

fn opts(f: impl FnOnce(&mut RunOptions)) -> RunOptions {
    let mut o = RunOptions {
        image: "img".into(),
        ..RunOptions::default()
    };
    f(&mut o);
    o
}

fn json_of(g: &Generated) -> Value {
    serde_json::to_value(&g.spec).unwrap()
}

fn has(list: &Value, s: &str) -> bool {
    list.as_array().unwrap().iter().any(|v| v == s)
}

fn mount<'a>(v: &'a Value, dest: &str) -> &'a Value {
    v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dest)
        .unwrap()
}

#[test]
fn defaults_like_docker() {
    let f = fixture();
    let g = generate_for(&f, opts(|_| {})).unwrap();
    assert_eq!(g.caps.bounding.bits(), 0xa80425fb);
    let v = json_of(&g);
    let c = &v["process"]["capabilities"];
    assert_eq!(c["bounding"].as_array().unwrap().len(), 14);
    assert_eq!(c["inheritable"], json!([]));
    assert_eq!(c["ambient"], json!([]));
    assert_eq!(g.hostname, "0123456789ab");
    assert!(has(&v["linux"]["maskedPaths"], "/proc/kcore"));
    assert!(has(&v["linux"]["readonlyPaths"], "/proc/sys"));
    assert_eq!(v["process"]["args"], json!(["sh"]));
    assert_eq!(v["process"]["noNewPrivileges"], false);
    assert!(has(&v["process"]["env"], "PATH=/bin"));
    assert!(has(&v["process"]["env"], "HOME=/root"));
    assert!(has(&mount(&v, "/sys")["options"], "ro"));
    // No sysctl that opens low ports (capsa's deliberate difference from Docker).
    assert!(
        v["linux"]["sysctl"]
            .get("net.ipv4.ip_unprivileged_port_start")
            .is_none()
    );
}

#[test]
fn privileged_opens_everything_but_the_host_limit() {
    let f = fixture();
    let g = generate_for(&f, opts(|o| o.privileged = true)).unwrap();
    assert_eq!(g.caps.bounding, HOST);
    assert_eq!(g.seccomp, "unconfined");
    let v = json_of(&g);
    assert!(
        v["linux"]
            .get("maskedPaths")
            .is_none_or(|m| m == &json!([]))
    );
    assert!(
        v["linux"]
            .get("readonlyPaths")
            .is_none_or(|m| m == &json!([]))
    );
    assert!(v["linux"].get("seccomp").is_none());
    assert!(has(&mount(&v, "/sys")["options"], "rw"));
    assert!(has(&mount(&v, "/sys/fs/cgroup")["options"], "rw"));
}

#[test]
fn non_root_gets_ambient_for_named_adds_only() {
    let f = fixture();
    let g = generate_for(
        &f,
        opts(|o| {
            o.user = Some("nobody".into());
            o.cap_drop = vec!["ALL".into()];
            o.cap_add = vec!["net_bind_service".into()];
        }),
    )
    .unwrap();
    assert_eq!((g.user.uid, g.user.gid), (65534, 65534));
    assert_eq!(g.caps.ambient.bits(), 1 << 10);
    assert_eq!(g.caps.inheritable, g.caps.ambient);
    let v = json_of(&g);
    assert_eq!(
        v["process"]["capabilities"]["ambient"],
        json!(["CAP_NET_BIND_SERVICE"])
    );
    let g = generate_for(&f, opts(|o| o.user = Some("65534".into()))).unwrap();
    assert!(g.caps.ambient.is_empty(), "defaults never become ambient");
}

#[test]
fn docker_errors_surface() {
    let f = fixture();
    let e = generate_for(&f, opts(|o| o.cap_add = vec!["CAP_FOO".into()])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid CapAdd: unknown capability: \"CAP_FOO\""
    );
    let e = generate_for(&f, opts(|o| o.user = Some("alice".into()))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to find user alice: no matching entries in passwd file"
    );
    let e = generate_for(&f, opts(|o| o.sysctl = vec!["kernel.hostname=x".into()])).unwrap_err();
    assert!(e.to_string().contains("not in a separate kernel namespace"));
}

#[test]
fn entrypoint_and_cmd_rules() {
    let img = ImageDefaults {
        entrypoint: vec!["/bin/httpd".into()],
        cmd: vec!["-f".into()],
        ..image()
    };
    let cfg = opts(|_| {}).parse().unwrap();
    assert_eq!(command_line(&cfg, &img).unwrap(), ["/bin/httpd", "-f"]);
    let cfg = opts(|o| o.command = vec!["-v".into()]).parse().unwrap();
    assert_eq!(command_line(&cfg, &img).unwrap(), ["/bin/httpd", "-v"]);
    let cfg = opts(|o| o.entrypoint = Some("/bin/sh".into()))
        .parse()
        .unwrap();
    assert_eq!(command_line(&cfg, &img).unwrap(), ["/bin/sh"]);
    let cfg = opts(|o| o.entrypoint = Some(String::new()))
        .parse()
        .unwrap();
    assert!(command_line(&cfg, &img).is_err());
}

#[test]
fn env_merge_order() {
    let cfg = opts(|o| o.env = vec!["A=flag".into(), "B=2".into()])
        .parse()
        .unwrap();
    let env = environment(&cfg, &image(), "h", "/root");
    assert_eq!(
        env,
        ["PATH=/bin", "HOSTNAME=h", "A=flag", "B=2", "HOME=/root"]
    );
}

#[test]
fn resources_and_mounts() {
    let f = fixture();
    let g = generate_for(
        &f,
        opts(|o| {
            o.memory = Some("64m".into());
            o.cpus = Some("0.5".into());
            o.pids_limit = Some(50);
            o.read_only = true;
            o.volumes = vec!["/tmp:/data:ro".into()];
            o.tmpfs = vec!["/run:size=1m".into()];
            o.network = Some("host".into());
            o.ulimit = vec!["nofile=100:200".into()];
            o.security_opt = vec!["no-new-privileges".into()];
        }),
    )
    .unwrap();
    let v = json_of(&g);
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 50);
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns.iter().any(|n| n["type"] == "network"));
    assert!(has(&mount(&v, "/data")["options"], "ro"));
    assert!(has(&mount(&v, "/run")["options"], "size=1m"));
}
