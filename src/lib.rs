//! pop3d as a library: the binary (src/main.rs) and any helper binaries share these modules.
//! The only unsafe code is the FFI in sys.rs (libc, libcrypt), allowed there alone, and the
//! kill(pid, 0) probe of a dotlock's holder in maildrop/lock.rs.

#![deny(unsafe_code)]

pub mod auth;
pub mod bytes;
pub mod cli;
pub mod config;
pub mod failed_login;
pub mod listener;
pub mod logging;
pub mod maildrop;
pub mod owner;
pub mod penalty;
pub mod protocol;
pub mod proxy;
pub mod security;
pub mod session;
pub mod session_process;
pub mod sources;
pub mod sys;
pub mod system_users;
#[cfg(test)]
mod testing;
pub mod uidl;
pub mod users;
pub mod watched;
