//! `linux.resources` translated into the kernel's cgroup files, for v1 and for v2. Pure: the
//! result is a list of (controller, file, value) writes that `mod.rs` performs in order.
//!
//! Owns: the value formats and unit conversions. Must not touch the filesystem.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::layout::Controller;

/// One write of `value` into `file` of the hierarchy that carries `controller`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: Controller,
    pub file: String,
    pub value: String,
}

fn w(controller: Controller, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
    }
}

/// The controllers whose hierarchy a container must join for these resources to take effect.
/// Tracking (ps, pause, kill --all) is added by the caller.
pub fn needed_controllers(r: &LinuxResources) -> Vec<Controller> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        let any = m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some();
        if any {
            out.push(Controller::Memory);
        }
    }
    if r.pids().is_some_and(|p| p.limit() != 0) {
        out.push(Controller::Pids);
    }
    if let Some(c) = r.cpu() {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some()
            || c.idle().is_some()
            || c.burst().is_some()
        {
            out.push(Controller::Cpu);
        }
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
            || c.mems().as_deref().is_some_and(|s| !s.is_empty())
        {
            out.push(Controller::Cpuset);
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        out.push(Controller::Devices);
    }
    if r.block_io()
        .as_ref()
        .is_some_and(|b| b.weight().is_some() || b.leaf_weight().is_some())
    {
        out.push(Controller::Blkio);
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push(Controller::Hugetlb);
    }
    out
}

/// v1 writes, except memory.limit_in_bytes and memory.memsw.limit_in_bytes, whose order depends
/// on the current values (see `mod.rs`, the kernel keeps memsw >= limit at all times).
pub fn v1_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        use Controller::Memory;
        if let Some(v) = m.reservation() {
            out.push(w(Memory, "memory.soft_limit_in_bytes", v));
        }
        if let Some(v) = m.kernel_tcp() {
            out.push(w(Memory, "memory.kmem.tcp.limit_in_bytes", v));
        }
        if let Some(v) = m.swappiness() {
            out.push(w(Memory, "memory.swappiness", v));
        }
        if let Some(true) = m.disable_oom_killer() {
            out.push(w(Memory, "memory.oom_control", 1));
        }
    }
    push_pids(r, "pids.max", &mut out);
    if let Some(c) = r.cpu() {
        use Controller::{Cpu, Cpuset};
        if let Some(v) = c.shares() {
            out.push(w(Cpu, "cpu.shares", v));
        }
        // The period first: the kernel checks quota against the current period.
        if let Some(v) = c.period() {
            out.push(w(Cpu, "cpu.cfs_period_us", v));
        }
        if let Some(v) = c.quota() {
            out.push(w(Cpu, "cpu.cfs_quota_us", v));
        }
        if let Some(v) = c.burst() {
            out.push(w(Cpu, "cpu.cfs_burst_us", v));
        }
        if let Some(v) = c.realtime_period() {
            out.push(w(Cpu, "cpu.rt_period_us", v));
        }
        if let Some(v) = c.realtime_runtime() {
            out.push(w(Cpu, "cpu.rt_runtime_us", v));
        }
        if let Some(v) = c.idle() {
            out.push(w(Cpu, "cpu.idle", v));
        }
        push_cpuset(c.cpus(), c.mems(), Cpuset, &mut out);
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        out.extend(v1_device_writes(rules));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            out.push(w(Controller::Blkio, "blkio.weight", v));
        }
        if let Some(v) = b.leaf_weight() {
            out.push(w(Controller::Blkio, "blkio.leaf_weight", v));
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
        out.push(w(Controller::Hugetlb, file, h.limit()));
    }
    out
}

/// v2 writes (one directory carries every controller).
pub fn v2_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        use Controller::Memory;
        if let Some(v) = m.reservation() {
            out.push(w(Memory, "memory.low", v2_bytes(v)));
        }
        if let Some(v) = m.limit() {
            out.push(w(Memory, "memory.max", v2_bytes(v)));
        }
        if let Some(swap) = v2_swap(m.limit(), m.swap()) {
            out.push(w(Memory, "memory.swap.max", swap));
        }
        if m.swappiness().is_some() || m.kernel_tcp().is_some() || m.kernel().is_some() {
            tracing::debug!("memory swappiness/kernel limits have no cgroup v2 file; ignored");
        }
    }
    push_pids(r, "pids.max", &mut out);
    if let Some(c) = r.cpu() {
        use Controller::{Cpu, Cpuset};
        if let Some(shares) = c.shares() {
            out.push(w(Cpu, "cpu.weight", shares_to_weight(shares)));
        }
        if c.quota().is_some() || c.period().is_some() {
            out.push(w(Cpu, "cpu.max", v2_cpu_max(c.quota(), c.period())));
        }
        if let Some(v) = c.burst() {
            out.push(w(Cpu, "cpu.max.burst", v));
        }
        if let Some(v) = c.idle() {
            out.push(w(Cpu, "cpu.idle", v));
        }
        push_cpuset(c.cpus(), c.mems(), Cpuset, &mut out);
    }
    if let Some(v) = r.block_io().as_ref().and_then(|b| b.weight()) {
        out.push(w(Controller::Blkio, "io.weight", blkio_weight_to_io(v)));
    }
    for h in r.hugepage_limits().iter().flatten() {
        let file = format!("hugetlb.{}.max", h.page_size());
        out.push(w(Controller::Hugetlb, file, v2_bytes(h.limit())));
    }
    out
}

fn push_pids(r: &LinuxResources, file: &str, out: &mut Vec<Write>) {
    // runc: 0 leaves the limit alone, a negative value means unlimited.
    if let Some(p) = r.pids() {
        match p.limit() {
            0 => {}
            l if l < 0 => out.push(w(Controller::Pids, file, "max")),
            l => out.push(w(Controller::Pids, file, l)),
        }
    }
}

fn push_cpuset(cpus: &Option<String>, mems: &Option<String>, c: Controller, out: &mut Vec<Write>) {
    if let Some(v) = cpus.as_deref().filter(|s| !s.is_empty()) {
        out.push(w(c, "cpuset.cpus", v));
    }
    if let Some(v) = mems.as_deref().filter(|s| !s.is_empty()) {
        out.push(w(c, "cpuset.mems", v));
    }
}

fn v2_bytes(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// OCI `swap` is memory+swap (the v1 meaning); v2's memory.swap.max is swap alone.
fn v2_swap(limit: Option<i64>, swap: Option<i64>) -> Option<String> {
    match (limit, swap) {
        (_, None) => None,
        (_, Some(s)) if s < 0 => Some("max".to_string()),
        (Some(l), Some(s)) if l >= 0 => Some(s.saturating_sub(l).max(0).to_string()),
        (_, Some(s)) => Some(s.to_string()),
    }
}

/// The conversion runc and crun use: shares 2..262144 onto weight 1..10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn blkio_weight_to_io(weight: u16) -> u64 {
    1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990
}

fn v2_cpu_max(quota: Option<i64>, period: Option<u64>) -> String {
    let period = period.unwrap_or(100_000);
    match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    }
}

/// The devices every container may use whatever its config says, appended after the
/// config's rules like runc's `AllowedDevices`: mknod of any node (opening is still checked),
/// and null, zero, full, random, urandom, tty, console, ptmx and the pts range.
const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// v1 devices.allow / devices.deny lines, in the config's order (later rules win, as in the
/// kernel's list semantics), then the defaults.
pub fn v1_device_writes(rules: &[LinuxDeviceCgroup]) -> Vec<Write> {
    let mut out: Vec<Write> = rules
        .iter()
        .map(|d| {
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            w(Controller::Devices, file, device_rule(d))
        })
        .collect();
    out.extend(
        DEFAULT_ALLOWED
            .iter()
            .map(|r| w(Controller::Devices, "devices.allow", r)),
    );
    out
}

/// `type major:minor access` as devices.allow takes it (Documentation/admin-guide/cgroup-v1/devices.rst).
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => 'p',
        LinuxDeviceType::A => 'a',
    };
    let num = |n: Option<i64>| {
        n.filter(|v| *v >= 0)
            .map_or("*".to_string(), |v| v.to_string())
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test json {json}: {e}"))
    }

    #[test]
    fn needed_only_for_set_limits() {
        assert!(needed_controllers(&res("{}")).is_empty());
        let r = res(
            r#"{"memory":{"limit":1048576},"pids":{"limit":10},"devices":[{"allow":false,"access":"rwm"}]}"#,
        );
        assert_eq!(
            needed_controllers(&r),
            vec![Controller::Memory, Controller::Pids, Controller::Devices]
        );
        let r = res(r#"{"cpu":{"cpus":"0"},"pids":{"limit":0}}"#);
        assert_eq!(needed_controllers(&r), vec![Controller::Cpuset]);
    }

    #[test]
    fn v1_cpu_period_before_quota() {
        let r = res(r#"{"cpu":{"shares":512,"quota":50000,"period":100000}}"#);
        let files: Vec<_> = v1_writes(&r).into_iter().map(|w| w.file).collect();
        assert_eq!(
            files,
            vec!["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"]
        );
    }

    #[test]
    fn v1_pids_semantics() {
        let unlimited = v1_writes(&res(r#"{"pids":{"limit":-1}}"#));
        assert_eq!(unlimited[0].value, "max");
        assert!(v1_writes(&res(r#"{"pids":{"limit":0}}"#)).is_empty());
        assert_eq!(v1_writes(&res(r#"{"pids":{"limit":7}}"#))[0].value, "7");
    }

    #[test]
    fn device_rules_format() {
        let r = res(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},{"allow":true,"type":"b","major":8}]}"#,
        );
        let ws = v1_writes(&r);
        assert_eq!(
            (ws[0].file.as_str(), ws[0].value.as_str()),
            ("devices.deny", "a *:* rwm")
        );
        assert_eq!(
            (ws[1].file.as_str(), ws[1].value.as_str()),
            ("devices.allow", "c 1:3 rw")
        );
        assert_eq!(ws[2].value, "b 8:* rwm");
        assert_eq!(ws.len(), 3 + DEFAULT_ALLOWED.len());
    }

    #[test]
    fn v2_conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        let r = res(r#"{"memory":{"limit":104857600,"swap":209715200},"cpu":{"quota":50000}}"#);
        let ws: Vec<_> = v2_writes(&r)
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        assert!(ws.contains(&("memory.max".into(), "104857600".into())));
        assert!(ws.contains(&("memory.swap.max".into(), "104857600".into())));
        assert!(ws.contains(&("cpu.max".into(), "50000 100000".into())));
        let r = res(r#"{"memory":{"limit":-1,"swap":-1}}"#);
        let ws: Vec<_> = v2_writes(&r).into_iter().map(|w| w.value).collect();
        assert_eq!(ws, vec!["max", "max"]);
    }

    #[test]
    fn hugetlb_files() {
        let r = res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#);
        assert_eq!(v1_writes(&r)[0].file, "hugetlb.2MB.limit_in_bytes");
        assert_eq!(v2_writes(&r)[0].file, "hugetlb.2MB.max");
    }
}
