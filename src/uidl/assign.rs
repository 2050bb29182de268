//! The final unique ids of a maildrop, chosen from each message's candidates (one per scheme
//! of the `--uidl` list): issue 15's rule. In file order, a message takes its most preferred
//! candidate that no earlier message took and no deleted message showed; a candidate already
//! taken (two byte-identical messages under popa3d, a forged X-UIDL) or retired (a forged
//! copy of a deleted message's X-UID or X-UIDL) falls to the next scheme. A message left without
//! any gets a fallback id distinct from every id given, built from pop3d's own id. The
//! counts of what happened make one log line per session.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{valid_id, Scheme, Unnamed, MAX_ID_LEN};

/// Who named a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// A scheme of the list.
    Scheme(Scheme),
    /// No scheme gave an id not taken before: a fallback id.
    Fallback,
}

/// What happened to one scheme's candidates over the maildrop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchemeCounts {
    /// Messages this scheme named.
    pub named: usize,
    /// Messages it could not name: the headers it reads were absent.
    pub absent: usize,
    /// ... or gave no valid id.
    pub invalid: usize,
    /// ... or gave an id an earlier message had taken.
    pub duplicate: usize,
    /// ... or gave the id of a deleted message (the caller's `retired`).
    pub retired: usize,
}

/// The counts behind the session's one log line about unique ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignReport {
    /// Per scheme of the list, in its order (schemes after the one that named a message are
    /// not counted for that message).
    pub schemes: Vec<(Scheme, SchemeCounts)>,
    /// Messages that took a fallback id.
    pub fallback: usize,
    /// Messages in all.
    pub messages: usize,
}

impl AssignReport {
    /// Whether anything worth a warning happened: an invalid or duplicate candidate, or a
    /// fallback id (a message absent from a preferred scheme is the normal case of mail
    /// delivered after the switch).
    pub fn unusual(&self) -> bool {
        self.fallback > 0
            || self
                .schemes
                .iter()
                .any(|(_, c)| c.invalid > 0 || c.duplicate > 0 || c.retired > 0)
    }
}

impl fmt::Display for AssignReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unique ids of {} messages:", self.messages)?;
        for (i, (scheme, c)) in self.schemes.iter().enumerate() {
            let sep = if i == 0 { "" } else { ";" };
            write!(f, "{sep} {scheme} named {}", c.named)?;
            let skipped = [
                (c.absent, "without its header"),
                (c.invalid, "with an invalid id"),
                (c.duplicate, "with an id taken before"),
                (c.retired, "with an id of a deleted message"),
            ];
            for (n, why) in skipped {
                if n > 0 {
                    write!(f, ", passed on {n} {why}")?;
                }
            }
        }
        if self.fallback > 0 {
            write!(f, "; {} got a fallback id", self.fallback)?;
        }
        Ok(())
    }
}

/// The ids of a maildrop, in file order, and who named each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub ids: Vec<String>,
    pub named: Vec<Named>,
    pub report: AssignReport,
}

/// A fallback id is pop3d's id (at most 43 characters), cut to this length if need be, then
/// "-N": room for a counter of up to 9 digits within `MAX_ID_LEN`.
const FALLBACK_BASE: usize = MAX_ID_LEN - 10;

/// Chooses the ids. `rows[i]` holds message i's candidates, one per scheme of `schemes`, in
/// that order (a short row counts its missing candidates as absent); `pop3d_ids[i]` is
/// pop3d's own id for message i, the base of its fallback id. `retired(i, id)` says that
/// `id` named a deleted message other than message i: no candidate or fallback that it
/// refuses is given to message i, so an id never passes from a deleted message to another.
pub fn assign(
    schemes: &[Scheme],
    rows: &[Vec<Result<String, Unnamed>>],
    pop3d_ids: &[String],
    retired: impl Fn(usize, &str) -> bool,
) -> Assignment {
    let mut assigner = Assigner::new(schemes, rows.len());
    for row in rows {
        assigner.push(row.clone(), &retired);
    }
    assigner.finish(|i| pop3d_ids.get(i).cloned(), &retired)
}

/// `assign` one message at a time, as a maildrop's candidates are read: memory grows with
/// the ids taken, not with every candidate of every message (a maildrop of a million
/// messages would otherwise hold them all at once).
#[derive(Debug)]
pub struct Assigner {
    schemes: Vec<Scheme>,
    counts: Vec<SchemeCounts>,
    /// Every id a candidate took, with its message: the ids themselves live here alone until
    /// `finish` hands them out.
    taken: HashMap<String, usize>,
    /// Per message, the scheme that named it; None: a fallback.
    picks: Vec<Option<Scheme>>,
}

impl Assigner {
    /// For `schemes`, and about `messages` messages.
    pub fn new(schemes: &[Scheme], messages: usize) -> Assigner {
        Assigner {
            schemes: schemes.to_vec(),
            counts: vec![SchemeCounts::default(); schemes.len()],
            taken: HashMap::new(),
            picks: Vec::with_capacity(messages),
        }
    }

    /// The next message's candidates, in file order: it takes its most preferred one that
    /// no earlier message took and `retired` does not refuse.
    pub fn push(
        &mut self,
        row: Vec<Result<String, Unnamed>>,
        retired: impl Fn(usize, &str) -> bool,
    ) {
        let i = self.picks.len();
        let mut row = row.into_iter();
        let mut pick = None;
        for (scheme, c) in self.schemes.iter().zip(self.counts.iter_mut()) {
            match row.next() {
                Some(Ok(id)) if retired(i, &id) => c.retired += 1,
                Some(Ok(id)) if !self.taken.contains_key(&id) => {
                    self.taken.insert(id, i);
                    c.named += 1;
                    pick = Some(*scheme);
                    break;
                }
                Some(Ok(_)) => c.duplicate += 1,
                Some(Err(Unnamed::Invalid)) => c.invalid += 1,
                Some(Err(Unnamed::Absent)) | None => c.absent += 1,
            }
        }
        self.picks.push(pick);
    }

    /// The ids of every message pushed. `pop3d_id(i)` is message i's own pop3d id, asked
    /// only for messages that need a fallback. Fallbacks come after every candidate, so that
    /// they never take an id a later message has from its old server.
    pub fn finish(
        self,
        pop3d_id: impl Fn(usize) -> Option<String>,
        retired: impl Fn(usize, &str) -> bool,
    ) -> Assignment {
        let Assigner {
            schemes,
            counts,
            taken,
            picks,
        } = self;
        let messages = picks.len();
        let mut fallbacks: HashSet<String> = HashSet::new();
        let mut ids: Vec<String> = Vec::with_capacity(messages);
        for (i, pick) in picks.iter().enumerate() {
            if pick.is_some() {
                // Filled in from `taken` below.
                ids.push(String::new());
                continue;
            }
            let base: String = match pop3d_id(i) {
                Some(id) => id.chars().take(FALLBACK_BASE).collect(),
                None => format!("m{}", i + 1),
            };
            let mut id = base.clone();
            let mut n = 0u64;
            while !valid_id(id.as_bytes())
                || taken.contains_key(&id)
                || fallbacks.contains(&id)
                || retired(i, &id)
            {
                n += 1;
                id = format!("{base}-{n}");
            }
            fallbacks.insert(id.clone());
            ids.push(id);
        }
        drop(fallbacks);
        for (id, i) in taken {
            ids[i] = id;
        }
        let named = picks
            .iter()
            .map(|pick| pick.map_or(Named::Fallback, Named::Scheme))
            .collect();
        let fallback = picks.iter().filter(|p| p.is_none()).count();
        Assignment {
            ids,
            named,
            report: AssignReport {
                schemes: schemes.into_iter().zip(counts).collect(),
                fallback,
                messages,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> Result<String, Unnamed> {
        Ok(id.to_owned())
    }

    /// No deleted message's id is recorded.
    fn none(_: usize, _: &str) -> bool {
        false
    }

    #[test]
    fn a_retired_candidate_falls_to_the_next_scheme_and_is_counted() {
        // Message 1 held "u2" when it was deleted in an earlier session (so it may keep
        // it); message 2 is a forged copy, and its fallback may not be "p2" either.
        let schemes = [Scheme::Dovecot, Scheme::Pop3d];
        let rows = vec![vec![ok("u2"), ok("p1")], vec![ok("u2"), ok("p2")]];
        let retired = |i: usize, id: &str| i == 1 && (id == "u2" || id == "p2");
        let a = assign(&schemes, &rows, &["p1".into(), "p2".into()], retired);
        assert_eq!(a.ids, ["u2", "p2-1"]);
        assert_eq!(a.named, [Named::Scheme(Scheme::Dovecot), Named::Fallback]);
        assert_eq!(a.report.schemes[0].1.retired, 1);
        assert_eq!(a.report.schemes[1].1.retired, 1);
        assert!(a.report.unusual());
        assert_eq!(
            a.report.to_string(),
            "unique ids of 2 messages: dovecot named 1, passed on 1 with an id of a deleted \
             message; pop3d named 0, passed on 1 with an id of a deleted message; \
             1 got a fallback id"
        );
    }

    #[test]
    fn first_in_file_order_keeps_an_id_and_later_ones_fall_to_the_next_scheme() {
        let schemes = [Scheme::Popa3d, Scheme::Pop3d];
        let rows = vec![
            vec![ok("same"), ok("p1")],
            vec![ok("same"), ok("p2")],
            vec![ok("other"), ok("p3")],
        ];
        let a = assign(
            &schemes,
            &rows,
            &["p1".into(), "p2".into(), "p3".into()],
            none,
        );
        assert_eq!(a.ids, ["same", "p2", "other"]);
        assert_eq!(
            a.named,
            [
                Named::Scheme(Scheme::Popa3d),
                Named::Scheme(Scheme::Pop3d),
                Named::Scheme(Scheme::Popa3d)
            ]
        );
        assert_eq!(a.report.schemes[0].1.duplicate, 1);
        assert!(a.report.unusual());
    }

    #[test]
    fn absent_and_invalid_pass_to_the_next_scheme() {
        let schemes = [Scheme::Dovecot, Scheme::Pop3d];
        let rows = vec![
            vec![ok("d1"), ok("p1")],
            vec![Err(Unnamed::Absent), ok("p2")],
            vec![Err(Unnamed::Invalid), ok("p3")],
        ];
        let a = assign(
            &schemes,
            &rows,
            &["p1".into(), "p2".into(), "p3".into()],
            none,
        );
        assert_eq!(a.ids, ["d1", "p2", "p3"]);
        let c = a.report.schemes[0].1;
        assert_eq!((c.named, c.absent, c.invalid, c.duplicate), (1, 1, 1, 0));
        assert_eq!(a.report.schemes[1].1.named, 2);
        assert_eq!(
            a.report.to_string(),
            "unique ids of 3 messages: dovecot named 1, passed on 1 without its header, \
             passed on 1 with an invalid id; pop3d named 2"
        );
    }

    #[test]
    fn absence_alone_is_not_unusual() {
        let a = assign(
            &[Scheme::Dovecot, Scheme::Pop3d],
            &[vec![Err(Unnamed::Absent), ok("p1")]],
            &["p1".into()],
            none,
        );
        assert!(!a.report.unusual());
    }

    #[test]
    fn a_message_without_a_unique_candidate_gets_a_distinct_fallback() {
        // Message 1's forged X-UIDL is message 2's pop3d id, and message 3's pop3d id is
        // message 2's fallback base taken: every fallback is unique and takes no one's id.
        let schemes = [Scheme::XUidl];
        let rows = vec![vec![ok("p2")], vec![ok("p2")], vec![ok("p2-1")], vec![]];
        let a = assign(
            &schemes,
            &rows,
            &["p1".into(), "p2".into(), "p3".into(), "p4".into()],
            none,
        );
        assert_eq!(a.ids, ["p2", "p2-2", "p2-1", "p4"]);
        assert_eq!(
            a.named,
            [
                Named::Scheme(Scheme::XUidl),
                Named::Fallback,
                Named::Scheme(Scheme::XUidl),
                Named::Fallback
            ]
        );
        assert_eq!(a.report.fallback, 2);
        let unique: HashSet<&String> = a.ids.iter().collect();
        assert_eq!(unique.len(), a.ids.len());
        assert!(a.ids.iter().all(|id| valid_id(id.as_bytes())));
    }

    /// Message by message, as a maildrop is read: pop3d's own id is asked only for the
    /// messages that need a fallback.
    #[test]
    fn the_assigner_takes_one_message_at_a_time() {
        let schemes = [Scheme::Dovecot, Scheme::XUidl];
        let mut assigner = Assigner::new(&schemes, 3);
        assigner.push(vec![ok("u1"), ok("x1")], none);
        assigner.push(vec![Err(Unnamed::Absent), ok("u1")], none);
        assigner.push(vec![ok("u1"), Err(Unnamed::Invalid)], none);
        let asked = std::cell::RefCell::new(Vec::new());
        let a = assigner.finish(
            |i| {
                asked.borrow_mut().push(i);
                Some(format!("p{}", i + 1))
            },
            none,
        );
        assert_eq!(a.ids, ["u1", "p2", "p3"]);
        assert_eq!(asked.into_inner(), [1, 2]);
        assert_eq!(
            a.named,
            [
                Named::Scheme(Scheme::Dovecot),
                Named::Fallback,
                Named::Fallback
            ]
        );
        assert_eq!(a.report.schemes[0].1.duplicate, 1);
        assert_eq!(a.report.schemes[1].1.duplicate, 1);
        assert_eq!(a.report.schemes[1].1.invalid, 1);
    }

    #[test]
    fn a_fallback_stays_within_70_characters() {
        let long = "x".repeat(70);
        let a = assign(
            &[Scheme::XUidl],
            &[vec![ok(&long[..60])], vec![Err(Unnamed::Absent)]],
            &["y".into(), long.clone()],
            none,
        );
        assert_eq!(a.ids[1], format!("{}-1", &long[..60]));
        assert!(a.ids.iter().all(|id| valid_id(id.as_bytes())));
    }
}
