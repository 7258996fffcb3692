//! The identifiers of the API — namespaces, idempotency keys, fingerprints and fencing
//! tokens — each parsed once from raw input, with the limits the sidecar enforces, so a
//! client can check its input before a round trip and the sidecar parses it the same way.

use std::fmt;

/// A field of a request that failed validation: names the field and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The request field, as named in the proto.
    pub field: &'static str,
    /// What limit it broke.
    pub reason: String,
}

impl ValidationError {
    /// A validation failure of `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// 1–64 bytes of `[A-Za-z0-9._-]`. Keeps one caller's keys apart from another's; it
/// never contains `:`, so `namespace:key` is an unambiguous cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// The longest namespace accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The namespace as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Namespace {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "namespace",
                format!("must be 1-{} bytes, got {}", Self::MAX_LEN, value.len()),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ValidationError::new(
                "namespace",
                format!("may only hold [A-Za-z0-9._-], found {bad:?}"),
            ));
        }
        Ok(Self(value))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1–255 bytes of UTF-8 without control characters: one logical operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() {
            return Err(ValidationError::new("key", "must not be empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "key",
                format!(
                    "must be at most {} bytes, got {}",
                    Self::MAX_LEN,
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "key",
                "must not contain control characters",
            ));
        }
        Ok(Self(value))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Up to 64 bytes identifying a request's payload. Empty means "not given", and an
/// empty fingerprint, stored or sent, never mismatches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// The longest fingerprint accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether a request with fingerprint `self` may use a key stored with `stored`.
    pub fn is_compatible_with(&self, stored: &Fingerprint) -> bool {
        Self::compatible(&self.0, &stored.0)
    }

    /// The one fingerprint rule, on raw bytes: equal, or either side empty.
    pub fn compatible(requested: &[u8], stored: &[u8]) -> bool {
        requested.is_empty() || stored.is_empty() || requested == stored
    }
}

impl TryFrom<Vec<u8>> for Fingerprint {
    type Error = ValidationError;

    fn try_from(value: Vec<u8>) -> Result<Self, Self::Error> {
        if value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "fingerprint",
                format!(
                    "must be at most {} bytes, got {}",
                    Self::MAX_LEN,
                    value.len()
                ),
            ));
        }
        Ok(Self(value))
    }
}

/// The capability a successful `Claim` hands to its caller. Tokens come from one global
/// sequence, so a later claim's token is always larger than an earlier one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value.
    pub fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value, as sent over the wire.
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_limited_to_64_bytes_of_a_small_alphabet() {
        assert!(Namespace::try_from("payments.eu-1_v2".to_owned()).is_ok());
        assert!(Namespace::try_from("a".repeat(64)).is_ok());
        for bad in ["", "has space", "colon:here", "ünï"] {
            let err = Namespace::try_from(bad.to_owned()).unwrap_err();
            assert_eq!(err.field, "namespace");
        }
        assert!(
            Namespace::try_from("a".repeat(65))
                .unwrap_err()
                .reason
                .contains("1-64")
        );
    }

    #[test]
    fn keys_are_1_to_255_bytes_without_control_characters() {
        assert!(IdempotencyKey::try_from("order-42/üñí code ok".to_owned()).is_ok());
        assert!(IdempotencyKey::try_from("k".repeat(255)).is_ok());
        assert!(
            IdempotencyKey::try_from("k".repeat(256))
                .unwrap_err()
                .reason
                .contains("255")
        );
        assert!(IdempotencyKey::try_from(String::new()).is_err());
        assert!(IdempotencyKey::try_from("a\nb".to_owned()).is_err());
        assert!(IdempotencyKey::try_from("a\u{7f}b".to_owned()).is_err());
    }

    #[test]
    fn an_empty_fingerprint_never_mismatches() {
        let a = Fingerprint::try_from(vec![1]).unwrap();
        let b = Fingerprint::try_from(vec![2]).unwrap();
        let empty = Fingerprint::default();
        assert!(a.is_compatible_with(&a));
        assert!(!a.is_compatible_with(&b));
        assert!(empty.is_compatible_with(&a));
        assert!(a.is_compatible_with(&empty));
        assert!(Fingerprint::try_from(vec![0; 65]).is_err());
    }
}
