//! Credential checks.
