//! The users file.
