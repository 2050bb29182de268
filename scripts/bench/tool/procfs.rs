//! A server's memory and CPU time from /proc: VmRSS (status), Pss (smaps_rollup) and
//! utime + stime (stat), summed over the process and all its descendants, so a multi-process
//! server (Dovecot) and a threaded one (pop3d) are measured alike. RSS double-counts pages
//! that processes share; PSS does not. CPU time counts children that ended and were waited
//! for (Dovecot's per-session processes) through the parent's cutime and cstime.

use std::fs;

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub processes: usize,
}

/// `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(parent) = parent_of(child) {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, q)| *q == p).map(|(c, _)| *c));
        i += 1;
    }
    found
}

/// The fields of /proc/PID/stat after "pid (comm)", which may hold spaces and parentheses:
/// index 0 is the state, 1 the parent, 11 to 14 utime, stime, cutime, cstime.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(
        after
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect(),
    )
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?
        .get(1)
        .and_then(|&p| u32::try_from(p).ok())
}

/// Linux reports CPU times in USER_HZ ticks, 100 a second on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by `pid` and its descendants, living and waited for.
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| f.get(11..15).map_or(0, |t| t.iter().sum()))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// CPU seconds used so far by this process (the load generator).
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// A `Key:   123 kB` field of a /proc file.
fn field_kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The memory of `pid` and its descendants now.
pub fn measure(pid: u32) -> Memory {
    let mut memory = Memory::default();
    for p in tree(pid) {
        let Ok(status) = fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        memory.rss_kb += field_kb(&status, "VmRSS:");
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            memory.pss_kb += field_kb(&rollup, "Pss:");
        }
        memory.processes += 1;
    }
    memory
}
