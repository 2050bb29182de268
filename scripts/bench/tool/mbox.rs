//! Generates classic mbox files for the scenarios: "From " line, headers with a numbered
//! Message-ID, a body of text lines (some dot-led, some ">From "-quoted, so the client's
//! dot-unstuffing and the server's scanner both work), a numbered trailer line and the blank
//! separator line. Message n (1-based) carries `Message-ID: <n.TAG@bench.pop3d>` and ends with
//! `-- end of bench message n --`, which is what `update` checks after the server rewrote the
//! file.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};

use crate::{fail, Args, Outcome};

/// Length of a body line without its LF: a base64 attachment's line.
const LINE: usize = 76;

/// Distinct body lines to draw from; enough that bodies do not repeat visibly.
const POOL_LINES: usize = 4096;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A small deterministic generator (xorshift64*), so every run writes the same files.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `bench mbox --out FILE --messages N --octets N [--vary] [--tag T]`: N messages of about
/// `octets` each on disk (between half and one and a half times that with --vary).
pub fn run(args: &Args) -> Outcome<()> {
    let out = args.text("out")?;
    let messages = args.number("messages")?;
    let octets = args.number("octets")?;
    let vary = args.flag("vary");
    let tag = args.opt("tag").unwrap_or("bench");
    let file = File::create(out).map_err(|e| fail!("{out}: {e}"))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let total = write_mbox(&mut writer, messages, octets, vary, tag)?;
    writer.flush()?;
    eprintln!("  wrote {out}: {messages} messages, {total} octets");
    Ok(())
}

fn write_mbox<W: Write>(
    out: &mut W,
    messages: u64,
    octets: u64,
    vary: bool,
    tag: &str,
) -> Outcome<u64> {
    let mut rng = Rng::new(0x5EED ^ messages ^ (octets << 20));
    let pool: Vec<u8> = (0..POOL_LINES * (LINE + 1))
        .map(|i| {
            if i % (LINE + 1) == LINE {
                b'\n'
            } else {
                ALPHABET[rng.below(ALPHABET.len() as u64) as usize]
            }
        })
        .collect();
    let mut total = 0u64;
    let mut message = Vec::with_capacity(octets as usize * 2 + 4096);
    for n in 1..=messages {
        message.clear();
        let target = if vary {
            octets / 2 + rng.below(octets.max(1))
        } else {
            octets
        };
        write!(
            message,
            "From sender{m}@example.org Mon Nov 23 09:15:02 2026\n\
             Return-Path: <sender{m}@example.org>\n\
             Received: from mx.example.org by bench.pop3d with ESMTP id {n}.{tag}\n\
             From: Bench Sender {m} <sender{m}@example.org>\n\
             To: <user@bench.pop3d>\n\
             Subject: bench message {n} of {messages}\n\
             Date: Mon, 23 Nov 2026 09:15:02 +0000\n\
             Message-ID: <{n}.{tag}@bench.pop3d>\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=us-ascii\n\
             \n",
            m = n % 97,
        )?;
        if n % 7 == 0 {
            message.extend_from_slice(b".a dot-led line, sent stuffed\n");
        }
        if n % 11 == 0 {
            message.extend_from_slice(b">From a quoted line, sent as it is\n");
        }
        let trailer = format!("-- end of bench message {n} --\n\n");
        let target = target as usize;
        while message.len() + trailer.len() + LINE < target {
            let line = rng.below(POOL_LINES as u64) as usize * (LINE + 1);
            message.extend_from_slice(&pool[line..line + LINE + 1]);
        }
        message.extend_from_slice(trailer.as_bytes());
        out.write_all(&message)?;
        total += message.len() as u64;
    }
    Ok(total)
}

/// What `update` finds in an mbox file: for each message in file order, the number in its
/// Message-ID and whether its trailer came whole after it.
pub struct Census {
    pub ids: Vec<u64>,
    pub damaged: Vec<u64>,
}

/// Reads a generated (and maybe rewritten) mbox and lists its messages by Message-ID number;
/// a message whose trailer is missing or names another number counts as damaged.
pub fn census<R: BufRead>(mut text: R, tag: &str) -> io::Result<Census> {
    let id_prefix = b"Message-ID: <";
    let id_suffix = format!(".{tag}@bench.pop3d>");
    let trailer_prefix = b"-- end of bench message ";
    let mut census = Census {
        ids: Vec::new(),
        damaged: Vec::new(),
    };
    let mut open: Option<u64> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if text.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(rest) = line.strip_prefix(id_prefix) {
            if let Some(open) = open.take() {
                census.damaged.push(open);
            }
            let rest = String::from_utf8_lossy(rest);
            let number = rest
                .strip_suffix(id_suffix.as_str())
                .and_then(|n| n.parse().ok());
            match number {
                Some(n) => {
                    census.ids.push(n);
                    open = Some(n);
                }
                None => census.damaged.push(0),
            }
        } else if let Some(rest) = line.strip_prefix(trailer_prefix) {
            let number: Option<u64> = String::from_utf8_lossy(rest)
                .strip_suffix(" --")
                .and_then(|n| n.parse().ok());
            match (open.take(), number) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), _) => census.damaged.push(a),
                (None, _) => census.damaged.push(0),
            }
        }
    }
    if let Some(open) = open {
        census.damaged.push(open);
    }
    Ok(census)
}
