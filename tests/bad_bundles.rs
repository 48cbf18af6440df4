//! Bad bundles and bad ids (root): each `create` fails with a clear error (key words
//! asserted) and leaves nothing behind: no state dir under --root (nor beside it), no
//! cgroup dir named after the id under /sys/fs/cgroup, no mount referencing the bundle.
//! Runs against runc 1.1.5 too, with runc's own words where they differ (runc says
//! `unexpected EOF` for a truncated config.json and accepts any ociVersion).

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{Bundle, Out, Runner, Runtime, unique_id};
use serde_json::json;
use std::fs;

/// Every group must match; a group matches when any of its words is in the error text.
type Words<'a> = &'a [&'a [&'a str]];

fn assert_words(out: &Out, text: &str, words: Words) {
    let t = text.to_lowercase();
    for group in words {
        assert!(
            group.iter().any(|w| t.contains(w)),
            "error lacks any of {group:?}:\n{text}\n{out}"
        );
    }
}

/// Nothing under the state root or beside it, no cgroup, no mount of the bundle.
fn assert_clean(r: &Runner, id: &str, bundle: &Bundle) {
    let left = common::leftovers(r, id, bundle.path());
    assert!(left.is_empty(), "left behind for {id:?}: {left:?}");
    let in_root: Vec<_> = fs::read_dir(&r.root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(in_root.is_empty(), "state root not empty: {in_root:?}");
    let parent = r.root.parent().unwrap_or(&r.root);
    let beside: Vec<_> = fs::read_dir(parent)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        beside,
        ["root"],
        "something was written beside the state root"
    );
}

/// `create` must fail with `words`; returns the error text.
fn create_fails(r: &Runner, b: &Bundle, id: &str, words: Words) -> String {
    let (out, pid) = r.create(b, id, &[]);
    let text = r.read_container_log(id);
    assert!(
        !out.ok() && !out.timed_out,
        "create should fail: {out}\n{text}"
    );
    assert_eq!(
        pid, 0,
        "a failed create must not leave a pid file with a live init"
    );
    assert_words(&out, &text, words);
    text
}

fn words_for(rt: Runtime, runc: Words<'static>, capsa: Words<'static>) -> Words<'static> {
    match rt {
        Runtime::Runc => runc,
        Runtime::Capsa => capsa,
    }
}

fn missing_config_json(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    let id = unique_id("nocfg");
    // Runner::create would write config.json back: call the runtime directly.
    fs::remove_file(b.path().join("config.json")).unwrap_or_else(|e| panic!("{e}"));
    let mut c = r.command();
    c.args(["create", "--bundle", &b.path_str(), &id]);
    r.track(&id);
    let out = common::run_cmd(c, r.scratch(), None, common::CMD_TIMEOUT);
    assert!(!out.ok(), "create without config.json should fail: {out}");
    assert_words(
        &out,
        &out.stderr,
        &[
            &["config.json"],
            &["not found", "no such file", "missing", "does not exist"],
        ],
    );
    assert_clean(&r, &id, &b);
}
e2e!(
    missing_config_json,
    runc_missing_config_json,
    capsa_missing_config_json
);

/// A truncated config.json.
fn invalid_json(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    let id = unique_id("badjson");
    let mut c = r.command();
    fs::write(
        b.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.args(["create", "--bundle", &b.path_str(), &id]);
    r.track(&id);
    let out = common::run_cmd(c, r.scratch(), None, common::CMD_TIMEOUT);
    assert!(!out.ok(), "create with invalid JSON should fail: {out}");
    let words = words_for(
        rt,
        &[&["unexpected eof"]],
        &[
            &["config.json"],
            &["json", "parse", "eof", "syntax", "expected"],
        ],
    );
    assert_words(&out, &out.stderr, words);
    assert_clean(&r, &id, &b);
}
e2e!(invalid_json, runc_invalid_json, capsa_invalid_json);

/// runc 1.1.5 accepts any ociVersion (checked: `0.1.0` and `banana` both run), so this
/// case is capsa's own: a major version it does not know, and a non-version string.
#[test]
fn capsa_wrong_oci_version() {
    require_root!();
    let Some(r) = Runner::new(Runtime::Capsa) else {
        return;
    };
    for v in ["2.0.0", "banana"] {
        let mut b = Bundle::new();
        b.config["ociVersion"] = json!(v);
        let id = unique_id("ociver");
        create_fails(&r, &b, &id, &[&["ociversion", "oci version"], &[v]]);
        assert_clean(&r, &id, &b);
    }
}

fn missing_rootfs(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    fs::remove_dir_all(b.rootfs()).unwrap_or_else(|e| panic!("{e}"));
    let id = unique_id("noroot");
    create_fails(
        &r,
        &b,
        &id,
        &[
            &["rootfs"],
            &[
                "no such file",
                "not found",
                "does not exist",
                "enoent",
                "missing",
            ],
        ],
    );
    assert_clean(&r, &id, &b);
}
e2e!(missing_rootfs, runc_missing_rootfs, capsa_missing_rootfs);

fn unknown_namespace(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.add_namespace(json!({"type": "bogusns"}));
    let id = unique_id("badns");
    create_fails(&r, &b, &id, &[&["namespace"], &["bogusns"]]);
    assert_clean(&r, &id, &b);
}
e2e!(
    unknown_namespace,
    runc_unknown_namespace,
    capsa_unknown_namespace
);

/// A second create with a live container's id fails and leaves the first untouched.
fn duplicate_id(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("dup");
    let (out, pid) = r.create(&b, &id, &[]);
    out.assert_ok("first create");
    let before = r.state(&id).unwrap_or_else(|o| panic!("state: {o}"));

    let b2 = Bundle::new();
    let mut c = r.command();
    c.args(["create", "--bundle", &b2.path_str(), &id]);
    let dup = common::run_cmd(c, r.scratch(), None, common::CMD_TIMEOUT);
    assert!(!dup.ok(), "a duplicate id must be refused: {dup}");
    assert_words(&dup, &dup.stderr, &[&["exists"]]);
    let after = r
        .state(&id)
        .unwrap_or_else(|o| panic!("first container lost: {o}"));
    assert_eq!(
        after, before,
        "the refused create changed the first container"
    );
    assert!(
        common::proc::state_letter(pid).is_some(),
        "first container's init died"
    );
    let b2s = b2.path_str();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mounts.contains(&b2s),
        "a mount references the refused bundle"
    );

    r.cmd(&["delete", "--force", &id])
        .assert_ok("delete --force");
    assert_clean(&r, &id, &b);
}
e2e!(duplicate_id, runc_duplicate_id, capsa_duplicate_id);

/// Ids with `/` or `..` are refused before anything touches the disk: nothing under
/// the state root, nothing beside it (`../x` would land there), no cgroup.
fn id_with_slash_or_dots(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    let u = unique_id("badid");
    for id in [
        format!("{u}/sub"),
        "..".to_string(),
        format!("../{u}"),
        format!("{u}/../{u}x"),
    ] {
        create_fails(&r, &b, &id, &[&["invalid"], &["id"]]);
        assert_clean(&r, &id, &b);
        assert!(
            common::proc::cgroup_dirs_named(&u).is_empty(),
            "cgroup made for {id:?}"
        );
    }
}
e2e!(
    id_with_slash_or_dots,
    runc_id_with_slash_or_dots,
    capsa_id_with_slash_or_dots
);

/// With `--log F --log-format json` (what the containerd shim passes) the error is a
/// JSON line `{"level":"error","msg":...,"time":...}`: the shim shows the last one.
fn json_log_error_line(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    fs::remove_dir_all(b.rootfs()).unwrap_or_else(|e| panic!("{e}"));
    let id = unique_id("jsonlog");
    let log = r.scratch().join("log.json");
    let mut c = r.command();
    c.arg("--log").arg(&log).args(["--log-format", "json"]);
    c.args(["create", "--bundle", &b.path_str(), &id]);
    r.track(&id);
    let out = common::run_cmd(c, r.scratch(), None, common::CMD_TIMEOUT);
    assert!(!out.ok(), "create should fail: {out}");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let last_error = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .unwrap_or_else(|| panic!("no JSON error line in {log:?}:\n{text}\n{out}"));
    assert!(
        last_error["msg"]
            .as_str()
            .is_some_and(|m| m.contains("rootfs")),
        "{last_error}"
    );
    assert!(last_error["time"].is_string(), "{last_error}");
    assert_clean(&r, &id, &b);
}
e2e!(
    json_log_error_line,
    runc_json_log_error_line,
    capsa_json_log_error_line
);
