//! From a `Recording` to a `Proposal`: the minimal capability set with its evidence, the probes
//! that were ignored and the denials, and its renderings (text report, JSON, docker/capsa flags,
//! compose, Kubernetes, OCI).
//!
//! Owns the proposal rules (cap-tracing.md §2 "Proposed rule"). Pure: must not do I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use capsa_caps::{Cap, CapSet};
use serde::Serialize;

use crate::classify::{Class, ProbeReason};
use crate::recording::{Recording, ser_cap, ser_caps};

pub use capsa_caps::knowledge::Risk;

/// The risk of `cap` from capsa-caps' knowledge table; a capability this build has no name for
/// is treated as high, since nothing is known to bound it.
fn risk_of(cap: Cap) -> Risk {
    capsa_caps::knowledge::info(cap).map_or(Risk::High, |i| i.risk)
}

/// One piece of evidence for a capability.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub pid: i32,
    pub comm: String,
    pub exe: Option<String>,
    /// The kernel path (`inet_create`), or `file capabilities` for an exec'd file-cap binary.
    pub path: String,
    pub syscall: Option<String>,
    pub count: u64,
}

/// A capability the workload needs.
#[derive(Debug, Clone, Serialize)]
pub struct Need {
    #[serde(serialize_with = "ser_cap")]
    pub cap: Cap,
    pub risk: Risk,
    /// Capabilities that satisfy the same checks instead of this one (DAC_READ_SEARCH for a read).
    #[serde(serialize_with = "ser_cap_vec")]
    pub alternatives: Vec<Cap>,
    pub evidence: Vec<Evidence>,
}

/// Probe checks of one capability for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    #[serde(serialize_with = "ser_cap")]
    pub cap: Cap,
    pub reason: ProbeReason,
    pub explanation: &'static str,
    pub granted: u64,
    pub denied: u64,
}

/// A refusal: reported, never proposed.
#[derive(Debug, Clone, Serialize)]
pub struct Denial {
    /// The capability refused, or the file caps a failed exec needed (empty when unknown).
    #[serde(serialize_with = "ser_caps")]
    pub caps: CapSet,
    pub pid: i32,
    pub comm: String,
    pub exe: Option<String>,
    pub path: String,
    pub count: u64,
}

/// The proposal made from one recording.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// The minimal set: every need, with the first choice of each alternative group.
    #[serde(serialize_with = "ser_caps")]
    pub caps: CapSet,
    /// Always true: no_new_privs replaces the SYS_ADMIN that seccomp/landlock want without it,
    /// and blocks setuid/file-cap gains (cap-tracing.md §0).
    pub no_new_privs: bool,
    pub needs: Vec<Need>,
    pub probes: Vec<Probe>,
    pub denials: Vec<Denial>,
    pub events: u64,
    pub ignored_before_exec: u64,
    pub lost_events: u64,
    /// False when events were lost or the gated process never exec'd: the proposal may miss caps.
    pub complete: bool,
}

fn ser_cap_vec<S: serde::Serializer>(caps: &[Cap], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(caps.iter().map(|c| c.oci_name()))
}

fn cap_named(name: &str) -> Cap {
    Cap::from_oci_name(&format!("CAP_{name}"))
        .unwrap_or_else(|| unreachable!("known capability name {name}"))
}

impl Proposal {
    /// Applies the proposal rules to a recording.
    pub fn from_recording(rec: &Recording) -> Proposal {
        let mut needs: BTreeMap<Cap, Need> = BTreeMap::new();
        let mut probes: BTreeMap<(Cap, ProbeReason), Probe> = BTreeMap::new();
        let mut denials = Vec::new();
        let fallback = DacFallback::of(rec);
        for c in &rec.checks {
            let class = fallback.reclassify(c);
            let ev = Evidence {
                pid: c.pid,
                comm: c.comm.clone(),
                exe: c.exe.clone(),
                path: c.path.clone(),
                syscall: c.syscall.clone(),
                count: c.count,
            };
            match class {
                Class::Required if c.dac_alternative || fallback.is_alternative(c) => {
                    // generic_permission: either DAC cap passes a read; DAC_OVERRIDE comes first
                    // (Docker default, and it does not grant open_by_handle_at, the "shocker" escape).
                    let (first, other) = (cap_named("DAC_OVERRIDE"), cap_named("DAC_READ_SEARCH"));
                    add_need(&mut needs, first, ev, Some(other));
                }
                Class::Required => add_need(&mut needs, c.cap, ev, None),
                Class::Probe(reason) => {
                    let p = probes.entry((c.cap, reason)).or_insert(Probe {
                        cap: c.cap,
                        reason,
                        explanation: reason.explain(),
                        granted: 0,
                        denied: 0,
                    });
                    if c.granted {
                        p.granted += c.count;
                    } else {
                        p.denied += c.count;
                    }
                }
                Class::Denied => denials.push(Denial {
                    caps: [c.cap].into_iter().collect(),
                    pid: c.pid,
                    comm: c.comm.clone(),
                    exe: c.exe.clone(),
                    path: c.path.clone(),
                    count: c.count,
                }),
                Class::Excluded => {}
            }
        }
        add_file_caps(rec, &mut needs);
        add_failed_execs(rec, &mut denials);
        Self::assemble(rec, needs, probes, denials)
    }

    fn assemble(
        rec: &Recording,
        needs: BTreeMap<Cap, Need>,
        probes: BTreeMap<(Cap, ProbeReason), Probe>,
        denials: Vec<Denial>,
    ) -> Proposal {
        let mut needs: Vec<Need> = needs.into_values().collect();
        // A need that is also required on its own path does not keep alternatives.
        for n in &mut needs {
            if n.evidence.iter().any(|e| e.path != "generic_permission") {
                n.alternatives.clear();
            }
        }
        let caps = needs.iter().map(|n| n.cap).collect();
        Proposal {
            caps,
            no_new_privs: true,
            needs,
            probes: probes.into_values().collect(),
            denials,
            events: rec.events,
            ignored_before_exec: rec.ignored_before_exec,
            lost_events: rec.lost_events,
            complete: rec.lost_events == 0 && rec.saw_exec,
        }
    }

    /// The alternative groups: (chosen, alternatives), for a verification run that fails.
    pub fn alternatives(&self) -> Vec<(Cap, Vec<Cap>)> {
        self.needs
            .iter()
            .filter(|n| !n.alternatives.is_empty())
            .map(|n| (n.cap, n.alternatives.clone()))
            .collect()
    }

    /// Replaces `from` with its alternative `to` in the proposed set (the evidence stays).
    pub fn use_alternative(&mut self, from: Cap, to: Cap) -> bool {
        let Some(n) = self
            .needs
            .iter_mut()
            .find(|n| n.cap == from && n.alternatives.contains(&to))
        else {
            return false;
        };
        n.alternatives.retain(|c| *c != to);
        n.alternatives.push(from);
        n.cap = to;
        n.risk = risk_of(to);
        self.caps = self.needs.iter().map(|n| n.cap).collect();
        true
    }

    /// Renders in one of the output formats.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text_report(),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Docker => self.docker_flags() + "\n",
            Format::Compose => self.compose(),
            Format::Kubernetes => self.kubernetes(),
            Format::Oci => self.oci(),
        }
    }

    fn names(&self, prefix: bool) -> Vec<String> {
        self.caps
            .iter()
            .map(|c| {
                if prefix {
                    c.oci_name()
                } else {
                    c.oci_name().trim_start_matches("CAP_").to_string()
                }
            })
            .collect()
    }

    /// `--cap-drop=ALL --cap-add=NET_RAW --security-opt=no-new-privileges` (docker and capsa run).
    pub fn docker_flags(&self) -> String {
        let mut out = String::from("--cap-drop=ALL");
        for n in self.names(false) {
            let _ = write!(out, " --cap-add={n}");
        }
        out.push_str(" --security-opt=no-new-privileges");
        out
    }

    fn compose(&self) -> String {
        let mut out = String::from("cap_drop:\n  - ALL\n");
        if !self.caps.is_empty() {
            out.push_str("cap_add:\n");
            for n in self.names(false) {
                let _ = writeln!(out, "  - {n}");
            }
        }
        out.push_str("security_opt:\n  - no-new-privileges:true\n");
        out
    }

    fn kubernetes(&self) -> String {
        // Kubernetes spells capabilities without the CAP_ prefix (core/v1 Capabilities).
        let quoted: Vec<String> = self
            .names(false)
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        let mut out =
            String::from("securityContext:\n  allowPrivilegeEscalation: false\n  capabilities:\n");
        out.push_str("    drop: [\"ALL\"]\n");
        if !quoted.is_empty() {
            let _ = writeln!(out, "    add: [{}]", quoted.join(", "));
        }
        out
    }

    fn oci(&self) -> String {
        // B=E=P for a root process; I and ambient stay empty (capsa's rule, ARCHITECTURE.md).
        let names = self.names(true);
        let v = serde_json::json!({
            "process": {
                "noNewPrivileges": true,
                "capabilities": {
                    "bounding": names,
                    "effective": names,
                    "permitted": names,
                }
            }
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }
}

/// generic_permission (fs/namei.c) asks DAC_READ_SEARCH before DAC_OVERRIDE for a read or a
/// directory search. With a superset that lacks DAC_READ_SEARCH (Docker's defaults), a read of
/// a file the process may not read shows as a refused DAC_READ_SEARCH followed by a granted
/// DAC_OVERRIDE: the refusal is not a failure, and either cap would do for those reads. (A
/// write in the same run also needs DAC_OVERRIDE; the verification run settles which holds.)
struct DacFallback {
    read_search_refused: bool,
    override_granted: bool,
}

impl DacFallback {
    fn of(rec: &Recording) -> DacFallback {
        let at = |name: &str, granted: bool| {
            rec.checks.iter().any(|c| {
                c.cap.short_name() == Some(name)
                    && c.granted == granted
                    && c.path == "generic_permission"
                    && c.class != Class::Excluded
            })
        };
        DacFallback {
            read_search_refused: at("DAC_READ_SEARCH", false),
            override_granted: at("DAC_OVERRIDE", true),
        }
    }

    fn reclassify(&self, c: &crate::recording::CheckSummary) -> Class {
        let refused_first = c.class == Class::Denied
            && c.cap.short_name() == Some("DAC_READ_SEARCH")
            && c.path == "generic_permission";
        if refused_first && self.override_granted {
            Class::Probe(ProbeReason::DacFallback)
        } else {
            c.class
        }
    }

    fn is_alternative(&self, c: &crate::recording::CheckSummary) -> bool {
        self.read_search_refused
            && c.cap.short_name() == Some("DAC_OVERRIDE")
            && c.path == "generic_permission"
    }
}

fn add_need(needs: &mut BTreeMap<Cap, Need>, cap: Cap, ev: Evidence, alternative: Option<Cap>) {
    let n = needs.entry(cap).or_insert_with(|| Need {
        cap,
        risk: risk_of(cap),
        alternatives: Vec::new(),
        evidence: Vec::new(),
    });
    if let Some(a) = alternative
        && !n.alternatives.contains(&a)
    {
        n.alternatives.push(a);
    }
    n.evidence.push(ev);
}

/// A capability-dumb binary (file caps with the effective bit) fails to exec unless the process
/// can obtain all of its permitted caps, so they are needs even without a cap_capable event.
fn add_file_caps(rec: &Recording, needs: &mut BTreeMap<Cap, Need>) {
    for f in rec.file_cap_execs.iter().filter(|f| f.effective) {
        for cap in f.permitted.iter() {
            let ev = Evidence {
                pid: f.pid,
                comm: f.exe.rsplit('/').next().unwrap_or(&f.exe).to_string(),
                exe: Some(f.exe.clone()),
                path: "file capabilities".into(),
                syscall: Some("execve".into()),
                count: 1,
            };
            add_need(needs, cap, ev, None);
        }
    }
}

fn add_failed_execs(rec: &Recording, denials: &mut Vec<Denial>) {
    for f in &rec.failed_execs {
        denials.push(Denial {
            caps: f.needs,
            pid: f.pid,
            comm: f.comm.clone(),
            exe: f.path.clone(),
            path: "execve EPERM (file capabilities the bounding set lacks?)".into(),
            count: 1,
        });
    }
}

/// Output formats of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Docker,
    Compose,
    Kubernetes,
    Oci,
}

impl Format {
    pub const NAMES: [&'static str; 6] = ["text", "json", "docker", "compose", "kubernetes", "oci"];

    /// Parses a `--format` value (`k8s` is accepted for kubernetes, `capsa` for docker).
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "text" => Format::Text,
            "json" => Format::Json,
            "docker" | "capsa" | "flags" => Format::Docker,
            "compose" => Format::Compose,
            "kubernetes" | "k8s" => Format::Kubernetes,
            "oci" => Format::Oci,
            _ => return None,
        })
    }
}

mod report;

#[cfg(test)]
mod tests;
