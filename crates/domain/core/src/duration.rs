//! Durations as people write them: `90s`, `30m`, `2h`, `1h30m`, `1d`, or whole seconds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A length of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationSecs(pub u64);

impl DurationSecs {
    pub fn as_delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.0).unwrap_or(i64::MAX / 1000))
    }
}

impl fmt::Display for DurationSecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(*self))
    }
}

/// The longest duration jitgate accepts anywhere (a year); longer values are surely mistakes.
pub const MAX_DURATION: DurationSecs = DurationSecs(366 * 24 * 3600);

/// Parse `90s`, `30m`, `2h`, `1d`, `1h30m` or a bare number of seconds. Zero is refused.
pub fn parse_duration(text: &str) -> Result<DurationSecs, String> {
    const HINT: &str = "write a duration like 90s, 30m, 2h or 1h30m, or a whole number of seconds";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("is empty; {HINT}"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| format!("'{text}' is too large; {HINT}"))?;
        return check_range(secs, text);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for ch in text.chars() {
        if let Some(digit) = ch.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(|| format!("'{text}' is too large; {HINT}"))?,
            );
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("'{text}' has an unknown unit '{ch}'; {HINT}")),
        };
        let n = number
            .take()
            .ok_or_else(|| format!("'{text}' has a unit without a number; {HINT}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{text}' is too large; {HINT}"))?;
    }
    if number.is_some() {
        return Err(format!("'{text}' ends in a number without a unit; {HINT}"));
    }
    check_range(total, text)
}

fn check_range(secs: u64, text: &str) -> Result<DurationSecs, String> {
    if secs == 0 {
        return Err(format!("'{text}' is zero; ask for at least 1s"));
    }
    if secs > MAX_DURATION.0 {
        return Err(format!("'{text}' is longer than jitgate accepts (366d)"));
    }
    Ok(DurationSecs(secs))
}

/// Format seconds the way `parse_duration` reads them, largest units first: `1h30m`, `45s`.
pub fn format_duration(d: DurationSecs) -> String {
    let mut rest = d.0;
    if rest == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, suffix) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            out.push_str(&(rest / unit).to_string());
            out.push(suffix);
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(DurationSecs(90)));
        assert_eq!(parse_duration("30m"), Ok(DurationSecs(1800)));
        assert_eq!(parse_duration("2h"), Ok(DurationSecs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(DurationSecs(5400)));
        assert_eq!(parse_duration("1d"), Ok(DurationSecs(86_400)));
        assert_eq!(parse_duration("120"), Ok(DurationSecs(120)));
    }

    #[test]
    fn refuses_nonsense_with_a_hint() {
        for bad in ["", "0", "0s", "5x", "h", "10m5", "-5m", "99999999999999999999", "400d"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formats_round_trip() {
        for secs in [1, 59, 60, 61, 3600, 5400, 86_400, 90_061] {
            let d = DurationSecs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(DurationSecs(5400)), "1h30m");
    }
}
