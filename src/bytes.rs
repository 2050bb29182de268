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
}
