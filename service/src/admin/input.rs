//! The admin event and ticket-type bodies, and their validation (the original validated nothing).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::refusal::Refusal;
use crate::body::Field;

/// An instant from the admin form: RFC 3339 with an offset, or a naive wall-clock time in `tz`.
pub fn parse_instant(s: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .and_then(|naive| tz.from_local_datetime(&naive).earliest())
    .map(|t| t.with_timezone(&Utc))
}

/// Event fields as given; `None` = not in the body, `Some(None)` = explicitly cleared.
#[derive(Debug, Default)]
pub struct EventInput {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub venue: Option<String>,
    pub address: Option<Option<String>>,
    pub event_date: Option<DateTime<Utc>>,
    pub sale_start: Option<DateTime<Utc>>,
    pub sale_end: Option<DateTime<Utc>>,
    pub poster_image_url: Option<Option<String>>,
    pub artist_name: Option<Option<String>>,
    pub seat_layout_id: Option<Uuid>,
    pub queue_threshold: Option<i32>,
}

/// `POST /api/admin/events` and `PUT /api/admin/events/:id` as sent (`ticketTypes` only on create).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventBody {
    #[serde(default)]
    #[schema(value_type = String)]
    pub title: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub description: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub venue: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub address: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub event_date: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub sale_start_date: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub sale_end_date: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub poster_image_url: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub artist_name: Field<String>,
    /// A UUID, or null/`""` for none.
    #[serde(default)]
    #[schema(value_type = String)]
    pub seat_layout_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = i64)]
    pub queue_threshold: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Vec<TicketTypeBody>)]
    pub ticket_types: Field<Vec<Field<TicketTypeBody>>>,
}

/// A ticket type of the admin form as sent; `price`/`totalQuantity` may be strings.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketTypeBody {
    #[serde(default)]
    #[schema(value_type = String)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = i64)]
    pub price: Field<i64>,
    #[serde(default)]
    #[schema(value_type = i64)]
    pub total_quantity: Field<i64>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub description: Field<String>,
}
crate::nested_body!(TicketTypeBody);

fn bad(msg: &'static str) -> Refusal {
    Refusal::Invalid(msg)
}

/// Absent: `None`; otherwise a non-blank string of at most `max` characters, trimmed.
fn required_text(
    f: &Field<String>,
    max: usize,
    msg: &'static str,
) -> Result<Option<String>, Refusal> {
    if f.absent() {
        return Ok(None);
    }
    let t = f
        .get()
        .map(|s| s.trim())
        .filter(|t| !t.is_empty() && t.chars().count() <= max);
    t.map(|t| Some(t.to_string())).ok_or_else(|| bad(msg))
}

/// Absent: `None`; null or blank: cleared (`Some(None)`); a string of at most `max` characters.
fn optional_text(
    f: &Field<String>,
    max: usize,
    msg: &'static str,
) -> Result<Option<Option<String>>, Refusal> {
    if f.absent() {
        return Ok(None);
    }
    if f.is_null() {
        return Ok(Some(None));
    }
    match f.get() {
        Some(s) if s.trim().is_empty() => Ok(Some(None)),
        Some(s) if s.chars().count() <= max => Ok(Some(Some(s.trim().to_string()))),
        _ => Err(bad(msg)),
    }
}

fn instant(
    f: &Field<String>,
    tz: chrono_tz::Tz,
    msg: &'static str,
) -> Result<Option<DateTime<Utc>>, Refusal> {
    if f.absent() {
        return Ok(None);
    }
    f.get()
        .and_then(|s| parse_instant(s, tz))
        .map(Some)
        .ok_or_else(|| bad(msg))
}

impl EventInput {
    pub fn parse(body: &EventBody, tz: chrono_tz::Tz) -> Result<Self, Refusal> {
        let layout = &body.seat_layout_id;
        let seat_layout_id = match layout.get() {
            _ if !layout.present() => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(
                tiketi_core::ids::parse_uuid(s)
                    .ok_or_else(|| bad("Invalid seatLayoutId format"))?,
            ),
            None => return Err(bad("Invalid seatLayoutId format")),
        };
        let queue_threshold = match body.queue_threshold.present() {
            false => None,
            true => Some(
                body.queue_threshold
                    .get()
                    .copied()
                    .filter(|n| (1..=10_000_000).contains(n))
                    .map(|n| n as i32)
                    .ok_or_else(|| bad("대기열 기준 인원은 1 이상이어야 합니다."))?,
            ),
        };
        Ok(Self {
            title: required_text(&body.title, 255, "제목을 입력해주세요. (255자 이하)")?,
            description: optional_text(&body.description, 20_000, "설명이 올바르지 않습니다.")?,
            venue: required_text(&body.venue, 255, "공연장을 입력해주세요. (255자 이하)")?,
            address: optional_text(&body.address, 1000, "주소가 올바르지 않습니다.")?,
            event_date: instant(&body.event_date, tz, "공연 일시가 올바르지 않습니다.")?,
            sale_start: instant(
                &body.sale_start_date,
                tz,
                "판매 시작 일시가 올바르지 않습니다.",
            )?,
            sale_end: instant(
                &body.sale_end_date,
                tz,
                "판매 종료 일시가 올바르지 않습니다.",
            )?,
            poster_image_url: optional_text(
                &body.poster_image_url,
                2000,
                "포스터 이미지 URL이 올바르지 않습니다.",
            )?,
            artist_name: optional_text(
                &body.artist_name,
                255,
                "아티스트 이름이 올바르지 않습니다. (255자 이하)",
            )?,
            seat_layout_id,
            queue_threshold,
        })
    }

    /// Every field a new event needs.
    pub fn require_complete(&self) -> Result<(), Refusal> {
        if self.title.is_none() {
            return Err(bad("제목을 입력해주세요. (255자 이하)"));
        }
        if self.venue.is_none() {
            return Err(bad("공연장을 입력해주세요. (255자 이하)"));
        }
        if self.event_date.is_none() || self.sale_start.is_none() || self.sale_end.is_none() {
            return Err(bad("공연 일시와 판매 기간을 입력해주세요."));
        }
        Ok(())
    }
}

pub fn check_window(sale_start: DateTime<Utc>, sale_end: DateTime<Utc>) -> Result<(), Refusal> {
    if sale_start >= sale_end {
        return Err(bad("판매 종료 일시는 판매 시작 일시보다 늦어야 합니다."));
    }
    Ok(())
}

/// A ticket type of the admin form, validated.
#[derive(Debug)]
pub struct TicketTypeInput {
    pub name: Option<String>,
    pub price: Option<i32>,
    pub total_quantity: Option<i32>,
    pub description: Option<Option<String>>,
}

impl TicketTypeInput {
    pub fn parse(v: &TicketTypeBody) -> Result<Self, Refusal> {
        let int = |f: &Field<i64>, msg: &'static str| -> Result<Option<i32>, Refusal> {
            if !f.present() {
                return Ok(None);
            }
            f.get()
                .copied()
                .filter(|n| (0..=1_000_000_000).contains(n))
                .map(|n| Some(n as i32))
                .ok_or_else(|| bad(msg))
        };
        Ok(Self {
            name: required_text(&v.name, 100, "티켓 이름을 입력해주세요. (100자 이하)")?,
            price: int(&v.price, "티켓 가격은 0 이상의 정수여야 합니다.")?,
            total_quantity: int(&v.total_quantity, "티켓 수량은 0 이상의 정수여야 합니다.")?,
            description: optional_text(&v.description, 2000, "티켓 설명이 올바르지 않습니다.")?,
        })
    }

    pub fn require_complete(&self) -> Result<(), Refusal> {
        if self.name.is_none() || self.price.is_none() || self.total_quantity.is_none() {
            return Err(bad("티켓 이름, 가격, 수량은 필수입니다."));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_naive_times_are_wall_clock_in_the_zone() {
        let tz: chrono_tz::Tz = "Asia/Seoul".parse().unwrap();
        let t = parse_instant("2024-12-31T19:00:00", tz).unwrap();
        assert_eq!(tiketi_core::time::to_wire(&t), "2024-12-31T10:00:00.000Z");
        assert_eq!(parse_instant("2024-12-31T19:00", tz), Some(t));
        assert_eq!(parse_instant("2024-12-31T10:00:00Z", tz), Some(t));
        assert_eq!(parse_instant("2024-12-31T19:00:00+09:00", tz), Some(t));
        assert!(parse_instant("31/12/2024", tz).is_none());
        assert!(parse_instant("2024-13-01T00:00", tz).is_none());
    }
}
