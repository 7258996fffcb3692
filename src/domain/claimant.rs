//! The claimant: who made one logical attempt at a claim (docs/PROTOCOL.md).
//!
//! A caller sends the same claimant on every retry of one Claim. If the first try's
//! reply was lost after the ledger committed it, the retry meets a live claim acquired
//! with its own claimant and is answered `ACQUIRED` again with the same token, instead
//! of `IN_PROGRESS` until the lease runs out. Like the fencing token it is a
//! capability: compared in constant time, never logged, never returned.

use std::fmt;

use subtle::ConstantTimeEq as _;

use super::ValidationError;

/// 0–64 opaque bytes; empty means "not given" and matches nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Claimant(Vec<u8>);

impl Claimant {
    /// The longest claimant accepted, in bytes.
    pub const MAX_LEN: usize = 64;
    /// Random bytes in a claimant the sidecar makes up itself.
    const RANDOM_LEN: usize = 16;

    /// A fresh random claimant, for a claim whose caller sent none: stored with the
    /// claim, it makes the claim's own ledger statement safe to run again after a
    /// connection failure (the second run finds the first one's row as its own), and no
    /// caller can present it.
    pub fn random() -> Self {
        Self(rand::random::<[u8; Self::RANDOM_LEN]>().to_vec())
    }

    /// The raw bytes, for the ledger to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether none was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `stored` is this claimant, in time that does not depend on where the
    /// bytes first differ. An empty claimant matches nothing.
    pub fn matches(&self, stored: &[u8]) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_slice().ct_eq(stored))
    }
}

/// Never prints the bytes: a claimant is a capability.
impl fmt::Debug for Claimant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Claimant({} bytes)", self.0.len())
    }
}

impl TryFrom<Vec<u8>> for Claimant {
    type Error = ValidationError;

    fn try_from(value: Vec<u8>) -> Result<Self, Self::Error> {
        if value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "claimant",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimant_matches_only_the_same_non_empty_bytes() {
        let a = Claimant::try_from(b"attempt-a".to_vec()).unwrap();
        assert!(a.matches(b"attempt-a"));
        assert!(!a.matches(b"attempt-b"));
        assert!(!a.matches(b"attempt-a-longer"));
        assert!(!a.matches(b""));
        assert!(!Claimant::default().matches(b""));
        assert_ne!(Claimant::random(), Claimant::random());
    }

    #[test]
    fn a_claimant_is_at_most_64_bytes_and_never_printed() {
        assert!(Claimant::try_from(vec![7; 64]).is_ok());
        let error = Claimant::try_from(vec![7; 65]).unwrap_err();
        assert_eq!(error.field, "claimant");
        assert!(error.reason.contains("64"), "{error}");
        let secret = Claimant::try_from(b"s3cr3t".to_vec()).unwrap();
        assert_eq!(format!("{secret:?}"), "Claimant(6 bytes)");
    }
}
