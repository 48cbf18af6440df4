use super::*;
use crate::recording::{CheckSummary, FileCapExec};

fn cap(name: &str) -> Cap {
    cap_named(name)
}

fn check(name: &str, class: Class, granted: bool, path: &str, dac: bool) -> CheckSummary {
    CheckSummary {
        cap: cap(name),
        class,
        granted,
        path: path.into(),
        syscall: None,
        pid: 7,
        comm: "w".into(),
        exe: Some("/bin/w".into()),
        count: 2,
        dac_alternative: dac,
    }
}

fn recording(checks: Vec<CheckSummary>) -> Recording {
    Recording {
        root_pid: 7,
        checks,
        saw_exec: true,
        events: 10,
        ..Recording::default()
    }
}

#[test]
fn probes_and_denials_are_not_proposed() {
    let rec = recording(vec![
        check("NET_RAW", Class::Required, true, "inet_create", false),
        check(
            "SYS_ADMIN",
            Class::Probe(ProbeReason::Overcommit),
            true,
            "security_vm_enough_memory_mm",
            false,
        ),
        check(
            "SYS_ADMIN",
            Class::Probe(ProbeReason::Overcommit),
            false,
            "security_vm_enough_memory_mm",
            false,
        ),
        check("CHOWN", Class::Denied, false, "setattr_prepare", false),
    ]);
    let p = Proposal::from_recording(&rec);
    assert_eq!(p.caps, [cap("NET_RAW")].into_iter().collect());
    assert_eq!(
        (p.probes.len(), p.probes[0].granted, p.probes[0].denied),
        (1, 2, 2)
    );
    assert_eq!(p.denials.len(), 1);
    assert!(p.complete);
    assert_eq!(
        p.docker_flags(),
        "--cap-drop=ALL --cap-add=NET_RAW --security-opt=no-new-privileges"
    );
}

#[test]
fn dac_read_is_kept_as_alternative() {
    let rec = recording(vec![check(
        "DAC_READ_SEARCH",
        Class::Required,
        true,
        "generic_permission",
        true,
    )]);
    let mut p = Proposal::from_recording(&rec);
    assert_eq!(p.caps, [cap("DAC_OVERRIDE")].into_iter().collect());
    assert_eq!(
        p.alternatives(),
        vec![(cap("DAC_OVERRIDE"), vec![cap("DAC_READ_SEARCH")])]
    );
    assert!(p.use_alternative(cap("DAC_OVERRIDE"), cap("DAC_READ_SEARCH")));
    assert_eq!(p.caps, [cap("DAC_READ_SEARCH")].into_iter().collect());
    assert!(
        p.render(Format::Text)
            .contains("DAC_READ_SEARCH can be replaced by DAC_OVERRIDE")
    );
}

#[test]
fn effective_file_caps_are_needs() {
    let mut rec = recording(vec![]);
    rec.file_cap_execs.push(FileCapExec {
        pid: 8,
        exe: "/usr/bin/ping".into(),
        permitted: [cap("NET_RAW")].into_iter().collect(),
        effective: true,
    });
    let p = Proposal::from_recording(&rec);
    assert_eq!(p.caps, [cap("NET_RAW")].into_iter().collect());
    assert_eq!(p.needs[0].evidence[0].path, "file capabilities");
}

#[test]
fn renderings() {
    let rec = recording(vec![
        check(
            "NET_BIND_SERVICE",
            Class::Required,
            true,
            "inet_bind_sk",
            false,
        ),
        check("CHOWN", Class::Required, true, "setattr_prepare", false),
    ]);
    let p = Proposal::from_recording(&rec);
    assert_eq!(
        p.render(Format::Compose),
        "cap_drop:\n  - ALL\ncap_add:\n  - CHOWN\n  - NET_BIND_SERVICE\nsecurity_opt:\n  - no-new-privileges:true\n"
    );
    assert!(
        p.render(Format::Kubernetes)
            .contains("    add: [\"CHOWN\", \"NET_BIND_SERVICE\"]\n")
    );
    let oci: serde_json::Value = serde_json::from_str(&p.render(Format::Oci)).unwrap_or_default();
    assert_eq!(
        oci["process"]["capabilities"]["bounding"],
        serde_json::json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    );
    let json: serde_json::Value = serde_json::from_str(&p.render(Format::Json)).unwrap_or_default();
    assert_eq!(
        json["caps"],
        serde_json::json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(json["needs"][0]["risk"], "high");
    let text = p.render(Format::Text);
    assert!(text.contains("Required (2):"), "{text}");
    let empty = Proposal::from_recording(&recording(vec![]));
    assert_eq!(
        empty.render(Format::Docker),
        "--cap-drop=ALL --security-opt=no-new-privileges\n"
    );
    assert!(empty.render(Format::Text).contains("Required: none."));
    assert_eq!(Format::parse("k8s"), Some(Format::Kubernetes));
}
