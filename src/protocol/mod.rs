//! The POP3 wire format: command lines in (command), replies and multi-line bodies out (reply).

pub mod command;
pub mod reply;
