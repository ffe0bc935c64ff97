//! Durations as written in specs: `1h30m`, `30m`, `90s`.

/// Seconds of a `[Nh][Nm][Ns]` duration; `None` when malformed or empty.
pub fn parse_seconds(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let (mut total, mut num, mut last_unit) = (0i64, String::new(), 0);
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let (unit, mult) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if num.is_empty() || unit <= last_unit {
            return None;
        }
        total = total.checked_add(num.parse::<i64>().ok()?.checked_mul(mult)?)?;
        num.clear();
        last_unit = unit;
    }
    num.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_parses_go_style() {
        assert_eq!(parse_seconds("30m"), Some(1800));
        assert_eq!(parse_seconds("1h30m"), Some(5400));
        assert_eq!(parse_seconds("90s"), Some(90));
        assert_eq!(parse_seconds("1h2m3s"), Some(3723));
        for bad in ["", "m", "30", "1m1h", "1x", "-1m", "1h1h"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
