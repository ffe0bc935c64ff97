//! Id validation with the exact acceptance rules of the original server (`uuid.validate` v9).

/// True for a canonical hyphenated UUID of versions 1–5 with an RFC 4122 variant, or the nil UUID.
/// Braced, URN and hyphen-less forms are rejected, as the original did.
pub fn is_valid_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    if s == "00000000-0000-0000-0000-000000000000" {
        return true;
    }
    matches!(b[14], b'1'..=b'5') && matches!(b[19].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b')
}

/// Parses a string that passed [`is_valid_uuid`].
pub fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    if is_valid_uuid(s) {
        uuid::Uuid::parse_str(s).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accepts_v4_and_nil_case_insensitive() {
        assert!(is_valid_uuid("227d2f9e-1b7a-4c1e-9a55-0b7f1e2d3c4b"));
        assert!(is_valid_uuid("227D2F9E-1B7A-4C1E-9A55-0B7F1E2D3C4B"));
        assert!(is_valid_uuid("00000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn ids_rejects_other_forms() {
        for s in [
            "",
            "abc",
            "227d2f9e1b7a4c1e9a550b7f1e2d3c4b",
            "{227d2f9e-1b7a-4c1e-9a55-0b7f1e2d3c4b}",
            "227d2f9e-1b7a-6c1e-9a55-0b7f1e2d3c4b",
            "227d2f9e-1b7a-4c1e-7a55-0b7f1e2d3c4b",
            "227d2f9e-1b7a-4c1e-9a55-0b7f1e2d3c4g",
            "227d2f9e_1b7a-4c1e-9a55-0b7f1e2d3c4b",
        ] {
            assert!(!is_valid_uuid(s), "{s}");
            assert!(parse_uuid(s).is_none());
        }
    }
}
