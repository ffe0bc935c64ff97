//! Demo data for dev mode only: events around "now" in every sale state (seat maps and ticket types),
//! news, and a sales history for the operator's forecast. Runs once, on an empty events table.

use sqlx::PgPool;
use uuid::Uuid;

use crate::seats::db::insert_layout_seats;

struct Demo {
    title: &'static str,
    artist: Option<&'static str>,
    venue: &'static str,
    address: &'static str,
    /// sale window and event date relative to now, in hours
    sale_start_h: i32,
    sale_end_h: i32,
    event_h: i32,
    layout: Option<&'static str>,
    tickets: &'static [(&'static str, i32, i32)],
}

const DEMOS: &[Demo] = &[
    Demo {
        title: "아이유 콘서트 2026 - HER",
        artist: Some("IU"),
        venue: "올림픽공원 체조경기장",
        address: "서울특별시 송파구 올림픽로 424",
        sale_start_h: -1,
        sale_end_h: 24 * 14,
        event_h: 24 * 30,
        layout: Some("small_theater"),
        tickets: &[],
    },
    Demo {
        title: "BTS WORLD TOUR 2026 in SEOUL",
        artist: Some("BTS"),
        venue: "잠실종합운동장 주경기장",
        address: "서울특별시 송파구 올림픽로 25",
        sale_start_h: -2,
        sale_end_h: 24 * 10,
        event_h: 24 * 40,
        layout: Some("large_theater"),
        tickets: &[],
    },
    Demo {
        title: "뮤지컬 오페라의 유령",
        artist: None,
        venue: "블루스퀘어 신한카드홀",
        address: "서울특별시 용산구 이태원로 294",
        sale_start_h: -24,
        sale_end_h: 24 * 20,
        event_h: 24 * 25,
        layout: None,
        tickets: &[
            ("VIP석", 180_000, 80),
            ("R석", 120_000, 150),
            ("S석", 80_000, 200),
        ],
    },
    Demo {
        title: "10CM HOTEL ROOM TOUR 2026",
        artist: Some("10CM"),
        venue: "YES24 라이브홀",
        address: "서울특별시 광진구 구천면로 20",
        sale_start_h: -3,
        sale_end_h: 24 * 7,
        event_h: 24 * 21,
        layout: None,
        tickets: &[("스탠딩", 99_000, 300), ("지정석", 110_000, 200)],
    },
    Demo {
        title: "스포츠 경기 - 농구 결승전",
        artist: None,
        venue: "고척스카이돔",
        address: "서울특별시 구로구 경인로 430",
        sale_start_h: -5,
        sale_end_h: 24 * 5,
        event_h: 24 * 6,
        layout: Some("sports_stadium"),
        tickets: &[],
    },
    Demo {
        title: "싸이 흠뻑쇼 2026",
        artist: Some("PSY"),
        venue: "잠실종합운동장 주경기장",
        address: "서울특별시 송파구 올림픽로 25",
        sale_start_h: 48,
        sale_end_h: 24 * 9,
        event_h: 24 * 45,
        layout: Some("large_theater"),
        tickets: &[],
    },
    Demo {
        title: "NewJeans FAN MEETING 2026",
        artist: Some("NewJeans"),
        venue: "KSPO DOME",
        address: "서울특별시 송파구 올림픽로 424",
        sale_start_h: 1,
        sale_end_h: 24 * 3,
        event_h: 24 * 14,
        layout: Some("small_theater"),
        tickets: &[],
    },
    Demo {
        title: "2025 콘서트 투어 in 서울",
        artist: Some("IU"),
        venue: "올림픽공원 체조경기장",
        address: "서울특별시 송파구 올림픽로 424",
        sale_start_h: -24 * 60,
        sale_end_h: -24 * 40,
        event_h: -24 * 30,
        layout: Some("small_theater"),
        tickets: &[],
    },
];

pub async fn demo_data(db: &PgPool) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    // one seeder at a time across replicas; and only on an empty database
    sqlx::query("SELECT pg_advisory_xact_lock(7464)")
        .execute(&mut *tx)
        .await?;
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
        .fetch_one(&mut *tx)
        .await?;
    if any {
        return Ok(());
    }
    for d in DEMOS {
        let (id,): (Uuid,) = sqlx::query_as(
            "INSERT INTO events (title, description, venue, address, event_date, sale_start_date, sale_end_date,
                                 poster_image_url, artist_name, seat_layout_id, status)
             SELECT $1, $2, $3, $4, date_trunc('hour', now()) + make_interval(hours => $5),
                    date_trunc('hour', now()) + make_interval(hours => $6), date_trunc('hour', now()) + make_interval(hours => $7),
                    '/images/placeholder.svg', $8, (SELECT id FROM seat_layouts WHERE name = $9),
                    CASE WHEN $6 > 0 THEN 'upcoming' WHEN $7 > 0 THEN 'on_sale' ELSE 'ended' END
             RETURNING id",
        )
        .bind(d.title)
        .bind(format!("{} 데모 공연입니다.", d.title))
        .bind(d.venue)
        .bind(d.address)
        .bind(d.event_h)
        .bind(d.sale_start_h)
        .bind(d.sale_end_h)
        .bind(d.artist)
        .bind(d.layout)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(layout) = d.layout {
            let layout_id: Uuid = sqlx::query_scalar("SELECT id FROM seat_layouts WHERE name = $1")
                .bind(layout)
                .fetch_one(&mut *tx)
                .await?;
            insert_layout_seats(&mut tx, id, layout_id).await?;
        }
        for (name, price, qty) in d.tickets {
            sqlx::query(
                "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity, description)
                 VALUES ($1, $2, $3, $4, $4, $2 || ' 좌석')",
            )
            .bind(id)
            .bind(name)
            .bind(price)
            .bind(qty)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO news (title, content, author, views) VALUES
         ('TIKETI 서비스 정식 오픈!', 'TIKETI가 정식으로 오픈했습니다. 실시간 대기열과 좌석 선택을 경험해보세요.', '관리자', 125),
         ('연말 콘서트 티켓 오픈 안내', '연말 콘서트 티켓 예매가 곧 시작됩니다. 예매 일정을 확인해주세요.', '관리자', 89),
         ('티케티 모바일 앱 출시 예정', '더 편리한 예매를 위한 모바일 앱을 준비하고 있습니다.', '관리자', 45)",
    )
    .execute(&mut *tx)
    .await?;
    // a past sale's per-minute traffic, so the operator has a history to forecast IU and BTS from
    sqlx::query(
        "INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, replicas)
         SELECT a.sale, a.artist, date_trunc('minute', now()) - make_interval(days => a.days_ago) + make_interval(mins => m),
                (a.peak * (1 - abs(m - 30) / 40.0))::INT, (a.peak * 0.6 * (1 - abs(m - 30) / 30.0))::INT, 2
         FROM (VALUES (gen_random_uuid(), 'IU', 12000, 90), (gen_random_uuid(), 'IU', 18000, 200),
                      (gen_random_uuid(), 'BTS', 45000, 120)) a(sale, artist, peak, days_ago),
              generate_series(0, 59) m",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(events = DEMOS.len(), "demo data created");
    Ok(())
}
