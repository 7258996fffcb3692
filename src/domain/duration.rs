//! Durations: the server's bounds for leases and retention, and a small parser for
//! human-written durations on the command line (`250ms`, `30s`, `5m`, `24h`, `7d`).

use std::time::Duration;

use super::ValidationError;

/// A default and a maximum for a duration a caller may request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationBounds {
    /// Used when the request leaves the duration zero or absent.
    pub default: Duration,
    /// The longest duration a caller may ask for.
    pub max: Duration,
}

/// The shortest lease or retention a caller may ask for.
const MIN_REQUESTED: Duration = Duration::from_millis(1);

/// A duration a request asked for, resolved against [`DurationBounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedDuration(Duration);

impl BoundedDuration {
    /// Resolves a requested duration given as (seconds, nanos), `None` when absent.
    /// Zero or absent means the default; negative, sub-millisecond or over the maximum
    /// is an error naming `field` and the limit.
    pub fn resolve(
        field: &'static str,
        requested: Option<(i64, i32)>,
        bounds: DurationBounds,
    ) -> Result<Self, ValidationError> {
        let (seconds, nanos) = match requested {
            None | Some((0, 0)) => return Ok(Self(bounds.default)),
            Some(raw) => raw,
        };
        let out_of_range = || {
            ValidationError::new(
                field,
                format!(
                    "must be between {} and {} (or zero for the default {})",
                    format_duration(MIN_REQUESTED),
                    format_duration(bounds.max),
                    format_duration(bounds.default)
                ),
            )
        };
        if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
            return Err(out_of_range());
        }
        let requested = Duration::new(seconds as u64, nanos as u32);
        if requested < MIN_REQUESTED || requested > bounds.max {
            return Err(out_of_range());
        }
        Ok(Self(requested))
    }

    /// The resolved duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses `250ms`, `30s`, `5m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 30s, 5m, 24h or 7d"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Formats a duration in the largest unit that divides it exactly.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: DurationBounds = DurationBounds {
        default: Duration::from_secs(30),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn zero_or_absent_means_the_default() {
        for raw in [None, Some((0, 0))] {
            let got = BoundedDuration::resolve("lease", raw, BOUNDS).unwrap();
            assert_eq!(got.get(), Duration::from_secs(30));
        }
    }

    #[test]
    fn out_of_range_durations_name_the_field_and_limit() {
        for raw in [(-1, 0), (0, 999_999), (3601, 0), (0, -5)] {
            let err = BoundedDuration::resolve("lease", Some(raw), BOUNDS).unwrap_err();
            assert_eq!(err.field, "lease");
            assert!(err.reason.contains("1h"), "{err}");
        }
        let ok = BoundedDuration::resolve("lease", Some((0, 1_000_000)), BOUNDS).unwrap();
        assert_eq!(ok.get(), Duration::from_millis(1));
    }

    #[test]
    fn human_durations_parse_and_format() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
