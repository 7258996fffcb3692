//! Durations: the server's bounds for leases and retention, and a small parser for
//! human-written durations on the command line (`250ms`, `1.5s`, `5m`, `24h`, `7d`).

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

/// Parses a number and a unit: `250ms`, `1.5s`, `5m`, `24h`, `7d`. Fractions are exact
/// to the nanosecond. The unit is required (only `0` may go without): a bare `100`
/// could mean seconds or milliseconds, and guessing wrong turns a 100 ms timeout into
/// 100 s.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let expected = || {
        format!(
            "{text:?} is not a duration: use a number and a unit (ms, s, m, h or d), like 250ms, 1.5s, 30s, 5m or 24h"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        // Zero is zero in every unit (`--cleanup-interval 0` turns the job off).
        "" if !number.is_empty() && number.bytes().all(|b| b == b'0') => {
            return Ok(Duration::ZERO);
        }
        "" if !number.is_empty() => {
            return Err(format!(
                "{text:?} has no unit: write {number}s for seconds or {number}ms for milliseconds (units: ms, s, m, h, d)"
            ));
        }
        _ => return Err(expected()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !digits_only(whole)
        || !digits_only(fraction)
        || number.ends_with('.')
    {
        return Err(expected());
    }
    let too_long = || format!("{text:?} is too long");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    // The fraction's digits beyond the nanosecond are dropped, never rounded up.
    let mut fraction_nanos: u128 = 0;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes() {
        scale /= 10;
        fraction_nanos += u128::from(digit - b'0') * scale;
    }
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|nanos| nanos.checked_add(fraction_nanos))
        .ok_or_else(too_long)?;
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
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
    fn a_bare_number_is_refused_with_both_readings() {
        let err = parse_duration("100").unwrap_err();
        assert!(err.contains("100s") && err.contains("100ms"), "{err}");
        assert!(parse_duration("1.5").unwrap_err().contains("1.5s"));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn human_durations_parse_and_format() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5m").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("0.25ms").unwrap(),
            Duration::from_micros(250)
        );
        assert_eq!(
            parse_duration("1.0000000019s").unwrap(),
            Duration::new(1, 1)
        );
        assert!(parse_duration("3 weeks").is_err());
        for malformed in [
            "", "s", ".s", "1.s", "1..5s", "1.2.3s", "-1s", "1e3ms", "5 s",
        ] {
            assert!(parse_duration(malformed).is_err(), "{malformed:?}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
