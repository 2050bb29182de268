//! What a client sees when the maildrop goes wrong under a running session, over the real
//! binary: a message cut short while RETR streams it ends the connection without the
//! terminating "." line (issue 11 item 2).

mod support;

use std::fs::OpenOptions;
use std::io::{BufRead, Read};

use support::ServerBuilder;

/// Big enough that the message cannot sit whole in the socket buffers and the server's
/// read-ahead (a few MB on loopback) when the file is cut: pop3d is still reading it.
const BIG_MESSAGE_LINES: usize = 400_000;

/// Where the file is cut, as a share of the message: well past what can be in flight.
const CUT_AT_PERCENT: u64 = 60;

#[test]
fn retr_of_a_message_cut_while_it_streams_ends_without_the_final_dot() {
    let mut mbox = String::from("From big@example Mon Jan  1 00:00:00 2024\nSubject: big\n\n");
    for i in 0..BIG_MESSAGE_LINES {
        mbox.push_str(&format!(
            "line {i:08} of a long message body, padded out a bit\n"
        ));
    }
    let server = ServerBuilder::new("retr-cut")
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .start();
    let mut c = server.login("alice", "secret");
    c.send("RETR 1");
    let first = c.line();
    assert!(first.starts_with("+OK "), "{first:?}");
    let announced: u64 = first[4..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("octets in the +OK line");
    // A little of the body, so the transfer is under way, then another program cuts the
    // file (an admin's script, a broken rewrite) while pop3d is still reading it.
    let mut head = vec![0u8; 64 * 1024];
    c.reader.read_exact(&mut head).expect("start of the body");
    let cut = mbox.len() as u64 * CUT_AT_PERCENT / 100;
    OpenOptions::new()
        .write(true)
        .open(server.mbox_path("alice"))
        .and_then(|f| f.set_len(cut))
        .expect("cut the mbox");
    // The rest, line by line, up to the close: a ".\r\n" line would tell the client that
    // the short message is complete.
    let mut received = head.len() as u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = c.reader.read_until(b'\n', &mut line).unwrap_or_else(|e| {
            panic!("connection neither closed nor ended the body: {e} after {received} octets")
        });
        if n == 0 {
            break;
        }
        assert_ne!(
            line, b".\r\n",
            "terminating dot after {received} of {announced} octets"
        );
        received += n as u64;
    }
    assert!(received < announced, "{received} of {announced} octets");
    drop(c);
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("read of message 1 failed")),
        "no error logged:\n{log}"
    );
}
