//! The dry run of issue 15 until pop3d has `--uidl-report`: the unique ids pop3d's uidl module
//! gives each message of an mbox under a `--uidl` list, with pop3d's own scanner deciding the
//! message boundaries and giving the pop3d ids (the fallback).
//!
//!     cargo run --example uidl_report -- SCHEMES MBOX
//!
//! Prints per message "N FINAL NAMED-BY FIRST-CANDIDATE", where FIRST-CANDIDATE is what the
//! first scheme of the list alone gives ("-absent" or "-invalid" if nothing), and the
//! session's log line on stderr. scripts/uidl/compare.py reads it.
//!
//! Each message gets its lines from the one after its "From " line to its end, which is what
//! the scanner will feed once wired: popa3d and solid-pop3d read past a CRLF empty line.

use std::error::Error;
use std::process::ExitCode;

use pop3d::maildrop::scan::{scan_with_buffer, SCAN_BUFFER};
use pop3d::uidl::{assign, Feed, MboxContext, MessageIds, Named, UidlSpec, Unnamed};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [spec, mbox] => report(spec, mbox),
        _ => Err("usage: uidl_report SCHEMES MBOX".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uidl_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(spec: &str, mbox: &str) -> Result<(), Box<dyn Error>> {
    let spec = UidlSpec::parse(spec)?;
    let bytes = std::fs::read(mbox)?;
    let scan = scan_with_buffer(&bytes[..], SCAN_BUFFER)?;
    let mut validity = None;
    let mut rows = Vec::with_capacity(scan.messages.len());
    let mut pop3d_ids = Vec::with_capacity(scan.messages.len());
    for (i, m) in scan.messages.iter().enumerate() {
        let ctx = if i == 0 {
            MboxContext::first()
        } else {
            MboxContext::later(validity)
        };
        let mut ids = MessageIds::new(&spec, ctx);
        let start = usize::try_from(m.content_start)?;
        let end = start + usize::try_from(m.content_len)?;
        let content = bytes.get(start..end).ok_or("scan outside the file")?;
        for line in content.split_inclusive(|&b| b == b'\n') {
            if ids.feed_header_line(line) == Feed::Done {
                break;
            }
        }
        if i == 0 {
            validity = ids.uid_validity();
        }
        let pop3d = m.uid.to_string();
        rows.push(ids.finish(&pop3d));
        pop3d_ids.push(pop3d);
    }
    let a = assign(spec.schemes(), &rows, &pop3d_ids);
    for (i, row) in rows.iter().enumerate() {
        let named = match a.named[i] {
            Named::Scheme(s) => s.name().to_string(),
            Named::Fallback => "fallback".to_string(),
        };
        let first = match row.first() {
            Some(Ok(id)) => id.clone(),
            Some(Err(Unnamed::Absent)) | None => "-absent".to_string(),
            Some(Err(Unnamed::Invalid)) => "-invalid".to_string(),
        };
        println!("{} {} {named} {first}", i + 1, a.ids[i]);
    }
    eprintln!("{}", a.report);
    Ok(())
}
