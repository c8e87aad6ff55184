//! containerd identifiers: what a container id, exec id or namespace may be.
//!
//! containerd's rule: 1 to 76 characters, groups of ASCII letters and digits
//! separated by single `.`, `_` or `-`. The shim checks again what containerd
//! already checked, because anything that can reach the socket can send ids,
//! and ids end up in paths and runc command lines.

use crate::error::{Error, Result};

/// The longest identifier containerd accepts.
pub const MAX_LEN: usize = 76;

/// Checks `value` against containerd's identifier rule.
pub fn validate(what: &'static str, value: &str) -> Result<()> {
    match rejection(value) {
        Some(reason) => Err(Error::InvalidId {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Why `value` is not a containerd identifier, or `None` when it is one.
pub fn rejection(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_LEN {
        Some("longer than 76 characters")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Some("only letters, digits, '.', '_' and '-' are allowed")
    } else if !value.as_bytes()[0].is_ascii_alphanumeric()
        || !value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
    {
        Some("must start and end with a letter or digit")
    } else if value
        .as_bytes()
        .windows(2)
        .any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric())
    {
        Some("separators must stand alone")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containerd_identifiers() {
        for ok in ["a", "abc-123", "k8s.io", "a_b.c-d", &"x".repeat(76)] {
            validate("id", ok).unwrap();
        }
    }

    #[test]
    fn rejects_what_containerd_rejects() {
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\0b",
            "-a",
            "a-",
            "a--b",
            "a._b",
            " a",
            "é",
            &"x".repeat(77),
        ] {
            assert!(validate("id", bad).is_err(), "{bad:?} accepted");
        }
    }
}
