//! The PROXY protocol (HAProxy's "PROXY protocol" text, versions 1 and 2) as a backend reads it
//! from a trusted proxy such as nginx's mail module (`proxy_protocol on`) or a `stream {}`
//! server, and the `--trusted-proxy ADDR[/PREFIX]` networks that say which peers must send it.
//! Pure: no sockets, no logging, no timeouts; the listener decides whom to ask for a header,
//! sets the read timeout and chooses what to log and whom to greet.
//!
//! The listener's side, in short:
//!
//! ```text
//! if trusted.iter().any(|net| net.contains(peer.ip())) {
//!     stream.set_read_timeout(Some(proxy::HEADER_TIMEOUT))?;
//!     match proxy::read_header(&mut &stream) {
//!         Ok(ProxyHeader::Proxied { source, .. }) => client = source,  // log, caps, auth delay
//!         Ok(ProxyHeader::Local) => client = peer,  // health check: insecure by address
//!         Err(e) => { log "{peer}: {e}"; close without a greeting }
//!     }
//! }
//! ```
//!
//! `read_header` reads exactly one header and not one byte of what follows it, so the caller
//! can hand the same stream to the session afterwards. Version 1 is read one octet at a time
//! (its end is only known by its CRLF); version 2 in two reads (fixed part, then its length).

use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::bytes::is_digits;

/// How long a trusted proxy may take to send its header: it sends it with the connection, so
/// anything slower is a client that is not speaking the PROXY protocol at all.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// PROXY protocol spec section 2.1: a v1 line is at most 107 octets, "PROXY" to CRLF included
/// (the worst case being "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n").
const MAX_V1_OCTETS: usize = 107;

/// Version 2's fixed part: 12 octets of signature, version and command, family and transport,
/// and the length of what follows.
const V2_FIXED_OCTETS: usize = 16;

/// The most pop3d reads after v2's fixed part. Addresses take at most 216 octets (AF_UNIX);
/// the rest are TLVs (ALPN, authority, unique id, TLS details), of which pop3d reads only the
/// SSL one's client flag, and a proxy that sends more than this is not one pop3d was set up
/// behind.
const MAX_V2_PAYLOAD_OCTETS: usize = 512;

/// "PROXY " starts every version 1 header (spec section 2.1).
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Version 2's signature (spec section 2.2): chosen so that no text protocol starts with it.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// v2 address blocks: two IPv4 addresses and two ports; two IPv6 addresses and two ports.
const V2_INET_OCTETS: usize = 12;
const V2_INET6_OCTETS: usize = 36;

/// A v2 TLV's type octet and its two octets of length (spec section 2.2.7).
const TLV_HEADER_OCTETS: usize = 3;

/// PP2_TYPE_SSL (spec section 2.2.5): the client's connection to the proxy used TLS if its
/// first octet, `client`, has the PP2_CLIENT_SSL bit.
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

/// An address or network from --trusted-proxy ADDR[/PREFIX], IPv4 or IPv6 (an IPv4-mapped IPv6
/// peer ::ffff:a.b.c.d matches an IPv4 network).
///
/// An IPv4-mapped network given in IPv6 form (`::ffff:10.0.0.0/104`) is kept as the IPv4
/// network it stands for, so it matches the same peers. Bits set past the prefix
/// (`10.0.0.5/8`) are refused rather than masked: trust is a security setting, and silently
/// widening a typo to a whole network is the wrong way to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet {
    network: IpAddr,
    prefix: u8,
}

impl TrustedNet {
    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (what a dual-stack
    /// socket reports for an IPv4 peer) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = v4_mask(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = v6_mask(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for TrustedNet {
    type Err = ProxyError;

    fn from_str(text: &str) -> Result<TrustedNet, ProxyError> {
        let bad = |why| ProxyError::BadNetwork {
            text: text.to_owned(),
            why,
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad("not an ip address"))?;
        let max_prefix = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max_prefix,
            Some(digits) => parse_decimal(digits, 3)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|&n| n <= max_prefix)
                .ok_or_else(|| bad("bad prefix length"))?,
        };
        let (network, prefix) = match address {
            // ::ffff:0:0/96 and longer are IPv4 networks written as IPv6.
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (address, prefix),
            },
            _ => (address, prefix),
        };
        let masked = match network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(prefix))),
        };
        if masked != network {
            return Err(bad("address has bits set past the prefix length"));
        }
        Ok(TrustedNet { network, prefix })
    }
}

impl fmt::Display for TrustedNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; any other address unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn v4_mask(prefix: u8) -> u32 {
    // A shift by the full width overflows, so /0 is its own case.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// PROXY v1 TCP4/TCP6 or v2 PROXY command with AF_INET/AF_INET6: the real client.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
        /// A v2 header's SSL TLV says the client reached the proxy over TLS (v1 cannot say).
        client_tls: bool,
    },
    /// v2 LOCAL command (health checks) or v1 "PROXY UNKNOWN": keep the proxy's own address.
    /// Also v2's PROXY command for AF_UNSPEC or AF_UNIX, which carry no IP address (the spec
    /// lets the receiver use the connection's own endpoints then).
    Local,
}

/// Why no usable header was read.
#[derive(Debug)]
pub enum ProxyError {
    /// The first octets are neither "PROXY " nor the v2 signature.
    NotProxy,
    /// The connection ended inside the header.
    Truncated,
    /// A v1 line without CRLF within 107 octets, or a v2 header longer than pop3d reads.
    TooLong,
    /// The header's own syntax is wrong (what, in a few words).
    Malformed(&'static str),
    /// Well-formed but asks for something pop3d does not serve (a v2 version, command or
    /// transport other than TCP).
    Unsupported(&'static str),
    /// A --trusted-proxy value that is not ADDR or ADDR/PREFIX.
    BadNetwork { text: String, why: &'static str },
    /// Reading failed, the read timeout included.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("no proxy protocol header"),
            ProxyError::Truncated => {
                f.write_str("connection closed inside the proxy protocol header")
            }
            ProxyError::TooLong => f.write_str("proxy protocol header too long"),
            ProxyError::Malformed(why) => write!(f, "malformed proxy protocol header: {why}"),
            ProxyError::Unsupported(why) => write!(f, "unsupported proxy protocol header: {why}"),
            ProxyError::BadNetwork { text, why } => write!(f, "{text}: {why}"),
            ProxyError::Io(e) if is_timeout(e) => f.write_str("no proxy protocol header in time"),
            ProxyError::Io(e) => write!(f, "reading the proxy protocol header: {e}"),
        }
    }
}

impl Error for ProxyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ProxyError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProxyError {
    fn from(error: io::Error) -> Self {
        // A header cut short is the peer's doing, not an I/O failure.
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ProxyError::Truncated
        } else {
            ProxyError::Io(error)
        }
    }
}

/// A socket read timeout shows as WouldBlock on Unix, TimedOut elsewhere.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads exactly one PROXY header (v1 text or v2 binary, told apart by the first bytes) and no
/// byte more, with a byte bound (v1: 107 octets; v2: 16 + at most `MAX_V2_PAYLOAD_OCTETS`
/// bytes of addresses and TLVs). The caller has set a short read timeout on the socket
/// (`HEADER_TIMEOUT`).
pub fn read_header<R: Read>(input: &mut R) -> Result<ProxyHeader, ProxyError> {
    let mut first = [0u8; 1];
    input.read_exact(&mut first)?;
    // One octet decides: a client that is not a proxy (a person typing "USER") is told apart
    // without waiting for octets it may never send.
    match first[0] {
        b'P' => {
            let mut prefix = [0u8; V1_PREFIX.len()];
            prefix[0] = first[0];
            read_prefix(input, &mut prefix, V1_PREFIX)?;
            read_v1(input)
        }
        b'\r' => {
            let mut fixed = [0u8; V2_FIXED_OCTETS];
            let (signature, _) = fixed.split_at_mut(V2_SIGNATURE.len());
            signature[0] = first[0];
            read_prefix(input, signature, V2_SIGNATURE)?;
            input.read_exact(&mut fixed[V2_SIGNATURE.len()..])?;
            read_v2(input, &fixed)
        }
        _ => Err(ProxyError::NotProxy),
    }
}

/// Fills `buffer[1..]` octet by octet while it still matches `expected`, so that a client that
/// is not a proxy is refused at its first differing octet.
fn read_prefix<R: Read>(
    input: &mut R,
    buffer: &mut [u8],
    expected: &[u8],
) -> Result<(), ProxyError> {
    for index in 1..buffer.len() {
        input.read_exact(&mut buffer[index..=index])?;
        if buffer[index] != expected[index] {
            return Err(ProxyError::NotProxy);
        }
    }
    Ok(())
}

/// The rest of a v1 line after "PROXY ", read to its CRLF.
fn read_v1<R: Read>(input: &mut R) -> Result<ProxyHeader, ProxyError> {
    let mut line = [0u8; MAX_V1_OCTETS - V1_PREFIX.len()];
    let mut length = 0;
    loop {
        if length == line.len() {
            return Err(ProxyError::TooLong);
        }
        input.read_exact(&mut line[length..=length])?;
        length += 1;
        if line[length - 1] == b'\n' {
            break;
        }
    }
    let body = line[..length - 1]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::Malformed("line does not end in crlf"))?;
    parse_v1(body)
}

/// Parses "TCP4 src dst sport dport", "TCP6 ..." or "UNKNOWN ..." (spec section 2.1): single
/// spaces, addresses of the stated family, decimal ports.
fn parse_v1(body: &[u8]) -> Result<ProxyHeader, ProxyError> {
    // The spec: with UNKNOWN, "the receiver must ignore anything presented before the CRLF".
    if body == b"UNKNOWN" || body.starts_with(b"UNKNOWN ") {
        return Ok(ProxyHeader::Local);
    }
    let text = std::str::from_utf8(body).map_err(|_| ProxyError::Malformed("not ascii text"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [protocol, source, destination, source_port, destination_port] = fields[..] else {
        return Err(ProxyError::Malformed("not five fields after proxy"));
    };
    let parse_ip = |text: &str| -> Result<IpAddr, ProxyError> {
        let ip = match protocol {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => text.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => {
                return Err(ProxyError::Malformed(
                    "protocol is not tcp4, tcp6 or unknown",
                ))
            }
        };
        ip.map_err(|_| ProxyError::Malformed("bad address"))
    };
    let parse_port = |text: &str| {
        parse_decimal(text, 5)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or(ProxyError::Malformed("bad port"))
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(parse_ip(source)?, parse_port(source_port)?),
        destination: SocketAddr::new(parse_ip(destination)?, parse_port(destination_port)?),
        client_tls: false,
    })
}

/// 1 to `max_digits` ASCII digits; no sign, no spaces.
fn parse_decimal(text: &str, max_digits: usize) -> Option<u32> {
    if text.len() > max_digits || !is_digits(text) {
        return None;
    }
    text.parse().ok()
}

/// Reads what follows v2's fixed part and interprets it (spec section 2.2).
fn read_v2<R: Read>(
    input: &mut R,
    fixed: &[u8; V2_FIXED_OCTETS],
) -> Result<ProxyHeader, ProxyError> {
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    let family_and_transport = fixed[13];
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if version != 2 {
        return Err(ProxyError::Unsupported("version is not 2"));
    }
    if length > MAX_V2_PAYLOAD_OCTETS {
        return Err(ProxyError::TooLong);
    }
    // Read it all even for LOCAL: the session's first octet is the one after the header.
    let mut payload = [0u8; MAX_V2_PAYLOAD_OCTETS];
    let payload = &mut payload[..length];
    input.read_exact(payload)?;
    match command {
        // LOCAL: the proxy speaking for itself; the address block, if any, is ignored.
        0x0 => return Ok(ProxyHeader::Local),
        0x1 => {}
        _ => {
            return Err(ProxyError::Unsupported(
                "command is neither local nor proxy",
            ))
        }
    }
    match family_and_transport {
        // TCP over IPv4.
        0x11 => {
            if length < V2_INET_OCTETS {
                return Err(ProxyError::Malformed("address block too short for ipv4"));
            }
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
                client_tls: client_tls(&payload[V2_INET_OCTETS..])?,
            })
        }
        // TCP over IPv6.
        0x21 => {
            if length < V2_INET6_OCTETS {
                return Err(ProxyError::Malformed("address block too short for ipv6"));
            }
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&payload[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
                client_tls: client_tls(&payload[V2_INET6_OCTETS..])?,
            })
        }
        // UNSPEC, or a Unix stream socket: no IP address to take, so the proxy's stays.
        0x00 | 0x31 => Ok(ProxyHeader::Local),
        _ => Err(ProxyError::Unsupported("transport is not tcp")),
    }
}

/// Walks the TLVs after a v2 address block (spec section 2.2.7) and says whether a PP2_TYPE_SSL
/// one has the PP2_CLIENT_SSL bit. Every TLV must fit in what the header's length announced:
/// one that runs past it means the header is not what the proxy meant to send, and a TLS flag
/// read from it would widen what the connection may do.
fn client_tls(mut tlvs: &[u8]) -> Result<bool, ProxyError> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let Some((header, rest)) = tlvs.split_at_checked(TLV_HEADER_OCTETS) else {
            return Err(ProxyError::Malformed("tlv header runs past the end"));
        };
        let length = usize::from(u16::from_be_bytes([header[1], header[2]]));
        let Some((value, rest)) = rest.split_at_checked(length) else {
            return Err(ProxyError::Malformed("tlv value runs past the end"));
        };
        if header[0] == PP2_TYPE_SSL {
            // The value starts with `client` (1 octet) and `verify` (4 octets); only `client`
            // matters here, the rest (sub-TLVs naming the version, cipher) is for logs.
            let Some(&client) = value.first() else {
                return Err(ProxyError::Malformed("ssl tlv without its client field"));
            };
            tls = client & PP2_CLIENT_SSL != 0;
        }
        tlvs = rest;
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::OneByte;
    use std::io::Cursor;

    /// What a case expects, without comparing io::Errors.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Proxied(String, String),
        /// Proxied, and the SSL TLV says the client used TLS.
        ProxiedTls(String, String),
        Local,
        NotProxy,
        Truncated,
        TooLong,
        Malformed,
        Unsupported,
    }

    fn outcome(result: Result<ProxyHeader, ProxyError>) -> Expect {
        match result {
            Ok(ProxyHeader::Proxied {
                source,
                destination,
                client_tls: false,
            }) => Expect::Proxied(source.to_string(), destination.to_string()),
            Ok(ProxyHeader::Proxied {
                source,
                destination,
                client_tls: true,
            }) => Expect::ProxiedTls(source.to_string(), destination.to_string()),
            Ok(ProxyHeader::Local) => Expect::Local,
            Err(ProxyError::NotProxy) => Expect::NotProxy,
            Err(ProxyError::Truncated) => Expect::Truncated,
            Err(ProxyError::TooLong) => Expect::TooLong,
            Err(ProxyError::Malformed(_)) => Expect::Malformed,
            Err(ProxyError::Unsupported(_)) => Expect::Unsupported,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    /// A v2 header: signature, version/command, family/transport, length, then `payload`.
    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        header.extend_from_slice(payload);
        header
    }

    fn v2_inet_payload() -> Vec<u8> {
        let mut p = vec![192, 0, 2, 7, 10, 0, 0, 1];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&110u16.to_be_bytes());
        p
    }

    fn v2_inet6_payload() -> Vec<u8> {
        let mut p = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&110u16.to_be_bytes());
        p
    }

    fn proxied(source: &str, destination: &str) -> Expect {
        Expect::Proxied(source.to_owned(), destination.to_owned())
    }

    fn proxied_tls(source: &str, destination: &str) -> Expect {
        Expect::ProxiedTls(source.to_owned(), destination.to_owned())
    }

    /// `payload` followed by one TLV of `kind` holding `value`.
    fn with_tlv(mut payload: Vec<u8>, kind: u8, value: &[u8]) -> Vec<u8> {
        payload.push(kind);
        payload.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        payload.extend_from_slice(value);
        payload
    }

    /// The SSL TLV as haproxy sends it: client bits, verify (0 = ok), then a version sub-TLV.
    fn ssl_value(client: u8) -> Vec<u8> {
        let mut value = vec![client, 0, 0, 0, 0];
        value.extend_from_slice(&[0x21, 0x00, 0x07]);
        value.extend_from_slice(b"TLSv1.3");
        value
    }

    fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
        let longest_v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest_v1 = format!("PROXY TCP6 {longest_v6} {longest_v6} 65535 65535\r\n");
        let mut unknown_107 = b"PROXY UNKNOWN ".to_vec();
        unknown_107.resize(MAX_V1_OCTETS - 2, b'x');
        unknown_107.extend_from_slice(b"\r\n");
        let mut unknown_108 = unknown_107.clone();
        unknown_108.insert(20, b'x');
        let mut with_tlvs = v2_inet_payload();
        with_tlvs.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']);
        // Filled to the bound with one PP2_TYPE_NOOP TLV (0x04), the spec's padding.
        let padding = MAX_V2_PAYLOAD_OCTETS - V2_INET_OCTETS - TLV_HEADER_OCTETS;
        let largest = with_tlv(v2_inet_payload(), 0x04, &vec![0; padding]);
        let mut oversize = v2_inet_payload();
        oversize.resize(MAX_V2_PAYLOAD_OCTETS + 1, 0);
        let mut version_1_binary = v2(0x1, 0x11, &v2_inet_payload());
        version_1_binary[12] = 0x11;
        use Expect::*;
        vec![
            (
                "v1 tcp4",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 110\r\n".to_vec(),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v1 tcp6",
                b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 110\r\n".to_vec(),
                proxied("[2001:db8::7]:40000", "[2001:db8::1]:110"),
            ),
            (
                "v1 tcp6 mapped ipv4",
                b"PROXY TCP6 ::ffff:127.0.0.2 ::1 1 65535\r\n".to_vec(),
                proxied("[::ffff:127.0.0.2]:1", "[::1]:65535"),
            ),
            (
                "v1 longest tcp6",
                longest_v1.into_bytes(),
                proxied(
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                ),
            ),
            ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), Local),
            (
                "v1 unknown ignores the rest",
                b"PROXY UNKNOWN whatever 1 2 3\r\n".to_vec(),
                Local,
            ),
            ("v1 unknown of 107 octets", unknown_107, Local),
            ("v1 of 108 octets", unknown_108, TooLong),
            (
                "v1 without cr",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 110\n".to_vec(),
                Malformed,
            ),
            (
                "v1 double space",
                b"PROXY TCP4  192.0.2.7 10.0.0.1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 lowercase protocol",
                b"PROXY tcp4 192.0.2.7 10.0.0.1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 udp",
                b"PROXY UDP4 192.0.2.7 10.0.0.1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 tcp4 with ipv6 address",
                b"PROXY TCP4 2001:db8::7 10.0.0.1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 tcp6 with ipv4 address",
                b"PROXY TCP6 192.0.2.7 2001:db8::1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 port too large",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 signed port",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 +4000 110\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 missing port",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 extra field",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 110 x\r\n".to_vec(),
                Malformed,
            ),
            (
                "v1 bad address",
                b"PROXY TCP4 192.0.2.256 10.0.0.1 40000 110\r\n".to_vec(),
                Malformed,
            ),
            ("v1 not utf-8", b"PROXY TCP4 \xff\r\n".to_vec(), Malformed),
            ("v1 lowercase proxy", b"proxy TCP4\r\n".to_vec(), NotProxy),
            ("v1 no space", b"PROXYTCP4\r\n".to_vec(), NotProxy),
            ("pop3 command", b"USER alice\r\n".to_vec(), NotProxy),
            (
                "pop3 command starting with p",
                b"PASS x\r\n".to_vec(),
                NotProxy,
            ),
            ("bare crlf then eof", b"\r\n".to_vec(), Truncated),
            (
                "crlf then a command",
                b"\r\nUSER alice\r\n".to_vec(),
                NotProxy,
            ),
            (
                "bad v2 signature",
                b"\r\n\r\n\0\r\nQUIT!".to_vec(),
                NotProxy,
            ),
            ("empty", Vec::new(), Truncated),
            (
                "v2 tcp4",
                v2(0x1, 0x11, &v2_inet_payload()),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 tcp6",
                v2(0x1, 0x21, &v2_inet6_payload()),
                proxied("[2001:db8::7]:40000", "[2001:db8::1]:110"),
            ),
            (
                "v2 tcp4 with tlvs",
                v2(0x1, 0x11, &with_tlvs),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 largest accepted",
                v2(0x1, 0x11, &largest),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            ("v2 oversize", v2(0x1, 0x11, &oversize), TooLong),
            (
                "v2 ssl tlv with the client ssl bit",
                v2(
                    0x1,
                    0x11,
                    &with_tlv(v2_inet_payload(), 0x20, &ssl_value(0x07)),
                ),
                proxied_tls("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 tcp6 ssl tlv with the client ssl bit",
                v2(
                    0x1,
                    0x21,
                    &with_tlv(v2_inet6_payload(), 0x20, &ssl_value(0x01)),
                ),
                proxied_tls("[2001:db8::7]:40000", "[2001:db8::1]:110"),
            ),
            (
                "v2 ssl tlv of client and verify only",
                v2(
                    0x1,
                    0x11,
                    &with_tlv(v2_inet_payload(), 0x20, &[0x01, 0, 0, 0, 0]),
                ),
                proxied_tls("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 ssl tlv without the client ssl bit",
                v2(
                    0x1,
                    0x11,
                    &with_tlv(v2_inet_payload(), 0x20, &ssl_value(0x06)),
                ),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 ssl tlv after another tlv",
                v2(
                    0x1,
                    0x11,
                    &with_tlv(with_tlvs.clone(), 0x20, &ssl_value(0x01)),
                ),
                proxied_tls("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 ssl type octet inside another tlv's value is not a tlv",
                v2(
                    0x1,
                    0x11,
                    &with_tlv(v2_inet_payload(), 0x05, &[0x20, 0, 1, 1]),
                ),
                proxied("192.0.2.7:40000", "10.0.0.1:110"),
            ),
            (
                "v2 ssl tlv without its client field",
                v2(0x1, 0x11, &with_tlv(v2_inet_payload(), 0x20, &[])),
                Malformed,
            ),
            (
                "v2 tlv value runs past the end",
                v2(0x1, 0x11, &{
                    let mut p = with_tlv(v2_inet_payload(), 0x20, &ssl_value(0x01));
                    p.pop();
                    p
                }),
                Malformed,
            ),
            (
                "v2 tlv header runs past the end",
                v2(0x1, 0x11, &{
                    let mut p = v2_inet_payload();
                    p.extend_from_slice(&[0x20, 0x00]);
                    p
                }),
                Malformed,
            ),
            ("v2 local", v2(0x0, 0x00, &[]), Local),
            (
                "v2 local with addresses",
                v2(0x0, 0x11, &v2_inet_payload()),
                Local,
            ),
            ("v2 proxy unspec", v2(0x1, 0x00, &[]), Local),
            ("v2 proxy unix stream", v2(0x1, 0x31, &[0; 216]), Local),
            ("v2 udp", v2(0x1, 0x12, &v2_inet_payload()), Unsupported),
            (
                "v2 unknown command",
                v2(0x2, 0x11, &v2_inet_payload()),
                Unsupported,
            ),
            ("v2 version 1", version_1_binary, Unsupported),
            (
                "v2 tcp4 short block",
                v2(0x1, 0x11, &[1, 2, 3, 4]),
                Malformed,
            ),
            (
                "v2 tcp6 short block",
                v2(0x1, 0x21, &v2_inet_payload()),
                Malformed,
            ),
        ]
    }

    #[test]
    fn headers_parse_as_the_spec_says() {
        for (name, input, expected) in cases() {
            assert_eq!(outcome(read_header(&mut &input[..])), expected, "{name}");
        }
    }

    #[test]
    fn headers_fed_one_byte_at_a_time_parse_the_same() {
        for (name, input, expected) in cases() {
            assert_eq!(
                outcome(read_header(&mut OneByte(&input))),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn no_octet_after_the_header_is_read() {
        for (name, mut input, expected) in cases() {
            if !matches!(
                expected,
                Expect::Proxied(..) | Expect::ProxiedTls(..) | Expect::Local
            ) {
                continue;
            }
            let length = input.len();
            input.extend_from_slice(b"USER alice\r\n");
            let mut cursor = Cursor::new(&input);
            assert!(read_header(&mut cursor).is_ok(), "{name}");
            assert_eq!(cursor.position(), length as u64, "{name}");
        }
    }

    #[test]
    fn every_truncated_header_is_truncated() {
        for (name, input, expected) in cases() {
            if !matches!(
                expected,
                Expect::Proxied(..) | Expect::ProxiedTls(..) | Expect::Local
            ) {
                continue;
            }
            for cut in 0..input.len() {
                assert_eq!(
                    outcome(read_header(&mut &input[..cut])),
                    Expect::Truncated,
                    "{name} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn oversize_v1_reads_no_more_than_the_bound() {
        let input = vec![b'x'; 1000];
        let mut line = b"PROXY ".to_vec();
        line.extend_from_slice(&input);
        let mut cursor = Cursor::new(&line);
        assert_eq!(outcome(read_header(&mut cursor)), Expect::TooLong);
        assert_eq!(cursor.position(), MAX_V1_OCTETS as u64);
    }

    #[test]
    fn a_non_proxy_client_is_refused_at_its_first_octet() {
        let mut cursor = Cursor::new(b"CAPA\r\n");
        assert_eq!(outcome(read_header(&mut cursor)), Expect::NotProxy);
        assert_eq!(cursor.position(), 1);
    }

    #[test]
    fn a_timeout_is_an_io_error_that_says_so() {
        struct Silent;
        impl Read for Silent {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        let error = read_header(&mut Silent).unwrap_err();
        assert!(matches!(error, ProxyError::Io(_)));
        assert_eq!(error.to_string(), "no proxy protocol header in time");
    }

    #[test]
    fn error_messages_are_lowercase_without_a_final_period() {
        let errors = [
            ProxyError::NotProxy,
            ProxyError::Truncated,
            ProxyError::TooLong,
            ProxyError::Malformed("bad port"),
            ProxyError::Unsupported("transport is not tcp"),
            ProxyError::Io(io::Error::other("boom")),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert_eq!(text, text.to_lowercase(), "{text}");
        }
    }

    fn net(text: &str) -> TrustedNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn trusted_nets_match_their_addresses() {
        let table = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("127.0.0.1", "::1", false),
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("192.168.4.0/22", "192.168.7.255", true),
            ("192.168.4.0/22", "192.168.8.0", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.0.0.1", false),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
        ];
        for (network, address, inside) in table {
            assert_eq!(
                net(network).contains(ip(address)),
                inside,
                "{network} {address}"
            );
        }
    }

    #[test]
    fn trusted_nets_print_as_network_and_prefix() {
        assert_eq!(net("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(net("::1").to_string(), "::1/128");
    }

    #[test]
    fn bad_trusted_nets_are_refused() {
        for text in [
            "",
            "localhost",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.5/8",
            "::1/129",
            "2001:db8::1/32",
            "[::1]",
            "10.0.0.0 /8",
        ] {
            let result = text.parse::<TrustedNet>();
            assert!(
                matches!(result, Err(ProxyError::BadNetwork { .. })),
                "{text:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_bad_trusted_net_names_itself_in_the_error() {
        let error = "10.0.0.5/8".parse::<TrustedNet>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "10.0.0.5/8: address has bits set past the prefix length"
        );
    }
}
