//! The stable machine-readable `code` every error answer carries beside the contract's
//! `error`/`message`. Clients branch on the code, never on the (Korean) text. The table in
//! `docs/errors.md` is generated from this list and checked for drift by a test.

macro_rules! codes {
    ($($variant:ident = $code:literal, $status:literal, $meaning:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// The HTTP status(es) this code is answered with, for the docs table.
            pub const fn statuses(self) -> &'static str {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// What it means and what a client should do.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    InvalidInput = "INVALID_INPUT", "400", "A field or query parameter is missing or has a wrong value; fix the request.";
    InvalidId = "INVALID_ID", "400", "An id in the path or body is not a UUID.";
    InvalidJson = "INVALID_JSON", "400", "The body is not a JSON object (or holds NUL characters).";
    ValidationFailed = "VALIDATION_FAILED", "400", "Field validation of registration or login failed; `errors` lists the fields.";
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", "413", "The request body is over the size limit.";
    InvalidImage = "INVALID_IMAGE", "400", "The upload is missing, over 5 MB, or not a PNG, JPEG, GIF or WebP image.";
    InvalidPaymentMethod = "INVALID_PAYMENT_METHOD", "400", "The payment method is not one of `GET /api/payments/methods`.";
    AuthRequired = "AUTH_REQUIRED", "401", "No bearer token; log in.";
    TokenInvalid = "TOKEN_INVALID", "401", "The token is malformed or signed with another secret; log in again.";
    TokenExpired = "TOKEN_EXPIRED", "401", "The token has expired; log in again.";
    UserNotFound = "USER_NOT_FOUND", "401", "The token's user no longer exists; log in again.";
    InvalidCredentials = "INVALID_CREDENTIALS", "401", "Wrong email or password.";
    EmailTaken = "EMAIL_TAKEN", "400", "An account with this email exists.";
    AdminOnly = "ADMIN_ONLY", "403", "The route needs the admin role (checked against the database, not the token).";
    NotOwner = "NOT_OWNER", "403", "Only the author may change or delete this item.";
    NotFound = "NOT_FOUND", "404", "No such route or resource.";
    MethodNotAllowed = "METHOD_NOT_ALLOWED", "405", "The route does not serve this method.";
    EventNotFound = "EVENT_NOT_FOUND", "404, 400", "No such event (400 where the contract answers a business refusal).";
    SeatNotFound = "SEAT_NOT_FOUND", "400, 404", "A requested seat does not exist in the event, or the event has no seat map.";
    TicketTypeNotFound = "TICKET_TYPE_NOT_FOUND", "400, 404", "A ticket type does not exist or belongs to another event.";
    ReservationNotFound = "RESERVATION_NOT_FOUND", "400, 404", "No such reservation of the caller.";
    NewsNotFound = "NEWS_NOT_FOUND", "404", "No such news post.";
    AuthorNotFound = "AUTHOR_NOT_FOUND", "400", "The news author does not exist.";
    NotOnSale = "NOT_ON_SALE", "400", "The event is outside its sale window, cancelled or ended.";
    SeatTaken = "SEAT_TAKEN", "400", "Another buyer holds or bought a requested seat; pick other seats.";
    SoldOut = "SOLD_OUT", "400", "Not enough tickets of a type are left.";
    PerUserLimit = "PER_USER_LIMIT", "400", "The per-user cap of seats or tickets for this event would be exceeded.";
    AmountTooLarge = "AMOUNT_TOO_LARGE", "400", "The total amount does not fit the payment range.";
    HoldExpired = "HOLD_EXPIRED", "400", "The 5-minute hold ended before payment; the seats are released.";
    AlreadyPaid = "ALREADY_PAID", "400", "The reservation is already paid.";
    AlreadyCancelled = "ALREADY_CANCELLED", "400", "The reservation is already cancelled.";
    ReservationCancelled = "RESERVATION_CANCELLED", "400", "The reservation was cancelled; it cannot be paid.";
    InvalidStatusChange = "INVALID_STATUS_CHANGE", "400, 409", "The reservation lifecycle does not allow this status change (409: its seats or stock were sold meanwhile).";
    ReservationPaid = "RESERVATION_PAID", "400", "The reservation is paid: an admin may only cancel it (which refunds the payment), not set it back to pending or expired nor edit its payment status.";
    PaymentRequired = "PAYMENT_REQUIRED", "400", "Only a captured payment confirms a reservation: an admin cannot set `confirmed` or `completed`; the buyer pays through `POST /api/payments/process`.";
    PaymentFailed = "PAYMENT_FAILED", "502", "The payment provider declined the charge or could not be reached; nothing was confirmed. A charge it may have made is used by a retry or refunded by the recovery job.";
    Conflict = "CONFLICT", "400", "The change conflicts with sold seats or tickets (e.g. deleting a layout with reserved seats).";
    QueueNotAdmitted = "QUEUE_NOT_ADMITTED", "403", "The waiting room is closed for the caller; check in at `/api/queue/check/:eventId` and wait for your turn.";
    RateLimited = "RATE_LIMITED", "429", "Too many requests; retry after `Retry-After` seconds.";
    ServerBusy = "SERVER_BUSY", "503", "This replica is at its limit for this kind of work (e.g. password hashing); retry after `Retry-After` (a refused login or registration does not count toward its rate limit).";
    DbBusy = "DB_BUSY", "503", "The database pool is exhausted, the database unreachable, or the request's transaction was rolled back to end a deadlock or a serialization conflict (nothing of it happened); retry after `Retry-After`.";
    DbTimeout = "DB_TIMEOUT", "503", "A database statement ran past its timeout; retry after `Retry-After`.";
    RedisUnavailable = "REDIS_UNAVAILABLE", "503", "Redis is unreachable; retry after `Retry-After`.";
    QueueUnavailable = "QUEUE_UNAVAILABLE", "503", "The waiting room cannot be read (Redis unreachable) and this replica has no admission of the caller on record: a hold or booking is refused until it can be proven; retry after `Retry-After`.";
    Internal = "INTERNAL", "500", "An unexpected failure, logged with its cause.";
}

/// The markdown table of `docs/errors.md`.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | HTTP | meaning |\n|---|---|---|\n");
    for c in Code::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            c.as_str(),
            c.statuses(),
            c.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_screaming_snake() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(
                s.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'),
                "{s}"
            );
        }
    }

    /// `docs/errors.md` lists exactly these codes. `TIKETI_BLESS=1 cargo test -p tiketi-service
    /// codes_table` rewrites it.
    #[test]
    fn codes_table_matches_docs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let (head, _) = doc
            .split_once("| code | HTTP |")
            .unwrap_or((doc.as_str(), ""));
        let want = format!("{head}{}", markdown_table());
        if std::env::var_os("TIKETI_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        assert_eq!(
            doc, want,
            "docs/errors.md is stale: TIKETI_BLESS=1 cargo test -p tiketi-service codes_table"
        );
    }
}
