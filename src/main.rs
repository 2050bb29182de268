//! pop3d: command line -> Config, logging, then standalone (listener) or one --inetd session.

fn main() {}
