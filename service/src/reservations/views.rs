//! The caller's reservations as `GET /api/reservations/my` and `/:id` show them: rows that serialize
//! to the contract's field names, read by `db.rs`; and `Stored`, the status every reservation view
//! (these, the payment page's and the admin's) shows as clients see it (`lifecycle::shown`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::lifecycle;

/// A reservation's stored `status`, `payment_status` and whether its hold time is over, read by a
/// view (`#[sqlx(flatten)]`); serializes as the `status`, `payment_status` and `status_reason`
/// clients see (`lifecycle::shown`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub status: String,
    pub payment_status: String,
    pub hold_over: bool,
}

impl Stored {
    fn shown(&self) -> (&str, &str, Option<&'static str>) {
        match lifecycle::Current::parse(&self.status, &self.payment_status, self.hold_over) {
            Some(now) => {
                let s = lifecycle::shown(now);
                (s.status.as_str(), s.payment.as_str(), s.reason)
            }
            None => (&self.status, &self.payment_status, None),
        }
    }
}

impl serde::Serialize for Stored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (status, payment, reason) = self.shown();
        let mut st = s.serialize_struct("Stored", 3)?;
        st.serialize_field("status", status)?;
        st.serialize_field("payment_status", payment)?;
        st.serialize_field("status_reason", &reason)?;
        st.end()
    }
}

/// `Stored` for views that show no payment status (the dashboard's recent reservations).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredStatus {
    #[sqlx(flatten)]
    pub stored: Stored,
}

impl serde::Serialize for StoredStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (status, _, reason) = self.stored.shown();
        let mut st = s.serialize_struct("StoredStatus", 2)?;
        st.serialize_field("status", status)?;
        st.serialize_field("status_reason", &reason)?;
        st.end()
    }
}

/// A line of a reservation: a ticket-type quantity or one seat.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The ticket type's name, or the seat's label for a seat.
    pub ticket_type_name: Option<String>,
    pub quantity: i32,
    pub unit_price: i32,
    pub subtotal: i32,
    /// Only the detail view shows where the seat is (both null for ticket items).
    #[serde(flatten)]
    pub seat: Option<SeatOfItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatOfItem {
    pub seat_label: Option<String>,
    pub section: Option<String>,
}

/// A reservation of the caller's list; event fields are null once the event is deleted.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    /// `status`, `payment_status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: Stored,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    pub event_title: Option<String>,
    pub venue: Option<String>,
    #[serde(with = "tiketi_core::time::wire_opt")]
    pub event_date: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    pub items: Vec<Item>,
}

/// One reservation of the caller, with where its event takes place.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Detail {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    /// `status`, `payment_status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: Stored,
    pub payment_method: Option<String>,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    pub event_id: Option<Uuid>,
    pub event_title: Option<String>,
    pub venue: Option<String>,
    #[serde(with = "tiketi_core::time::wire_opt")]
    pub event_date: Option<DateTime<Utc>>,
    pub address: Option<String>,
    #[sqlx(skip)]
    pub items: Vec<Item>,
}

/// The items of the reservations, in each one's order (oldest line first, then by seat and name).
async fn items_of(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    with_seat: bool,
) -> sqlx::Result<Vec<(Uuid, Item)>> {
    let rows = super::db::item_rows(db, ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let seat = with_seat.then_some(SeatOfItem {
                seat_label: r.seat_label,
                section: r.section,
            });
            let item = Item {
                ticket_type_name: r.ticket_type_name,
                quantity: r.quantity,
                unit_price: r.unit_price,
                subtotal: r.subtotal,
                seat,
            };
            (r.reservation_id, item)
        })
        .collect())
}

/// The user's 500 newest reservations, newest first, with their items.
pub async fn mine(db: &sqlx::PgPool, user: Uuid) -> sqlx::Result<Vec<Listed>> {
    let mut list = super::db::my_reservations(db, user).await?;
    let ids: Vec<Uuid> = list.iter().map(|r| r.id).collect();
    let mut items = std::collections::HashMap::<Uuid, Vec<Item>>::new();
    for (id, item) in items_of(db, &ids, false).await? {
        items.entry(id).or_default().push(item);
    }
    for r in &mut list {
        r.items = items.remove(&r.id).unwrap_or_default();
    }
    Ok(list)
}

/// The reservation if it is the user's.
pub async fn one(db: &sqlx::PgPool, user: Uuid, id: Uuid) -> sqlx::Result<Option<Detail>> {
    let found = super::db::my_reservation(db, user, id).await?;
    let Some(mut detail) = found else {
        return Ok(None);
    };
    detail.items = items_of(db, &[id], true)
        .await?
        .into_iter()
        .map(|(_, item)| item)
        .collect();
    Ok(Some(detail))
}
