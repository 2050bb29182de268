//! The table: every figure as the median of its runs with the range, pop3d beside the peer
//! with the ratio pop3d / peer, and each target (set in `ROWS` below) marked met or not (never
//! in a smoke pass, whose sizes are too small to judge). Lines `meta<TAB>NAME<TAB>TEXT` fill the
//! `{NAME}` slots of the labels with the sizes the run used; lines `SERVER<TAB>failed<TAB>WHAT`
//! list scenarios that failed.

use std::collections::HashMap;
use std::fs;

use crate::{fail, Args, Outcome};

#[derive(Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    /// At least this, and at least this many times the peer.
    AtLeastTimesPeer(f64, f64),
    AtMost(f64),
    Under(f64),
    Zero,
}

struct Row {
    scenario: &'static str,
    figure: &'static str,
    key: &'static str,
    /// Stored value times `scale` is what the table shows.
    scale: f64,
    digits: usize,
    target: Target,
}

const fn row(
    scenario: &'static str,
    figure: &'static str,
    key: &'static str,
    scale: f64,
    digits: usize,
    target: Target,
) -> Row {
    Row {
        scenario,
        figure,
        key,
        scale,
        digits,
        target,
    }
}

const MS: f64 = 1000.0;
const TO_MB: f64 = 1.0 / 1024.0;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    row("sessions", "sessions/s, {clients} clients", "sessions_per_s", 1.0, 0, Target::AtLeastTimesPeer(1500.0, 5.0)),
    row("sessions", "p50 latency, ms", "sessions_p50_ms", 1.0, 2, Target::None),
    row("sessions", "p99 latency, ms", "sessions_p99_ms", 1.0, 2, Target::Under(50.0)),
    row("sessions", "errors", "sessions_errors", 1.0, 0, Target::Zero),
    row("sessions", "server CPU, % of a core", "sessions_server_cpu_pct", 1.0, 0, Target::None),
    row("sessions", "load generator CPU, % of a core", "sessions_client_cpu_pct", 1.0, 0, Target::None),
    row("retr-big", "{big}: MB/s", "retr_big_mb_s", 1.0, 0, Target::AtLeast(1000.0)),
    row("retr-big", "server CPU, % of a core", "retr_big_server_cpu_pct", 1.0, 0, Target::None),
    row("retr-big", "load generator CPU, % of a core", "retr_big_client_cpu_pct", 1.0, 0, Target::None),
    row("retr-small", "{small}, pipelined: msgs/s", "retr_small_msgs_s", 1.0, 0, Target::AtLeast(35000.0)),
    row("retr-small", "server CPU, % of a core", "retr_small_server_cpu_pct", 1.0, 0, Target::None),
    row("retr-small", "load generator CPU, % of a core", "retr_small_client_cpu_pct", 1.0, 0, Target::None),
    row("after", "server RSS after sessions and RETRs, MB", "after_load_rss_kb", TO_MB, 1, Target::None),
    row("after", "server PSS after sessions and RETRs, MB", "after_load_pss_kb", TO_MB, 1, Target::None),
    row("open-huge", "{huge}: first PASS, s", "huge_pass1_s", 1.0, 3, Target::None),
    row("open-huge", "first STAT, s", "huge_stat1_s", 1.0, 3, Target::None),
    row("open-huge", "first PASS + STAT, s", "huge_first_s", 1.0, 3, Target::Under(0.5)),
    row("open-huge", "first QUIT (nothing deleted), s", "huge_quit1_s", 1.0, 3, Target::None),
    row("open-huge", "later PASS, s", "huge_pass2_s", 1.0, 3, Target::None),
    row("open-huge", "later STAT, s", "huge_stat2_s", 1.0, 3, Target::None),
    row("open-huge", "later LIST, s", "huge_list_s", 1.0, 3, Target::None),
    row("open-huge", "later UIDL, s", "huge_uidl_s", 1.0, 3, Target::None),
    row("open-huge", "later STAT + LIST + UIDL, s", "huge_later_s", 1.0, 3, Target::Under(0.15)),
    row("open-huge", "server RSS in the later session, MB", "huge_rss_kb", TO_MB, 1, Target::Under(32.0)),
    row("open-huge", "server PSS in the later session, MB", "huge_pss_kb", TO_MB, 1, Target::None),
    row("update", "DELE 1, s", "upd_dele1_s", 1.0, 4, Target::None),
    row("update", "then QUIT (durable), s", "upd_dele1_quit_s", 1.0, 3, Target::None),
    row("update", "DELE 1 + QUIT, s", "upd_dele1_total_s", 1.0, 3, Target::Under(3.0)),
    row("update", "DELE last + QUIT, ms", "upd_last_total_s", MS, 1, Target::Under(50.0)),
    row("update", "{many} DELE, pipelined, s", "upd_many_dele_s", 1.0, 3, Target::Under(0.1)),
    row("update", "then QUIT, s", "upd_many_quit_s", 1.0, 3, Target::Under(3.0)),
    row("update", "messages lost or damaged", "upd_lost", 1.0, 0, Target::Zero),
    row("idle", "server at rest: processes", "idle_server_processes", 1.0, 0, Target::None),
    row("idle", "server at rest: RSS, MB", "idle_server_rss_kb", TO_MB, 1, Target::None),
    row("idle", "server at rest: PSS, MB", "idle_server_pss_kb", TO_MB, 1, Target::None),
    row("idle", "RSS per unauthenticated connection, KB ({conns})", "idle_unauth_rss_kb", 1.0, 1, Target::None),
    row("idle", "PSS per unauthenticated connection, KB", "idle_unauth_pss_kb", 1.0, 1, Target::Under(32.0)),
    row("idle", "RSS per logged-in session, KB ({sessions})", "idle_auth_rss_kb", 1.0, 1, Target::None),
    row("idle", "PSS per logged-in session, KB", "idle_auth_pss_kb", 1.0, 1, Target::Under(64.0)),
    row("footprint", "release binary, stripped, KB", "binary_kb", 1.0, 0, Target::AtMost(1024.0)),
    row("footprint", "exec to greeting readable, ms", "startup_ms", 1.0, 2, Target::AtMost(10.0)),
    row("footprint", "RSS at rest after start, KB", "startup_rss_kb", 1.0, 0, Target::Under(2048.0)),
    row("uidl", "{huge}: open + STAT in process, --uidl pop3d, s", "uidl_open_pop3d_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl popa3d,pop3d, s", "uidl_open_popa3d_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl solid-pop3d,pop3d, s", "uidl_open_solid-pop3d_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl dovecot,pop3d, s", "uidl_open_dovecot_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl dovecot-md5,pop3d, s", "uidl_open_dovecot-md5_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl uw,pop3d, s", "uidl_open_uw_s", 1.0, 3, Target::None),
    row("uidl", "with --uidl x-uidl,pop3d, s", "uidl_open_x-uidl_s", 1.0, 3, Target::None),
    row("reference", "cat of the {huge} mbox to /dev/null (page cache), s", "ref_cat_s", 1.0, 3, Target::None),
    row("reference", "loopback TCP, MB/s", "ref_tcp_mb_s", 1.0, 0, Target::None),
];

/// The values of each (server, figure), in run order.
struct Table {
    values: HashMap<(String, String), Vec<f64>>,
    meta: HashMap<String, String>,
    failed: Vec<String>,
}

fn load(path: &str) -> Outcome<Table> {
    let text = fs::read_to_string(path).map_err(|e| fail!("{path}: {e}"))?;
    let mut table = Table {
        values: HashMap::new(),
        meta: HashMap::new(),
        failed: Vec::new(),
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(server), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if server == "meta" {
            table.meta.insert(key.to_string(), value.to_string());
        } else if key == "failed" {
            table.failed.push(format!("{server}: {value}"));
        } else if let Ok(v) = value.parse::<f64>() {
            table
                .values
                .entry((server.to_string(), key.to_string()))
                .or_default()
                .push(v);
        }
    }
    Ok(table)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A number for the table: thousands grouped when shown without decimals.
fn number(v: f64, digits: usize) -> String {
    if digits > 0 {
        return format!("{v:.digits$}");
    }
    let rounded = format!("{:.0}", v.abs());
    let mut grouped = String::new();
    for (i, c) in rounded.chars().enumerate() {
        if i > 0 && (rounded.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if v < -0.5 {
        grouped.insert(0, '-');
    }
    grouped
}

/// "median (min–max)", or the value alone for a single run.
fn cell(values: Option<&Vec<f64>>, row: &Row) -> String {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return "—".into();
    };
    let scaled: Vec<f64> = values.iter().map(|v| v * row.scale).collect();
    let m = number(median(&scaled), row.digits);
    if scaled.len() == 1 {
        return m;
    }
    let lo = scaled.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{m} ({}–{})",
        number(lo, row.digits),
        number(hi, row.digits)
    )
}

fn ratio(ours: Option<f64>, peer: Option<f64>) -> String {
    match (ours, peer) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
            let r = a / b;
            if r.abs() >= 10.0 {
                format!("{r:.0}")
            } else if r.abs() >= 1.0 {
                format!("{r:.1}")
            } else {
                format!("{r:.2}")
            }
        }
        _ => "—".into(),
    }
}

fn target_text(target: Target) -> String {
    match target {
        Target::None => String::new(),
        Target::AtLeast(v) => format!("≥ {}", number(v, 0)),
        Target::AtLeastTimesPeer(v, k) => format!("≥ {} and ≥ {k} × peer", number(v, 0)),
        Target::AtMost(v) => format!("≤ {v}"),
        Target::Under(v) => format!("< {v}"),
        Target::Zero => "0".into(),
    }
}

fn met(target: Target, ours: Option<f64>, peer: Option<f64>) -> &'static str {
    let Some(v) = ours else {
        return match target {
            Target::None => "",
            _ => "no figure",
        };
    };
    let ok = match target {
        Target::None => return "",
        Target::AtLeast(t) => v >= t,
        Target::AtLeastTimesPeer(t, k) => v >= t && peer.is_none_or(|p| v >= k * p),
        Target::AtMost(t) => v <= t,
        Target::Under(t) => v < t,
        Target::Zero => v == 0.0,
    };
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

fn fill(label: &str, meta: &HashMap<String, String>) -> String {
    let mut text = label.to_string();
    for (name, value) in meta {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// `bench report --results FILE [--peer NAME] [--smoke]`: prints the table; fails when a scenario
/// failed or an error or loss count is not zero.
pub fn run(args: &Args) -> Outcome<()> {
    let table = load(args.text("results")?)?;
    let peer = args.opt("peer");
    let smoke = args.flag("smoke");
    let peer_title = match peer {
        Some("dovecot") => "Dovecot".to_string(),
        Some(p) => p.to_string(),
        None => String::new(),
    };
    let mut header = vec!["scenario".to_string(), "figure".into(), "pop3d".into()];
    if peer.is_some() {
        header.push(peer_title.clone());
        header.push(format!("pop3d / {peer_title}"));
    }
    if !smoke {
        header.push("target".into());
        header.push("met".into());
    }
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let mut bad = table.failed.clone();
    for row in ROWS {
        let ours = table
            .values
            .get(&("pop3d".to_string(), row.key.to_string()));
        let theirs = peer.and_then(|p| table.values.get(&(p.to_string(), row.key.to_string())));
        if ours.is_none() && theirs.is_none() {
            continue;
        }
        let ours_median = ours.map(|v| median(v) * row.scale);
        let theirs_median = theirs.map(|v| median(v) * row.scale);
        let mut cells = vec![
            row.scenario.to_string(),
            fill(row.figure, &table.meta),
            cell(ours, row),
        ];
        if peer.is_some() {
            cells.push(cell(theirs, row));
            cells.push(ratio(ours_median, theirs_median));
        }
        if !smoke {
            cells.push(target_text(row.target));
            cells.push(met(row.target, ours_median, theirs_median).to_string());
        }
        println!("| {} |", cells.join(" | "));
        if let Target::Zero = row.target {
            for (server, values) in [("pop3d", ours), (peer.unwrap_or(""), theirs)] {
                if values.is_some_and(|v| v.iter().any(|&x| x != 0.0)) {
                    bad.push(format!("{server}: {} not zero", row.key));
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        println!();
        for b in &bad {
            println!("FAIL {b}");
        }
        Err(fail!("{} failures", bad.len()))
    }
}
