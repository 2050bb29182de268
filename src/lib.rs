//! pop3d as a library: the binary (src/main.rs) and any helper binaries share these modules.
//! The only unsafe code is the OFD fcntl call in maildrop/lock.rs, allowed there alone.

#![deny(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod bytes;
pub mod config;
pub mod listener;
pub mod logging;
pub mod maildrop;
pub mod protocol;
pub mod proxy;
pub mod session;
#[cfg(test)]
mod testing;
pub mod uidl;
pub mod users;
pub mod watched;
