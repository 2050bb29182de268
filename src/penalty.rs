//! Failed logins slowed per client address, across all of the address's connections (as
//! Dovecot's auth penalty): a bounded table of failure counts per address, shared by every
//! session of the process. An address with n failures gets one password check per
//! `delay(n)`: 2 s after the first failure, doubling, at most 15 s (Dovecot's
//! AUTH_PENALTY_INIT_SECS and AUTH_PENALTY_MAX_SECS; `--login-penalty` sets the maximum, 0
//! turns it all off). The checks of all its connections queue for those turns, so opening
//! more connections does not multiply the guessing rate. Under --inetd each process serves
//! one connection, so the table only spans that connection's three attempts.
//!
//! Turns outlive the connections that took them (a client may hang up while it waits), so
//! a turn is only given when it comes within the maximum delay: a check never waits longer
//! than that, whoever queued before it, and a check that would is refused unchecked (the
//! session answers "-ERR [SYS/TEMP]" after the usual failure delay). That costs no password
//! hash and still leaves the address one check per turn; the refusal takes no turn and counts
//! no failure, so the queue drains. A right password from a penalised address waits too, or
//! is refused while the queue is full.
//!
//! A successful login takes back only the failures of the user who logged in: a client that
//! knows one password (its own account) cannot clear the count its guesses at other users
//! built up. Counts are kept per user name for the first few names of an address; failures
//! for further names go to a share that only expiry clears. An address's entry expires
//! `EXPIRY` after its last failure. The table never holds more than `MAX_ADDRESSES` entries:
//! when full, expired entries go first, then the one whose last failure is oldest.
//!
//! An address is an IPv4 address (an IPv4 client of a dual-stack socket too) or an IPv6
//! network of `IPV6_PREFIX_BITS`: every IPv6 host holds at least a /64 and can pick any of
//! its addresses, so counting each /128 apart would let it guess unslowed and flush the table.
//!
//! This module decides how long to wait; the session does the waiting, holding nothing. A
//! session asks through `PenaltyBook`: the table itself, or (in a session process of
//! standalone --system-users, session_process.rs) a channel to the daemon's table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The wait after an address's first failure (Dovecot: AUTH_PENALTY_INIT_SECS).
pub const INITIAL_DELAY: Duration = Duration::from_secs(2);

/// The default longest wait between two checks for one address (Dovecot:
/// AUTH_PENALTY_MAX_SECS): guessing stays slow, and a user behind the same address waits
/// at most this long.
pub const MAX_DELAY: Duration = Duration::from_secs(15);

/// An address without a failure for this long starts again from nothing (Dovecot keeps its
/// penalties in anvil for a similar while).
pub const EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Addresses remembered at most: about 400 KB, however many addresses fail.
pub const MAX_ADDRESSES: usize = 4096;

/// User names whose failures an address keeps apart (so that their own success takes them
/// back); failures for further names are counted together and never taken back.
pub const MAX_NAMES_PER_ADDRESS: usize = 8;

/// The IPv6 prefix counted as one client, as Dovecot's auth penalty does
/// (PENALTY_IPV6_MASK_BITS): a /64 is only the least a host holds; sites and home routers
/// commonly get a /48 or /56 (RFC 6177), which a /64 key would still split into 256 to 65,536
/// unslowed clients. The cost: other hosts of the same /48 share an attacker's penalty.
pub const IPV6_PREFIX_BITS: u32 = 48;

/// The key of `address` in the table: IPv4 (also IPv4-mapped) as is, IPv6 masked to its
/// `IPV6_PREFIX_BITS` network.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The longest user name kept: the names are the client's, and RFC 1939's 40 octets is the
/// longest USER takes.
const MAX_NAME_OCTETS: usize = 40;

/// The wait between checks for an address with `failures` failures, at most `max`.
pub fn delay(failures: u32, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    // Past 2 s << 11 (over an hour, the most --login-penalty takes) the cap holds anyway;
    // larger shifts would only overflow.
    let doublings = (failures - 1).min(11);
    (INITIAL_DELAY * (1 << doublings)).min(max)
}

/// A password check's place in its address's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Check after this wait (at most the maximum delay; zero without failures).
    Wait(Duration),
    /// The queue is full: answer as a failure without checking.
    Refused,
}

#[derive(Debug)]
struct Entry {
    /// Failures per user name, for the first `MAX_NAMES_PER_ADDRESS` names.
    named: Vec<(String, u32)>,
    /// Failures for any further names.
    others: u32,
    last_failure: Instant,
    /// When the address's next check may run.
    next_turn: Instant,
}

impl Entry {
    fn failures(&self) -> u32 {
        self.named
            .iter()
            .fold(self.others, |sum, (_, n)| sum.saturating_add(*n))
    }
}

/// Where a session takes its turns and reports its checks.
pub trait PenaltyBook: Send + Sync {
    /// The next turn of `address` for a password check (`Penalties::turn`).
    fn turn(&self, address: IpAddr, now: Instant) -> Turn;
    /// A failed check of `user` from `address`.
    fn failed(&self, address: IpAddr, user: &str, now: Instant);
    /// A successful login of `user` from `address`.
    fn succeeded(&self, address: IpAddr, user: &str);
}

impl PenaltyBook for Penalties {
    fn turn(&self, address: IpAddr, now: Instant) -> Turn {
        Penalties::turn(self, address, now)
    }

    fn failed(&self, address: IpAddr, user: &str, now: Instant) {
        Penalties::failed(self, address, user, now)
    }

    fn succeeded(&self, address: IpAddr, user: &str) {
        Penalties::succeeded(self, address, user)
    }
}

/// The failure counts of every address, shared by all sessions.
#[derive(Debug)]
pub struct Penalties {
    /// The longest wait between two checks of an address; zero: no penalty, no table.
    max: Duration,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Default for Penalties {
    fn default() -> Penalties {
        Penalties::new(MAX_DELAY)
    }
}

impl Penalties {
    /// Penalties of at most `max` between two checks; `Duration::ZERO` turns them off.
    pub fn new(max: Duration) -> Penalties {
        Penalties {
            max,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// A poisoned lock only means a session panicked while counting; the counts stay usable.
    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next turn of `address` for a password check, if it comes within the
    /// maximum delay. An address without failures checks at once.
    pub fn turn(&self, address: IpAddr, now: Instant) -> Turn {
        let address = client_key(address);
        let mut table = self.table();
        let Some(entry) = table.get_mut(&address) else {
            return Turn::Wait(Duration::ZERO);
        };
        if now.saturating_duration_since(entry.last_failure) >= EXPIRY {
            table.remove(&address);
            return Turn::Wait(Duration::ZERO);
        }
        let turn = entry.next_turn.max(now);
        let wait = turn - now;
        if wait > self.max {
            // The turns queued before reach further than any check waits: no turn is taken,
            // so the queue drains as its turns pass.
            return Turn::Refused;
        }
        entry.next_turn = turn + delay(entry.failures(), self.max);
        Turn::Wait(wait)
    }

    /// Counts a failed check of `user` from `address`.
    pub fn failed(&self, address: IpAddr, user: &str, now: Instant) {
        if self.max.is_zero() {
            return;
        }
        let address = client_key(address);
        let mut table = self.table();
        if let Some(entry) = table.get(&address) {
            if now.saturating_duration_since(entry.last_failure) >= EXPIRY {
                table.remove(&address);
            }
        }
        if !table.contains_key(&address) && table.len() >= MAX_ADDRESSES {
            make_room(&mut table, now);
        }
        let entry = table.entry(address).or_insert_with(|| Entry {
            named: Vec::new(),
            others: 0,
            last_failure: now,
            next_turn: now,
        });
        let room = entry.named.len() < MAX_NAMES_PER_ADDRESS && user.len() <= MAX_NAME_OCTETS;
        match entry.named.iter_mut().find(|(name, _)| name == user) {
            Some((_, n)) => *n = n.saturating_add(1),
            None if room => entry.named.push((user.to_owned(), 1)),
            None => entry.others = entry.others.saturating_add(1),
        }
        entry.last_failure = now;
        // The address's next check waits its delay from this failure, even if an earlier
        // turn was nearer.
        entry.next_turn = entry.next_turn.max(now + delay(entry.failures(), self.max));
    }

    /// A successful login of `user` from `address` takes back that user's failures only.
    pub fn succeeded(&self, address: IpAddr, user: &str) {
        let address = client_key(address);
        let mut table = self.table();
        let Some(entry) = table.get_mut(&address) else {
            return;
        };
        entry.named.retain(|(name, _)| name != user);
        if entry.failures() == 0 {
            table.remove(&address);
        }
    }

    /// The failures counted for `address` now (for tests and logs).
    pub fn failures(&self, address: IpAddr) -> u32 {
        self.table()
            .get(&client_key(address))
            .map_or(0, Entry::failures)
    }

    /// How many addresses the table holds.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees one place at least: drops expired entries, else the one whose last failure is the
/// oldest.
fn make_room(table: &mut HashMap<IpAddr, Entry>, now: Instant) {
    table.retain(|_, e| now.saturating_duration_since(e.last_failure) < EXPIRY);
    if table.len() < MAX_ADDRESSES {
        return;
    }
    let oldest = table
        .iter()
        .min_by_key(|(_, e)| e.last_failure)
        .map(|(address, _)| *address);
    if let Some(address) = oldest {
        table.remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn delay_starts_at_two_seconds_and_doubles_up_to_fifteen() {
        let delays: Vec<u64> = (0..7).map(|n| delay(n, MAX_DELAY).as_secs()).collect();
        assert_eq!(delays, [0, 2, 4, 8, 15, 15, 15]);
        assert_eq!(delay(u32::MAX, MAX_DELAY), MAX_DELAY);
        let hour = Duration::from_secs(3600);
        assert_eq!(delay(12, hour), hour);
        assert_eq!(delay(u32::MAX, hour), hour);
        assert_eq!(delay(3, S(1)), S(1));
    }

    #[test]
    fn a_zero_maximum_turns_the_penalty_off() {
        let p = Penalties::new(Duration::ZERO);
        let a = ip("192.0.2.1");
        let t = Instant::now();
        for _ in 0..5 {
            p.failed(a, "alice", t);
            assert_eq!(p.turn(a, t), Turn::Wait(Duration::ZERO));
        }
        assert!(p.is_empty());
    }

    #[test]
    fn an_address_without_failures_never_waits() {
        let p = Penalties::default();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(p.turn(ip("192.0.2.1"), t), Turn::Wait(Duration::ZERO));
        }
        assert!(p.is_empty());
    }

    #[test]
    fn the_checks_of_an_address_queue_for_turns_whatever_its_connections() {
        let p = Penalties::default();
        let a = ip("192.0.2.1");
        let t = Instant::now();
        p.failed(a, "alice", t);
        // Ten connections asking at the same instant get turns 2 s apart, not ten at once, as
        // far as the longest wait (15 s) reaches; the rest are refused unchecked.
        let waits: Vec<Turn> = (0..10).map(|_| p.turn(a, t)).collect();
        let w = |s| Turn::Wait(S(s));
        let r = Turn::Refused;
        assert_eq!(
            waits,
            [w(2), w(4), w(6), w(8), w(10), w(12), w(14), r, r, r]
        );
        // More failures, longer turns.
        let later = t + S(20);
        p.failed(a, "alice", later);
        p.failed(a, "bob", later);
        p.failed(a, "carol", later);
        assert_eq!(p.failures(a), 4);
        assert_eq!(p.turn(a, later + S(1)), Turn::Wait(S(14)));
        // Another address is not slowed at all.
        assert_eq!(p.turn(ip("192.0.2.2"), later), Turn::Wait(Duration::ZERO));
    }

    #[test]
    fn a_success_takes_back_only_its_own_users_failures() {
        let p = Penalties::default();
        let a = ip("192.0.2.1");
        let t = Instant::now();
        for _ in 0..3 {
            p.failed(a, "victim", t);
        }
        p.failed(a, "me", t);
        p.succeeded(a, "me");
        assert_eq!(p.failures(a), 3);
        p.succeeded(a, "victim");
        assert_eq!(p.failures(a), 0);
        assert!(p.is_empty());
    }

    #[test]
    fn failures_for_many_names_are_kept_but_only_named_ones_are_taken_back() {
        let p = Penalties::default();
        let a = ip("192.0.2.1");
        let t = Instant::now();
        for i in 0..MAX_NAMES_PER_ADDRESS + 5 {
            p.failed(a, &format!("user{i}"), t);
        }
        p.failed(a, &"x".repeat(MAX_NAME_OCTETS + 1), t);
        let all = MAX_NAMES_PER_ADDRESS as u32 + 6;
        assert_eq!(p.failures(a), all);
        p.succeeded(a, "user0");
        p.succeeded(a, &format!("user{}", MAX_NAMES_PER_ADDRESS + 1));
        assert_eq!(p.failures(a), all - 1);
    }

    #[test]
    fn an_entry_expires_after_its_last_failure() {
        let p = Penalties::default();
        let a = ip("192.0.2.1");
        let t = Instant::now();
        p.failed(a, "alice", t);
        p.failed(a, "alice", t + EXPIRY - S(1));
        assert_eq!(p.failures(a), 2);
        assert_eq!(p.turn(a, t + EXPIRY * 2), Turn::Wait(Duration::ZERO));
        assert!(p.is_empty());
        // A failure after expiry starts from one.
        p.failed(a, "alice", t + EXPIRY * 3);
        p.failed(a, "bob", t + EXPIRY * 5);
        assert_eq!(p.failures(a), 1);
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest_address() {
        let p = Penalties::default();
        let t = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            let a = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            p.failed(a, "u", t + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(p.len(), MAX_ADDRESSES);
        let newcomer = ip("192.0.2.9");
        p.failed(newcomer, "u", t + S(60));
        assert_eq!(p.len(), MAX_ADDRESSES);
        assert_eq!(p.failures(newcomer), 1);
        assert_eq!(p.failures(ip("10.0.0.0")), 0, "the oldest went");
        assert_eq!(p.failures(ip("10.0.0.1")), 1);
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_socket_is_its_ipv4_address() {
        let p = Penalties::default();
        let t = Instant::now();
        p.failed(ip("::ffff:192.0.2.1"), "alice", t);
        assert_eq!(p.failures(ip("192.0.2.1")), 1);
        assert_eq!(p.turn(ip("192.0.2.1"), t), Turn::Wait(S(2)));
    }

    #[test]
    fn the_addresses_of_one_ipv6_network_share_a_count() {
        let p = Penalties::default();
        let t = Instant::now();
        // One /64, then another /64 of the same /48.
        p.failed(ip("2001:db8::1"), "alice", t);
        p.failed(ip("2001:db8::2"), "alice", t);
        p.failed(ip("2001:db8:0:ffff::1"), "alice", t);
        assert_eq!(p.failures(ip("2001:db8::14")), 3);
        assert_eq!(p.turn(ip("2001:db8::99"), t), Turn::Wait(S(8)));
        assert_eq!(p.len(), 1);
        p.succeeded(ip("2001:db8::3"), "alice");
        assert!(p.is_empty());
        // The next /48 is another client.
        p.failed(ip("2001:db8::1"), "alice", t);
        assert_eq!(p.failures(ip("2001:db9::1")), 0);
        assert_eq!(p.failures(ip("2001:db8:1::1")), 0);
    }

    #[test]
    fn the_key_masks_ipv6_only() {
        assert_eq!(client_key(ip("192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(client_key(ip("::ffff:192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(
            client_key(ip("2001:db8:abcd:12:34::56")),
            ip("2001:db8:abcd::")
        );
        assert_eq!(client_key(ip("::1")), ip("::"));
    }

    #[test]
    fn no_turn_is_further_than_the_longest_wait_and_refusals_take_none() {
        let p = Penalties::new(S(4));
        let a = ip("192.0.2.1");
        let t = Instant::now();
        p.failed(a, "alice", t);
        // Turns taken by connections that then hung up: 2 s and 4 s away; the third would be
        // 6 s away, past the 4 s maximum, and is refused without taking a turn.
        assert_eq!(p.turn(a, t), Turn::Wait(S(2)));
        assert_eq!(p.turn(a, t), Turn::Wait(S(4)));
        for _ in 0..20 {
            assert_eq!(p.turn(a, t), Turn::Refused);
        }
        // The refusals queued nothing: once the first turns have passed, a check waits for
        // the next free one, never more than the maximum.
        assert_eq!(p.turn(a, t + S(2)), Turn::Wait(S(4)));
        assert_eq!(p.turn(a, t + S(5)), Turn::Wait(S(3)));
    }
}
