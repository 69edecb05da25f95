//! Values as httpd directives write them (shared by `config` and `liveness`).

use std::time::Duration;

/// Durations as httpd writes them: a bare number is seconds; `ms` and `s` suffixes.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else {
        (s, 1000)
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && n.checked_mul(unit).is_some_and(|ms| ms <= 3_600_000) => Ok(Duration::from_millis(n * unit)),
        _ => Err(format!("'{s}' is not a duration between 1ms and 1 hour (examples: 2, 2s, 1500ms)")),
    }
}
