//! pop3d: command line -> Config, logging, then standalone (listener) or one --inetd session.

mod auth;
mod config;
mod listener;
mod logging;
mod maildrop;
mod protocol;
mod session;
mod users;

fn main() {}
