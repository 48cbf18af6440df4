//! The text report of a proposal: aligned tables and short sentences, for people.
//!
//! Owns the wording and layout. Must not change the proposal.

use std::fmt::Write as _;

use super::Proposal;

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short(name: String) -> String {
    name.trim_start_matches("CAP_").to_string()
}

impl Proposal {
    pub(super) fn text_report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Recorded {} capability checks ({} before the first exec were ignored).",
            self.events, self.ignored_before_exec
        );
        if self.lost_events > 0 {
            let _ = writeln!(
                out,
                "WARNING: {} events were lost; the proposal may miss capabilities.",
                self.lost_events
            );
        } else if !self.complete {
            let _ = writeln!(
                out,
                "WARNING: the workload never exec'd while recording; nothing was seen."
            );
        }
        self.needs_section(&mut out);
        self.probes_section(&mut out);
        self.denials_section(&mut out);
        let _ = writeln!(out, "\nProposal: {}", self.docker_flags());
        out
    }

    fn needs_section(&self, out: &mut String) {
        if self.needs.is_empty() {
            out.push_str("\nRequired: none. The workload needs no capabilities.\n");
            return;
        }
        let _ = writeln!(out, "\nRequired ({}):", self.needs.len());
        let mut rows = vec![
            [
                "CAP",
                "RISK",
                "COUNT",
                "PROCESS",
                "EXECUTABLE",
                "KERNEL PATH",
                "SYSCALL",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for n in &self.needs {
            for (i, e) in n.evidence.iter().enumerate() {
                let (cap, risk) = if i == 0 {
                    (short(n.cap.oci_name()), n.risk.name().into())
                } else {
                    (String::new(), String::new())
                };
                rows.push(vec![
                    cap,
                    risk,
                    e.count.to_string(),
                    format!("{} ({})", e.comm, e.pid),
                    e.exe.clone().unwrap_or_else(|| "?".into()),
                    e.path.clone(),
                    e.syscall.clone().unwrap_or_default(),
                ]);
            }
        }
        out.push_str(&table(&rows));
        for n in self.needs.iter().filter(|n| !n.alternatives.is_empty()) {
            let alts: Vec<String> = n.alternatives.iter().map(|c| short(c.oci_name())).collect();
            let _ = writeln!(
                out,
                "  {} can be replaced by {}: the kernel accepts either for these checks.",
                short(n.cap.oci_name()),
                alts.join(" or ")
            );
        }
    }

    fn probes_section(&self, out: &mut String) {
        if self.probes.is_empty() {
            return;
        }
        let _ = writeln!(out, "\nProbes ignored ({}):", self.probes.len());
        let mut rows = vec![
            ["CAP", "GRANTED", "DENIED", "WHY IT DOES NOT COUNT"]
                .map(String::from)
                .to_vec(),
        ];
        for p in &self.probes {
            rows.push(vec![
                short(p.cap.oci_name()),
                p.granted.to_string(),
                p.denied.to_string(),
                p.explanation.into(),
            ]);
        }
        out.push_str(&table(&rows));
    }

    fn denials_section(&self, out: &mut String) {
        if self.denials.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nDenied ({}): reported, not proposed. Add them by hand if the workload failed:",
            self.denials.len()
        );
        let mut rows = vec![
            ["CAP", "COUNT", "PROCESS", "EXECUTABLE", "KERNEL PATH"]
                .map(String::from)
                .to_vec(),
        ];
        for d in &self.denials {
            let caps: Vec<String> = d.caps.iter().map(|c| short(c.oci_name())).collect();
            let caps = if caps.is_empty() {
                "?".to_string()
            } else {
                caps.join(",")
            };
            rows.push(vec![
                caps,
                d.count.to_string(),
                format!("{} ({})", d.comm, d.pid),
                d.exe.clone().unwrap_or_else(|| "?".into()),
                d.path.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
}
