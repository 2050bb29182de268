//! Byte helpers shared across the crate: searches for the hot loops (the mbox scanner, the
//! dot-writer of RETR and TOP), digit checks, and lowercase hex both ways.

/// Index of the first `needle` in `hay`. The block loop has no early exit, so the compiler
/// vectorizes it; the exact place is found after.
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut start = 0;
    while start + BLOCK <= hay.len() {
        let block = &hay[start..start + BLOCK];
        if block.iter().fold(false, |hit, &b| hit | (b == needle)) {
            break;
        }
        start += BLOCK;
    }
    hay[start..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| start + i)
}

/// A decimal number's text: one or more ASCII digits and nothing else. Checked before
/// `str::parse`, which would also take a leading "+".
pub fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        text.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// Value of each byte as a lowercase hex digit, `NOT_HEX` for every other byte: a table,
/// because some callers read long runs of digits (the unique-id record, at every login).
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// `HEX_VALUE` of a byte that is no hex digit.
const NOT_HEX: u8 = 0xff;

/// The bytes written as lowercase hex in `text`; None for an odd length or any other byte
/// (uppercase digits included: every writer here writes lowercase).
pub fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut bad = 0u8;
    let bytes = text
        .chunks_exact(2)
        .map(|pair| {
            let (hi, lo) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            bad |= (hi | lo) & 0xf0;
            hi << 4 | (lo & 0x0f)
        })
        .collect();
    (bad == 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_goes_both_ways_and_takes_lowercase_only() {
        let all: Vec<u8> = (0..=255).collect();
        let text = hex(&all);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(unhex(text.as_bytes()), Some(all));
        assert_eq!(unhex(b""), Some(Vec::new()));
        for bad in [&b"0"[..], b"0g", b"AB", b" 1", b"abc"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn finds_the_first_occurrence_at_every_offset_and_length() {
        for len in 0..100 {
            for at in 0..len {
                let mut hay = vec![b'x'; len];
                hay[at] = b'\n';
                if at + 1 < len {
                    hay[len - 1] = b'\n';
                }
                assert_eq!(find_byte(&hay, b'\n'), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_byte(&vec![b'x'; len], b'\n'), None);
        }
    }

    #[test]
    fn digits_only() {
        for (text, want) in [
            ("0", true),
            ("4294967296", true),
            ("", false),
            ("+1", false),
            ("-1", false),
            (" 1", false),
            ("1 ", false),
            ("1a", false),
            ("\u{0661}", false),
        ] {
            assert_eq!(is_digits(text), want, "{text:?}");
        }
    }
}
