//! Credential checks: which user names pop3d accepts, clear passwords, APOP (RFC 1939) and
//! CRAM-MD5 (RFC 2195) digests, SASL PLAIN (RFC 4616) and the strict base64 (RFC 4648) that
//! SASL exchanges travel in. Pure functions: no I/O, no protocol state, no user lookup (the
//! session looks users up in `users` and answers the client itself).

use std::error::Error;
use std::fmt;
use std::hint::black_box;

use md5::{Digest, Md5};

use crate::bytes::hex;
use crate::maildrop::companion;

/// RFC 1939 sec 7 and RFC 2449 bound a user name argument to 40 octets.
const MAX_USER_NAME_OCTETS: usize = 40;

/// RFC 4616 sec 2: authzid, authcid and passwd are each at most 255 octets.
const MAX_PLAIN_FIELD_OCTETS: usize = 255;

/// An MD5 digest written as hex (APOP and CRAM-MD5 both send 16 octets as 32 hex digits).
const MD5_HEX_OCTETS: usize = 32;

/// HMAC's inner block size B for MD5 (RFC 2104 sec 2).
const MD5_BLOCK_OCTETS: usize = 64;

/// Why a client's SASL or base64 data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Not strict RFC 4648 base64 (bad character, bad padding, non-zero trailing bits).
    BadBase64,
    /// Not `authzid NUL authcid NUL passwd` within RFC 4616's limits.
    MalformedPlain,
    /// Not `user SP hexdigest` as RFC 2195 describes.
    MalformedCramMd5,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadBase64 => f.write_str("invalid base64"),
            AuthError::MalformedPlain => f.write_str("malformed sasl plain response"),
            AuthError::MalformedCramMd5 => f.write_str("malformed cram-md5 response"),
        }
    }
}

impl Error for AuthError {}

/// RFC 1939 user names as pop3d accepts them: 1..=40 octets of printable ASCII (0x21..0x7E),
/// no '/', no leading '.', and not named like another name's companion file (".lock",
/// ".pop3d", ".pop3d-journal" and the journal's temporary and set-aside names, ".pop3d-uidl"
/// and its temporary name: the list is `maildrop::companion::ALL`), so a user's mbox can never
/// be another user's lock, journal or unique id record.
pub fn valid_user_name(name: &str) -> bool {
    let octets = name.as_bytes();
    if octets.is_empty() || octets.len() > MAX_USER_NAME_OCTETS {
        return false;
    }
    // Printable ASCII only: no space (it separates arguments), no control characters, nothing
    // that a terminal or a log line could misrender.
    if !octets.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return false;
    }
    // No '/' and no leading '.': the name is substituted into a path, and must stay one
    // ordinary, visible file name ("..", ".hidden", "a/b" and "../x" all refused).
    if octets.contains(&b'/') || octets[0] == b'.' {
        return false;
    }
    !companion::is_companion_name(octets)
}

/// Constant-time equality (time depends only on the lengths).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the optimiser from turning the fold into an early exit.
        difference = black_box(difference | (x ^ y));
    }
    difference == 0
}

/// Checks a clear password against the user's in constant time.
///
/// Unlike [`constant_time_eq`] this does not return early on a length mismatch, so the time
/// does not even reveal whether the guess had the right length: it depends only on the length
/// of `given`, which the client already knows.
pub fn check_password(expected: &str, given: &str) -> bool {
    let expected = expected.as_bytes();
    let given = given.as_bytes();
    if expected.is_empty() {
        // The users file refuses empty passwords; never let one open a maildrop anyway.
        return false;
    }
    let mut difference = u8::from(expected.len() != given.len());
    for (index, octet) in given.iter().enumerate() {
        // Cycling through `expected` reads it once per octet of `given` without a branch on
        // where it ends; the length comparison above decides the mismatched-length case.
        difference = black_box(difference | (octet ^ expected[index % expected.len()]));
    }
    difference == 0
}

/// APOP (RFC 1939 sec 7): lowercase hex md5(timestamp + secret).
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret.as_bytes());
    let digest: [u8; 16] = md5.finalize().into();
    hex(&digest)
}

/// Checks a client's APOP digest (hex, case-insensitive) in constant time.
pub fn check_apop(timestamp: &str, secret: &str, digest: &str) -> bool {
    let expected = apop_digest(timestamp, secret);
    constant_time_eq(expected.as_bytes(), digest.to_ascii_lowercase().as_bytes())
}

/// HMAC-MD5 (RFC 2104) built on the md-5 crate.
pub fn hmac_md5(key: &[u8], message: &[u8]) -> [u8; 16] {
    // RFC 2104 sec 2: a key longer than the block is replaced by its hash, then the key is
    // zero-padded to the block size.
    let mut block = [0u8; MD5_BLOCK_OCTETS];
    if key.len() > MD5_BLOCK_OCTETS {
        let hashed: [u8; 16] = Md5::digest(key).into();
        block[..hashed.len()].copy_from_slice(&hashed);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad = block.map(|b| b ^ 0x36);
    let outer_pad = block.map(|b| b ^ 0x5c);

    let mut inner = Md5::new();
    inner.update(inner_pad);
    inner.update(message);
    let inner_digest = inner.finalize();

    let mut outer = Md5::new();
    outer.update(outer_pad);
    outer.update(inner_digest);
    outer.finalize().into()
}

/// CRAM-MD5 (RFC 2195): the decoded client response is "user SP hexdigest"; returns
/// (user, digest_hex) or an error for a malformed response.
///
/// The digest is the text after the last space and must be 32 hex digits (either case); the
/// user is everything before it, non-empty UTF-8. The digest is returned as the client sent
/// it; [`check_cram_md5`] ignores its case.
pub fn parse_cram_md5_response(decoded: &[u8]) -> Result<(String, String), AuthError> {
    let space = decoded
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(AuthError::MalformedCramMd5)?;
    let (user, digest) = (&decoded[..space], &decoded[space + 1..]);
    if user.is_empty()
        || digest.len() != MD5_HEX_OCTETS
        || !digest.iter().all(u8::is_ascii_hexdigit)
    {
        return Err(AuthError::MalformedCramMd5);
    }
    let user = std::str::from_utf8(user).map_err(|_| AuthError::MalformedCramMd5)?;
    let digest = std::str::from_utf8(digest).map_err(|_| AuthError::MalformedCramMd5)?;
    Ok((user.to_owned(), digest.to_owned()))
}

/// Checks a CRAM-MD5 digest (hex, case-insensitive): hex(HMAC-MD5(secret, challenge)), where
/// the challenge is the text sent to the client before base64 encoding, angle brackets included.
pub fn check_cram_md5(challenge: &str, secret: &str, digest_hex: &str) -> bool {
    let expected = hex(&hmac_md5(secret.as_bytes(), challenge.as_bytes()));
    constant_time_eq(
        expected.as_bytes(),
        digest_hex.to_ascii_lowercase().as_bytes(),
    )
}

/// SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd, UTF-8, no NUL elsewhere,
/// each field <= 255 octets, authcid and passwd non-empty.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The identity to act as; empty means the same as `authcid`.
    pub authzid: String,
    /// The user whose password is given.
    pub authcid: String,
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    // The password must not reach a log through a stray {:?}.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a decoded SASL PLAIN message (RFC 4616 sec 2). Whether a non-empty authzid other
/// than the authcid is allowed is the session's decision, not this parser's.
pub fn parse_plain(decoded: &[u8]) -> Result<PlainCredentials, AuthError> {
    let mut fields = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(AuthError::MalformedPlain);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(AuthError::MalformedPlain);
    }
    let field = |octets: &[u8]| -> Result<String, AuthError> {
        if octets.len() > MAX_PLAIN_FIELD_OCTETS {
            return Err(AuthError::MalformedPlain);
        }
        std::str::from_utf8(octets)
            .map(str::to_owned)
            .map_err(|_| AuthError::MalformedPlain)
    };
    Ok(PlainCredentials {
        authzid: field(authzid)?,
        authcid: field(authcid)?,
        password: field(password)?,
    })
}

/// The RFC 4648 sec 4 alphabet.
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (RFC 4648, standard alphabet, with padding).
pub fn base64_encode(data: &[u8]) -> String {
    let mut text = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (i, &b)| group | u32::from(b) << (16 - 8 * i));
        // n input octets give n + 1 significant characters; the rest of the quantum is '='.
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (group >> (18 - 6 * i)) & 0x3f;
                text.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Base64 decoding that accepts exactly what [`base64_encode`] produces: RFC 4648 sec 4 with
/// padding, no whitespace, no '=' but at the end, and zero trailing bits (sec 3.5), so one
/// octet string has exactly one accepted encoding. The empty string decodes as empty.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, AuthError> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return Err(AuthError::BadBase64);
    }
    let mut data = Vec::with_capacity(text.len() / 4 * 3);
    let quanta = text.len() / 4;
    for (index, quantum) in text.chunks_exact(4).enumerate() {
        let padding = quantum.iter().rev().take_while(|&&c| c == b'=').count();
        // Padding only in the last quantum, and at most two '=' (one or two octets left over).
        if padding > 2 || (padding > 0 && index + 1 != quanta) {
            return Err(AuthError::BadBase64);
        }
        let mut group = 0u32;
        for &c in &quantum[..4 - padding] {
            group = group << 6 | u32::from(sextet(c).ok_or(AuthError::BadBase64)?);
        }
        group <<= 6 * padding;
        let octets = group.to_be_bytes();
        let kept = 3 - padding;
        // Bits below the kept octets must be zero, or two texts would decode alike.
        if group & (0xff_ffff >> (8 * kept)) != 0 {
            return Err(AuthError::BadBase64);
        }
        data.extend_from_slice(&octets[1..1 + kept]);
    }
    Ok(data)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_to_octets(hex: &str) -> Vec<u8> {
        crate::bytes::unhex(hex.as_bytes()).unwrap()
    }

    #[test]
    fn valid_user_name_accepts_ordinary_names() {
        let forty = "a".repeat(40);
        for name in [
            "alice",
            "b",
            "john.doe",
            "mail-user_1",
            "user@example.org",
            "~!#$%^&*()+={}[]|\\:;\"'<>,?",
            "bob.locked",
            "lock",
            "a.pop3d-journalx",
            forty.as_str(),
        ] {
            assert!(valid_user_name(name), "{name:?} should be accepted");
        }
    }

    #[test]
    fn valid_user_name_refuses_unsafe_or_out_of_range_names() {
        let forty_one = "a".repeat(41);
        for name in [
            "",
            forty_one.as_str(),
            "../x",
            "..",
            ".",
            ".hidden",
            "a/b",
            "/etc/passwd",
            "a b",
            "tab\there",
            "nul\0",
            "bell\x07",
            "del\x7f",
            "cr\r",
            "lf\n",
            "j\u{fc}rgen",
            "\u{3042}",
            "bob.lock",
            "bob.LOCK",
            ".lock",
            "bob.pop3d",
            "bob.Pop3d",
            "bob.pop3d-journal",
            "bob.pop3d-journal.new",
            "bob.pop3d-journal.stale-1700000000",
            "bob.POP3D-JOURNAL.STALE-1",
            "bob.pop3d-uidl",
            "bob.pop3d-uidl.new",
            "bob.pop3d-uidl.new-4242-1700000000123456789",
        ] {
            assert!(!valid_user_name(name), "{name:?} should be refused");
        }
    }

    /// Every file pop3d may create beside an mbox, named as it would create it for "bob", is
    /// refused as a user name: else that user's maildrop would be bob's lock or journal.
    #[test]
    fn every_companion_of_a_mbox_is_refused_as_a_user_name() {
        let mbox = std::path::Path::new("bob");
        let journal = companion::path(mbox, companion::JOURNAL);
        let mut names: Vec<std::path::PathBuf> = companion::ALL
            .iter()
            .map(|s| match *s {
                companion::Suffix::Exact(s) => companion::path(mbox, s),
                companion::Suffix::Prefix(s) => companion::path(mbox, &format!("{s}1700000000")),
            })
            .collect();
        names.push(companion::journal_temp(&journal));
        for name in names {
            let name = name.to_str().expect("ascii");
            assert!(!valid_user_name(name), "{name:?} should be refused");
        }
    }

    #[test]
    fn valid_user_name_counts_octets_not_characters() {
        // 20 two-octet characters are 40 octets but not ASCII; 40 ASCII octets pass.
        assert!(!valid_user_name(&"\u{e9}".repeat(20)));
        assert!(valid_user_name(&"x".repeat(MAX_USER_NAME_OCTETS)));
        assert!(!valid_user_name(&"x".repeat(MAX_USER_NAME_OCTETS + 1)));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        let cases: [(&[u8], &[u8], bool); 8] = [
            (b"", b"", true),
            (b"secret", b"secret", true),
            (b"secret", b"secreT", false),
            (b"secret", b"Secret", false),
            (b"secret", b"secret ", false),
            (b"secret", b"secre", false),
            (b"", b"x", false),
            (b"\x00\xff", b"\x00\xff", true),
        ];
        for (a, b, equal) in cases {
            assert_eq!(constant_time_eq(a, b), equal, "{a:?} vs {b:?}");
            assert_eq!(constant_time_eq(b, a), equal, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn check_password_accepts_only_the_exact_password() {
        let cases = [
            ("tanstaaf", "tanstaaf", true),
            ("with spaces ", "with spaces ", true),
            ("a:b:c", "a:b:c", true),
            ("tanstaaf", "Tanstaaf", false),
            ("tanstaaf", "tanstaa", false),
            ("tanstaaf", "tanstaaftanstaaf", false),
            ("tanstaaf", "tanstaaf ", false),
            ("tanstaaf", "", false),
            ("abab", "ab", false),
            ("ab", "abab", false),
            ("", "", false),
            ("", "x", false),
        ];
        for (expected, given, accepted) in cases {
            assert_eq!(
                check_password(expected, given),
                accepted,
                "{expected:?} vs {given:?}"
            );
        }
    }

    #[test]
    fn apop_digest_matches_rfc_1939_example() {
        let timestamp = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(
            apop_digest(timestamp, "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    #[test]
    fn check_apop_ignores_digest_case_and_refuses_other_digests() {
        let timestamp = "<1896.697170952@dbc.mtview.ca.us>";
        let cases = [
            ("c4c9334bac560ecc979e58001b3e22fb", true),
            ("C4C9334BAC560ECC979E58001B3E22FB", true),
            ("c4c9334bac560ecc979e58001b3e22fc", false),
            ("c4c9334bac560ecc979e58001b3e22f", false),
            ("c4c9334bac560ecc979e58001b3e22fb0", false),
            ("", false),
        ];
        for (digest, accepted) in cases {
            assert_eq!(
                check_apop(timestamp, "tanstaaf", digest),
                accepted,
                "{digest}"
            );
        }
        assert!(!check_apop(
            "<1897.697170952@dbc.mtview.ca.us>",
            "tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fb"
        ));
        assert!(!check_apop(
            timestamp,
            "tanstaaF",
            "c4c9334bac560ecc979e58001b3e22fb"
        ));
    }

    #[test]
    fn hmac_md5_matches_rfc_2104_and_2202_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 8] = [
            // RFC 2104 appendix, test vectors 1 to 3 (also RFC 2202 sec 2 cases 1 to 3).
            (
                vec![0x0b; 16],
                b"Hi There".to_vec(),
                "9294727a3638bb1c13f48ef8158bfc9d",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "750c783e6ab0b503eaa86e310a5db738",
            ),
            (
                vec![0xaa; 16],
                vec![0xdd; 50],
                "56be34521d144c88dbb8c733f0e8b3f6",
            ),
            // RFC 2202 sec 2 cases 4 to 7.
            (
                hex_to_octets("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "697eaf0aca3a3aea3a75164746ffaa79",
            ),
            (
                vec![0x0c; 16],
                b"Test With Truncation".to_vec(),
                "56461ef2342edc00f9bab995690efd4c",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "6f630fad67cda0ee1fb1f562db3aa53e",
            ),
            // The empty key and message (a widely published value).
            (vec![], b"".to_vec(), "74e6f7298a9c2d168935f58c001bad88"),
        ];
        for (key, message, expected) in cases {
            assert_eq!(hex(&hmac_md5(&key, &message)), expected, "key {key:02x?}");
        }
    }

    #[test]
    fn hmac_md5_hashes_only_keys_longer_than_one_block() {
        let message = b"message";
        let one_block = [0x5a; MD5_BLOCK_OCTETS];
        let one_more = [0x5a; MD5_BLOCK_OCTETS + 1];
        let hashed_one_block: [u8; 16] = Md5::digest(one_block).into();
        let hashed_one_more: [u8; 16] = Md5::digest(one_more).into();
        assert_ne!(
            hmac_md5(&one_block, message),
            hmac_md5(&hashed_one_block, message)
        );
        assert_eq!(
            hmac_md5(&one_more, message),
            hmac_md5(&hashed_one_more, message)
        );
        // A short key is zero-padded, so trailing zero octets do not change it.
        assert_eq!(hmac_md5(b"key", message), hmac_md5(b"key\0\0", message));
    }

    #[test]
    fn cram_md5_matches_rfc_2195_example() {
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        // RFC 2195 sec 2 shows the exchange base64-encoded on the wire.
        assert_eq!(
            base64_encode(challenge.as_bytes()),
            "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        );
        let response = base64_decode("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw").unwrap();
        let (user, digest) = parse_cram_md5_response(&response).unwrap();
        assert_eq!(user, "tim");
        assert_eq!(digest, "b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(
            hex(&hmac_md5(b"tanstaaftanstaaf", challenge.as_bytes())),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        assert!(check_cram_md5(challenge, "tanstaaftanstaaf", &digest));
        assert!(check_cram_md5(
            challenge,
            "tanstaaftanstaaf",
            "B913A602C7EDA7A495B4E6E7334D3890"
        ));
        assert!(!check_cram_md5(challenge, "tanstaaf", &digest));
        assert!(!check_cram_md5(
            "<1896.697170953@postoffice.reston.mci.net>",
            "tanstaaftanstaaf",
            &digest
        ));
    }

    #[test]
    fn parse_cram_md5_response_refuses_malformed_responses() {
        let digest = "b913a602c7eda7a495b4e6e7334d3890";
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"tim".to_vec(),
            digest.as_bytes().to_vec(),
            format!(" {digest}").into_bytes(),
            format!("tim {digest} ").into_bytes(),
            format!("tim {}", &digest[..31]).into_bytes(),
            format!("tim {digest}0").into_bytes(),
            b"tim b913a602c7eda7a495b4e6e7334d389g".to_vec(),
            [b"\xfftim ".as_slice(), digest.as_bytes()].concat(),
        ];
        for response in cases {
            assert_eq!(
                parse_cram_md5_response(&response),
                Err(AuthError::MalformedCramMd5),
                "{:?}",
                String::from_utf8_lossy(&response)
            );
        }
    }

    #[test]
    fn parse_cram_md5_response_takes_the_digest_after_the_last_space() {
        let response = b"tim smith B913A602C7EDA7A495B4E6E7334D3890";
        assert_eq!(
            parse_cram_md5_response(response),
            Ok((
                "tim smith".to_owned(),
                "B913A602C7EDA7A495B4E6E7334D3890".to_owned()
            ))
        );
    }

    #[test]
    fn parse_plain_reads_rfc_4616_examples() {
        // RFC 4616 sec 4.
        let cases: [(&[u8], &str, &str, &str); 3] = [
            (b"\0tim\0tanstaaftanstaaf", "", "tim", "tanstaaftanstaaf"),
            (b"Ursel\0Kurt\0xipj3plmq", "Ursel", "Kurt", "xipj3plmq"),
            (
                "\0j\u{fc}rgen\0pass word:\u{2603}".as_bytes(),
                "",
                "j\u{fc}rgen",
                "pass word:\u{2603}",
            ),
        ];
        for (decoded, authzid, authcid, password) in cases {
            let credentials = parse_plain(decoded).unwrap();
            assert_eq!(credentials.authzid, authzid);
            assert_eq!(credentials.authcid, authcid);
            assert_eq!(credentials.password, password);
        }
    }

    #[test]
    fn parse_plain_reads_the_rfc_4616_example_from_base64() {
        let decoded = base64_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
        assert_eq!(
            parse_plain(&decoded),
            Ok(PlainCredentials {
                authzid: String::new(),
                authcid: "tim".to_owned(),
                password: "tanstaaftanstaaf".to_owned(),
            })
        );
    }

    #[test]
    fn parse_plain_refuses_malformed_messages() {
        let long = "x".repeat(MAX_PLAIN_FIELD_OCTETS + 1);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"tim".to_vec(),
            b"\0tim".to_vec(),
            b"tim\0tanstaaf".to_vec(),
            b"\0\0tanstaaf".to_vec(),
            b"\0tim\0".to_vec(),
            b"\0\0".to_vec(),
            b"\0tim\0tans\0taaf".to_vec(),
            b"\0tim\0tanstaaf\0".to_vec(),
            b"\0\0tim\0tanstaaf".to_vec(),
            b"\0t\xffm\0tanstaaf".to_vec(),
            b"\0tim\0tan\xc3".to_vec(),
            b"\xff\0tim\0tanstaaf".to_vec(),
            format!("{long}\0tim\0tanstaaf").into_bytes(),
            format!("\0{long}\0tanstaaf").into_bytes(),
            format!("\0tim\0{long}").into_bytes(),
        ];
        for decoded in cases {
            assert_eq!(
                parse_plain(&decoded),
                Err(AuthError::MalformedPlain),
                "{:?}",
                String::from_utf8_lossy(&decoded)
            );
        }
    }

    #[test]
    fn parse_plain_accepts_fields_of_exactly_255_octets() {
        let longest = "x".repeat(MAX_PLAIN_FIELD_OCTETS);
        let decoded = format!("{longest}\0{longest}\0{longest}");
        let credentials = parse_plain(decoded.as_bytes()).unwrap();
        assert_eq!(credentials.authzid, longest);
        assert_eq!(credentials.authcid, longest);
        assert_eq!(credentials.password, longest);
    }

    #[test]
    fn plain_credentials_debug_hides_the_password() {
        let credentials = parse_plain(b"\0tim\0tanstaaftanstaaf").unwrap();
        let shown = format!("{credentials:?}");
        assert!(shown.contains("tim"));
        assert!(!shown.contains("tanstaaf"));
    }

    /// RFC 4648 sec 10.
    const BASE64_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn base64_encode_matches_rfc_4648_vectors() {
        for (data, text) in BASE64_VECTORS {
            assert_eq!(base64_encode(data.as_bytes()), text);
        }
    }

    #[test]
    fn base64_decode_matches_rfc_4648_vectors() {
        for (data, text) in BASE64_VECTORS {
            assert_eq!(base64_decode(text), Ok(data.as_bytes().to_vec()), "{text}");
        }
    }

    #[test]
    fn base64_round_trips_every_octet_value() {
        let data: Vec<u8> = (0..=255).collect();
        for length in 0..data.len() {
            let text = base64_encode(&data[..length]);
            assert_eq!(base64_decode(&text), Ok(data[..length].to_vec()));
        }
        assert_eq!(base64_encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn base64_decode_refuses_malformed_text() {
        for text in [
            "Z",
            "Zg",
            "Zg=",
            "Zm9vY",
            "=",
            "====",
            "Z===",
            "Zg==Zg==",
            "Zm=v",
            "=m9v",
            "Zm9v====",
            "Zm9 ",
            " Zm9v",
            "Zm9v\r\n",
            "Zm9-",
            "Zm9_",
            "Zm\09v",
            "Zm9\u{e9}",
            "Zh==",
            "Zm9=",
            "Zm+=",
        ] {
            assert_eq!(base64_decode(text), Err(AuthError::BadBase64), "{text:?}");
        }
    }

    #[test]
    fn auth_error_messages_are_lowercase_without_final_period() {
        for error in [
            AuthError::BadBase64,
            AuthError::MalformedPlain,
            AuthError::MalformedCramMd5,
        ] {
            let text = error.to_string();
            assert_eq!(text, text.to_lowercase());
            assert!(!text.ends_with('.'));
        }
        assert_eq!(AuthError::BadBase64.to_string(), "invalid base64");
    }
}
