//! Byte searches shared by the hot loops (the mbox scanner, the dot-writer of RETR and TOP).

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

#[cfg(test)]
mod tests {
    use super::*;

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
