//! pop3d's integration tests as one test crate (as ripgrep's tests/tests.rs): one binary to
//! link instead of one per file, and helpers compiled once. Each module starts the real pop3d
//! or drives the maildrop as another process would; `support` (the server, a client, the
//! shared helpers of src/testing.rs) and `maildrop_support` (tagged messages, child processes)
//! serve them all. Run one module with `cargo test --test integration MODULE::`.

mod maildrop_support;
mod support;

mod docs;
mod extensions;
mod hardening;
mod hashed_passwords;
mod inetd;
mod maildrop_delivery;
mod maildrop_faults;
mod maildrop_full_disk;
mod maildrop_integrity;
mod maildrop_locks;
mod maildrop_stale_journal;
mod penalty;
mod plaintext_auth;
mod pop3;
mod privileges;
mod proxy;
mod router_penalty;
mod session_short_read;
mod system_users;
mod uidl;
