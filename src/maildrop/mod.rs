//! A user's mbox maildrop: open (session lock, delivery locks, recovery, scan), read one
//! message, commit deletions crash-safely. Owned by the maildrop helper; see the API contract.
