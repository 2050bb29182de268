//! `bench maildrop`: measures pop3d's maildrop engine in process, without a server, on a large
//! mbox: open + STAT time, resident memory, and the time of UPDATE after deleting the first or
//! the last message. `--uidl SCHEMES` opens with that unique-id list (issue 15: the cost of
//! another server's scheme at open), as `pop3d --uidl` would.
//!
//!     cargo run --release --example bench -- maildrop generate /tmp/big.mbox 1024 100000
//!     cargo run --release --example bench -- maildrop stat /tmp/big.mbox
//!     cargo run --release --example bench -- maildrop stat --uidl dovecot,pop3d /tmp/big.mbox
//!     cargo run --release --example bench -- maildrop delete /tmp/big.mbox first
//!     cargo run --release --example bench -- maildrop delete /tmp/big.mbox last

use std::error::Error;
use std::fs::{File, OpenOptions as OpenOptionsFs};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use getopts::Options;
use pop3d::maildrop::{Maildrop, OpenOptions, SessionLock};
use pop3d::uidl::UidlSpec;

use crate::{fail, Outcome};

const USAGE: &str = "usage: bench maildrop generate PATH MB COUNT | stat [--uidl SCHEMES] PATH | delete [--uidl SCHEMES] PATH first|last";

/// Runs one of the three measurements named by the words after `maildrop`.
pub fn run(words: &[String]) -> Outcome<()> {
    let mut options = Options::new();
    options.optflag("h", "help", "print this help");
    options.optopt(
        "",
        "uidl",
        "open with this --uidl list (default pop3d)",
        "SCHEMES",
    );
    options.optopt(
        "",
        "results",
        "stat: append the open time to this results file (as uidl_open_FIRST-SCHEME_s)",
        "FILE",
    );
    let matches = options
        .parse(words)
        .map_err(|e| fail!("{e}\n{}", options.usage(USAGE)))?;
    if matches.opt_present("help") {
        println!("{}", options.usage(USAGE));
        return Ok(());
    }
    let uidl = match matches.opt_str("uidl") {
        Some(list) => UidlSpec::parse(&list).map_err(|e| fail!("--uidl: {e}"))?,
        None => UidlSpec::default(),
    };
    let opts = OpenOptions {
        uidl,
        ..OpenOptions::default()
    };
    let free: Vec<&str> = matches.free.iter().map(String::as_str).collect();
    let result = match free.as_slice() {
        ["generate", path, mb, count] => generate(Path::new(path), mb, count),
        ["stat", path] => stat(Path::new(path), &opts, matches.opt_str("results")),
        ["delete", path, which] => delete(Path::new(path), which, &opts),
        _ => return Err(fail!("{}", options.usage(USAGE))),
    };
    result.map_err(|e| fail!("maildrop: {e}"))
}

/// Writes an mbox of about `mb` MiB holding `count` messages with realistic header blocks
/// (about 1 KB: Received chains, DKIM) and bodies of varying length.
fn generate(path: &Path, mb: &str, count: &str) -> Result<(), Box<dyn Error>> {
    let total: u64 = mb.parse::<u64>()? << 20;
    let count: u64 = count.parse()?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\n";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut written = 0u64;
    for i in 0..count {
        let mut msg = String::new();
        msg.push_str(&format!(
            "From sender{i}@example.org Mon Jan  1 00:00:00 2024\n"
        ));
        for hop in 0..4 {
            msg.push_str(&format!(
                "Received: from relay{hop}.example.net (relay{hop}.example.net [192.0.2.{hop}])\n\tby mx.example.org with ESMTPS id {i:08x}{hop}\n\tfor <user@example.org>; Mon, 1 Jan 2024 00:00:0{hop} +0000\n"
            ));
        }
        msg.push_str("DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=sel; c=relaxed/relaxed;\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; h=From:To:Subject:Date;\n\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgbG9uZyBlbm91Z2g=\n");
        msg.push_str(&format!(
            "From: Sender {i} <sender{i}@example.org>\nTo: user@example.org\nSubject: message number {i}\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <{i}@example.org>\n\n"
        ));
        // Bodies vary around the size that makes the file `mb` MiB in all.
        let remaining = count - i;
        let budget = (total.saturating_sub(written) / remaining).saturating_sub(msg.len() as u64);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let lines = (budget / line.len() as u64) as usize;
        let lines = if lines > 2 {
            lines / 2 + (state as usize % lines)
        } else {
            lines
        };
        for k in 0..lines {
            if k % 40 == 39 {
                msg.push_str(">From a quoted line in the body\n");
            } else {
                msg.push_str(line);
            }
        }
        msg.push('\n');
        out.write_all(msg.as_bytes())?;
        written += msg.len() as u64;
    }
    out.flush()?;
    println!(
        "wrote {written} bytes, {count} messages to {}",
        path.display()
    );
    Ok(())
}

/// Resident memory now and at peak, from /proc/self/status.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn open(path: &Path, opts: &OpenOptions) -> Result<Maildrop, Box<dyn Error>> {
    let lock = SessionLock::try_acquire(path)?;
    Ok(Maildrop::open(path, lock, opts)?)
}

fn stat(path: &Path, opts: &OpenOptions, results: Option<String>) -> Result<(), Box<dyn Error>> {
    let t = Instant::now();
    let maildrop = open(path, opts)?;
    let octets: u64 = maildrop.messages().iter().map(|m| m.octets).sum();
    let n = maildrop.messages().len();
    let elapsed = t.elapsed();
    println!(
        "open + STAT (--uidl {}): {n} messages, {octets} octets in {elapsed:.3?}",
        opts.uidl
    );
    println!("memory: {}", memory());
    if let Some(results) = results {
        // The row of scripts/bench/tool/report.rs for the list's first scheme.
        let first = opts.uidl.schemes().first().map_or("pop3d", |s| s.name());
        let line = format!("pop3d\tuidl_open_{first}_s\t{}\n", elapsed.as_secs_f64());
        OpenOptionsFs::new()
            .create(true)
            .append(true)
            .open(&results)?
            .write_all(line.as_bytes())?;
    }
    Ok(())
}

fn delete(path: &Path, which: &str, opts: &OpenOptions) -> Result<(), Box<dyn Error>> {
    let mut maildrop = open(path, opts)?;
    let n = maildrop.messages().len();
    if n == 0 {
        return Err("empty maildrop".into());
    }
    let mut deleted = vec![false; n];
    match which {
        "first" => deleted[0] = true,
        "last" => deleted[n - 1] = true,
        _ => return Err("delete first or last".into()),
    }
    let t = Instant::now();
    let stats = maildrop.commit(&deleted)?;
    let elapsed = t.elapsed();
    println!(
        "UPDATE deleting the {which} of {n} messages ({} octets) in {elapsed:.3?}",
        stats.octets_removed
    );
    println!("memory: {}", memory());
    Ok(())
}
