//! Sizes and durations as people write them (`50G`, `14d`), for the CLI's flags and the plugin's
//! settings alike, so that both accept the same spellings.

/// Parses `512K`, `1M`, `50G`, `2T` (binary multiples) or a byte count.
///
/// # Errors
/// A text that is not such a size, or one too large for 64 bits, with an example of the syntax.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        Some((at, 't' | 'T')) => (&text[..at], 40),
        _ => (text, 0),
    };
    match digits.parse::<u64>() {
        Ok(n) => n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large a size")),
        Err(_) => Err(format!("{text:?} is not a size like 1M, 512K, 50G or 1048576")),
    }
}

/// `bytes` in the largest binary unit it reaches: `1536` → `(1.5, "KiB")`, `100` → `(100.0, "B")`.
pub fn binary_units(bytes: u64) -> (f64, &'static str) {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    (value, UNITS[unit])
}

/// Parses `90s`, `30m`, `12h`, `7d`, `500ms` or a number of seconds, into milliseconds.
///
/// # Errors
/// A text that is not such a duration, with an example of the syntax.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if scale > 0 => n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long a duration")),
        _ => Err(format!("{text:?} is not a duration like 90s, 30m, 12h or 7d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn binary_units_stop_at_the_largest_reached() {
        assert_eq!(binary_units(100), (100.0, "B"));
        assert_eq!(binary_units(1536), (1.5, "KiB"));
        assert_eq!(binary_units(3 << 30), (3.0, "GiB"));
        assert_eq!(binary_units(2048 << 40), (2048.0, "TiB"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("14d"), Ok(14 * 86_400_000));
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert!(parse_duration_ms("1h30m").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }
}
