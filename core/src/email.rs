//! Email checks with the original server's rules (express-validator `isEmail` + `normalizeEmail()`
//! defaults), so accounts migrated from it are found under the same normalised address.

/// A pragmatic `isEmail`: one `@`, a sane local part and a dotted domain with an alphabetic TLD.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || domain.len() > 254
        || s.chars().any(char::is_whitespace)
    {
        return false;
    }
    let local_ok = local.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic));
    local_ok && domain_ok
}

const OUTLOOK: &[&str] = &[
    "hotmail.com",
    "live.com",
    "outlook.com",
    "hotmail.co.uk",
    "live.co.uk",
    "outlook.kr",
    "hotmail.co.kr",
];
const YAHOO: &[&str] = &[
    "yahoo.com",
    "ymail.com",
    "rocketmail.com",
    "yahoo.co.kr",
    "yahoo.co.uk",
    "yahoo.co.jp",
];
const ICLOUD: &[&str] = &["icloud.com", "me.com"];
const YANDEX: &[&str] = &[
    "yandex.ru",
    "yandex.ua",
    "yandex.kz",
    "yandex.com",
    "yandex.by",
    "ya.ru",
];

/// `normalizeEmail()` with validator's defaults: lower-case; for Gmail drop dots and `+tag` and use
/// `gmail.com`; drop `+tag` for Outlook and iCloud, `-tag` for Yahoo; Yandex domains become `yandex.ru`.
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return lower;
    };
    let cut = |local: &str, sep: char| local.split(sep).next().unwrap_or(local).to_string();
    let (local, domain) = match domain {
        "gmail.com" | "googlemail.com" => (cut(local, '+').replace('.', ""), "gmail.com"),
        d if OUTLOOK.contains(&d) => (cut(local, '+'), d),
        d if YAHOO.contains(&d) => (cut(local, '-'), d),
        d if ICLOUD.contains(&d) => (cut(local, '+'), d),
        d if YANDEX.contains(&d) => (local.to_string(), "yandex.ru"),
        d => (local.to_string(), d),
    };
    format!("{local}@{domain}")
}

/// Width of the `users.email` column (characters).
pub const MAX_CHARS: usize = 255;

/// The account address of `s`: valid, and short enough for `users.email` as sent and as stored
/// (normalising can lengthen it: lower-casing `İ` gives two characters). `None` otherwise.
pub fn account(s: &str) -> Option<String> {
    if s.chars().count() > MAX_CHARS || !is_email(s) {
        return None;
    }
    Some(normalize(s)).filter(|n| n.chars().count() <= MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_account_fits_the_column() {
        assert_eq!(
            account("Admin@Tiketi.GG").as_deref(),
            Some("admin@tiketi.gg")
        );
        assert_eq!(account("not an email"), None);
        let fits = format!(
            "{}@{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(58)
        );
        assert_eq!(fits.chars().count(), MAX_CHARS);
        assert_eq!(account(&fits), Some(fits.clone()));
        let long = format!(
            "{}@{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(59)
        );
        assert!(is_email(&long), "well formed, one character too long");
        assert_eq!(account(&long), None);
        // 255 characters as sent, 256 once lower-cased
        let grows = format!(
            "{}İ@{}.{}.{}.com",
            "a".repeat(62),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(59)
        );
        assert_eq!(grows.chars().count(), MAX_CHARS);
        assert!(is_email(&grows));
        assert_eq!(account(&grows), None);
    }

    #[test]
    fn email_validation() {
        assert!(is_email("admin@tiketi.gg"));
        assert!(is_email("a.b+c@sub.example.co.kr"));
        for bad in [
            "",
            "x",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@c.com",
            "a@.com",
            "a@c.1",
            "a..b@c.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn email_normalisation_matches_validator_defaults() {
        assert_eq!(normalize("Admin@Tiketi.GG"), "admin@tiketi.gg");
        assert_eq!(normalize("J.Doe+promo@GoogleMail.com"), "jdoe@gmail.com");
        assert_eq!(normalize("kim+x@outlook.com"), "kim@outlook.com");
        assert_eq!(normalize("lee-x@yahoo.com"), "lee@yahoo.com");
        assert_eq!(normalize("park+1@me.com"), "park@me.com");
        assert_eq!(normalize("a.b+c@example.com"), "a.b+c@example.com");
    }
}
