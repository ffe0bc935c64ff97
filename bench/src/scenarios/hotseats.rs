//! hotseats: an opening. One event with a large seat map; 90 % of the buyers click a hot 3 % of
//! the seats, rank-weighted (zipf: the k-th hottest seat draws ∝ 1/k on top of a floor of
//! `MIN_RACERS` buyers), the rest click distinct cold seats. Distinct users, admitted (the waiting
//! room is off), `concurrency` holds in flight in shuffled order. Every request must be answered
//! 201 (won) or with the contract's 400 `SEAT_TAKEN` (lost); every seat clicked must have exactly
//! one winner in the answers, and PostgreSQL must show that winner's live reservation and no other.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use rand::{Rng, seq::SliceRandom};
use uuid::Uuid;

use super::holds::storm;
use crate::{
    Ctx, fixtures,
    report::Figure,
    servers::{CpuSplit, Kind, Stack},
    stats::Latencies,
};

/// Share of the requests that go to hot seats.
const HOT_SHARE: f64 = 0.9;
/// Share of the seat map that is hot.
const HOT_SEATS: f64 = 0.03;
/// Fewest buyers per hot seat.
const MIN_RACERS: usize = 10;
/// The code of the contract's "seat already taken" answer.
const TAKEN: &str = "SEAT_TAKEN";

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let (n, size) = (ctx.args.hot_holds, ctx.args.hot_map_seats);
    anyhow::ensure!(
        n >= 100 && size >= 100,
        "hotseats needs at least 100 holds and 100 seats"
    );
    let picks = clicks(size, n, &mut rand::rng());
    let (hot, hot_holds) = (
        picks.hot_racers.len(),
        picks.hot_racers.iter().sum::<usize>(),
    );
    let n = picks.targets.len();
    println!(
        "\n== hotseats: {n} holds on a {size}-seat map: {hot_holds} on {hot} hot seats ({}–{} buyers each), {} on distinct cold seats",
        picks.hot_racers[hot - 1],
        picks.hot_racers[0],
        n - hot_holds,
    );
    let (event, seats) = fixtures::seat_event(&ctx.db, "hotseats", size, 1_000_000).await?;
    let users = fixtures::users(&ctx.db, "hotseat", n).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let stack = Stack::start(Kind::Tiketi, &ctx.env, 1, ctx.args.port).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ctx.args.concurrency)
        .build()?;
    let url = format!("{}/api/seats/reserve", stack.base_url());

    let cpu_before = CpuSplit::now(&stack.pids());
    let started = std::time::Instant::now();
    let clicks = picks.targets.iter().map(|&s| seats[s]);
    let answers = storm(
        &http,
        &url,
        event,
        tokens.iter().map(String::as_str).zip(clicks),
        ctx.args.concurrency,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = CpuSplit::now(&stack.pids()).since(cpu_before);
    stack.stop().await;

    let (mut all, mut won_lat, mut lost_lat) = (
        Latencies::default(),
        Latencies::default(),
        Latencies::default(),
    );
    let mut won = Vec::new();
    let (mut lost, mut server_errors) = (0usize, 0usize);
    let mut other = std::collections::BTreeMap::<String, usize>::new();
    for (i, a) in answers.iter().enumerate() {
        let seat = seats[picks.targets[i]];
        match (a.status, a.code.as_deref()) {
            (201, _) => {
                won.push((seat, users[i]));
                won_lat.record(a.took);
                all.record(a.took);
            }
            (400, Some(TAKEN)) => {
                lost += 1;
                lost_lat.record(a.took);
                all.record(a.took);
            }
            (status, code) => {
                server_errors += usize::from(status >= 500);
                *other
                    .entry(format!("{status} {}", code.unwrap_or("-")))
                    .or_default() += 1;
            }
        }
    }
    let answered = won.len() + lost;
    let unanswered = n - answered;
    let (lat, won_s, lost_s) = (all.summary(), won_lat.summary(), lost_lat.summary());
    println!(
        "   {answered} of {n} answered in {secs:.2} s ({:.0}/s): {} won ({:.0}/s), {lost} lost; p50 {:.1} ms p99 {:.1} ms (won p99 {:.1}, lost p99 {:.1}); other answers {other:?}",
        answered as f64 / secs,
        won.len(),
        won.len() as f64 / secs,
        lat.p50_ms,
        lat.p99_ms,
        won_s.p99_ms,
        lost_s.p99_ms,
    );

    let clicked: HashSet<Uuid> = picks.targets.iter().map(|&s| seats[s]).collect();
    let live: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT i.seat_id, r.user_id FROM reservations r
         JOIN reservation_items i ON i.reservation_id = r.id
         WHERE r.event_id = $1 AND r.status IN ('pending', 'confirmed')",
    )
    .bind(event)
    .fetch_all(&ctx.db)
    .await?;
    let not_available: HashMap<Uuid, String> = sqlx::query_as(
        "SELECT id, status FROM seats WHERE event_id = $1 AND status <> 'available'",
    )
    .bind(event)
    .fetch_all(&ctx.db)
    .await?
    .into_iter()
    .collect();
    let wrong = wrong_seats(&clicked, &won, &live, &not_available);
    println!(
        "   {} seats clicked: {} without exactly one 201, {} wrong in PostgreSQL; {server_errors} 5xx",
        clicked.len(),
        wrong.answers,
        wrong.db
    );

    let s = "hotseats";
    ctx.report.add(
        Figure::new(s, &format!("5xx answers (of {n})"), "")
            .tiketi(server_errors as f64)
            .check("none", server_errors == 0),
    );
    ctx.report.add(
        Figure::new(
            s,
            &format!("requests not answered 201 or 400 {TAKEN} (of {n})"),
            "",
        )
        .tiketi(unanswered as f64)
        .check("none: every request answered", unanswered == 0),
    );
    ctx.report.add(
        Figure::new(
            s,
            &format!(
                "answered holds (won + lost), {} in flight",
                ctx.args.concurrency
            ),
            "/s",
        )
        .tiketi(answered as f64 / secs)
        .higher_is_better()
        .target("≥ 5,000/s", 5000.0),
    );
    ctx.report.add(
        Figure::new(
            s,
            &format!("won holds (201, {} seats)", clicked.len()),
            "/s",
        )
        .tiketi(won.len() as f64 / secs)
        .higher_is_better(),
    );
    ctx.report
        .add(Figure::new(s, "answer latency p50", "ms").tiketi(lat.p50_ms));
    ctx.report.add(
        Figure::new(s, "answer latency p99", "ms")
            .tiketi(lat.p99_ms)
            .target("≤ 100 ms", 100.0),
    );
    ctx.report.add_cpu_per_op(s, "answered hold", cpu, answered);
    ctx.report.add(
        Figure::new(
            s,
            &format!(
                "seats with ≠ 1 winner (of {} clicked, {hot} hot), answers and PostgreSQL",
                clicked.len()
            ),
            "",
        )
        .tiketi((wrong.answers + wrong.db) as f64)
        .check(
            "exactly one winner per seat, whose reservation PostgreSQL holds",
            wrong.answers == 0 && wrong.db == 0,
        ),
    );
    Ok(())
}

/// Who clicks what.
#[derive(Debug)]
struct Clicks {
    /// Buyers of each hot seat, hottest first.
    hot_racers: Vec<usize>,
    /// The seat (index into the map) buyer i clicks; buyers send in this order.
    targets: Vec<usize>,
}

/// `requests` clicks on a map of `seats`: `HOT_SHARE` of them on the hottest `HOT_SEATS` of the
/// seats (fewer hot seats if each would otherwise get under `MIN_RACERS` buyers), the rest on
/// distinct cold seats, shuffled.
fn clicks(seats: usize, requests: usize, rng: &mut impl Rng) -> Clicks {
    let hot_requests = (requests as f64 * HOT_SHARE).round() as usize;
    let hot = ((seats as f64 * HOT_SEATS).ceil() as usize)
        .min(hot_requests / MIN_RACERS)
        .max(1);
    let cold = (requests - hot_requests).min(seats - hot);
    let mut order: Vec<usize> = (0..seats).collect();
    order.shuffle(rng);
    let hot_racers = racers(hot, hot_requests);
    let mut targets: Vec<usize> = hot_racers
        .iter()
        .zip(&order)
        .flat_map(|(&n, &seat)| std::iter::repeat_n(seat, n))
        .chain(order[hot..hot + cold].iter().copied())
        .collect();
    targets.shuffle(rng);
    Clicks {
        hot_racers,
        targets,
    }
}

/// Buyers per hot seat, hottest first: `MIN_RACERS` each, the rest shared ∝ 1/rank; they add up to
/// `requests` (at least `MIN_RACERS` × `hot`).
fn racers(hot: usize, requests: usize) -> Vec<usize> {
    let extra = requests.saturating_sub(hot * MIN_RACERS);
    let harmonic: f64 = (1..=hot).map(|k| 1.0 / k as f64).sum();
    let mut racers: Vec<usize> = (1..=hot)
        .map(|k| MIN_RACERS + (extra as f64 / k as f64 / harmonic).floor() as usize)
        .collect();
    // the floors leave fewer than `hot` over: one more each for the hottest
    let left = requests.saturating_sub(racers.iter().sum());
    for r in racers.iter_mut().take(left) {
        *r += 1;
    }
    racers
}

#[derive(Debug, PartialEq, Eq)]
struct Wrong {
    /// Clicked seats without exactly one 201.
    answers: usize,
    /// Seats whose PostgreSQL state is not: the one winner's live reservation and `locked` for a
    /// clicked seat, no live reservation and `available` for any other.
    db: usize,
}

/// Checks the winners (`won`: seat, buyer answered 201) against PostgreSQL (`live`: seat, user of
/// every live reservation of the event; `not_available`: status of each seat not available).
fn wrong_seats(
    clicked: &HashSet<Uuid>,
    won: &[(Uuid, Uuid)],
    live: &[(Uuid, Uuid)],
    not_available: &HashMap<Uuid, String>,
) -> Wrong {
    let group = |pairs: &[(Uuid, Uuid)]| {
        let mut by_seat = HashMap::<Uuid, Vec<Uuid>>::new();
        for (seat, user) in pairs {
            by_seat.entry(*seat).or_default().push(*user);
        }
        by_seat
    };
    let (winners, holders) = (group(won), group(live));
    let one = |m: &HashMap<Uuid, Vec<Uuid>>, s: &Uuid| match m.get(s).map(Vec::as_slice) {
        Some([u]) => Some(*u),
        _ => None,
    };
    let answers = clicked
        .iter()
        .filter(|s| one(&winners, s).is_none())
        .count();
    let seats: HashSet<&Uuid> = clicked
        .iter()
        .chain(holders.keys())
        .chain(not_available.keys())
        .collect();
    let db = seats
        .into_iter()
        .filter(|s| {
            let right = if clicked.contains(s) {
                let holder = one(&holders, s);
                holder.is_some()
                    && one(&winners, s).is_none_or(|w| Some(w) == holder)
                    && not_available.get(s).is_some_and(|st| st == "locked")
            } else {
                !holders.contains_key(s) && !not_available.contains_key(s)
            };
            !right
        })
        .count();
    Wrong { answers, db }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_seats_get_at_least_ten_buyers_zipf_above_it_and_all_requests_are_placed() {
        let r = racers(600, 18_000);
        assert_eq!(r.iter().sum::<usize>(), 18_000);
        assert!(r.iter().all(|&n| n >= MIN_RACERS), "{r:?}");
        assert!(r.windows(2).all(|w| w[0] >= w[1]), "hottest first");
        // 12,000 above the floor ∝ 1/k: the hottest draws ≈ 12,000 / H(600) ≈ 1,720 of them
        assert!((1_725..1_735).contains(&r[0]), "{}", r[0]);
        assert!(r[1] - MIN_RACERS < (r[0] - MIN_RACERS) / 2 + 2, "{r:?}");
        assert_eq!(racers(3, 30), vec![10, 10, 10]);
    }

    #[test]
    fn nine_in_ten_clicks_land_on_three_percent_of_the_map() {
        let p = clicks(20_000, 20_000, &mut rand::rng());
        assert_eq!(p.targets.len(), 20_000);
        assert_eq!(p.hot_racers.len(), 600);
        let mut per_seat = HashMap::<usize, usize>::new();
        for &s in &p.targets {
            *per_seat.entry(s).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_seat.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(counts[..600], p.hot_racers[..], "hot seats as planned");
        assert!(counts[600..].iter().all(|&c| c == 1), "cold seats distinct");
        assert_eq!(counts.len() - 600, 2_000);
        // a small run keeps the floor by making fewer seats hot
        let small = clicks(20_000, 200, &mut rand::rng());
        assert_eq!(small.hot_racers, vec![10; 18]);
        assert_eq!(small.targets.len(), 200);
    }

    #[test]
    fn a_seat_is_right_only_with_one_winner_whose_reservation_postgresql_holds() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let clicked = HashSet::from([a, b]);
        let locked = |seats: &[Uuid]| {
            seats
                .iter()
                .map(|s| (*s, "locked".to_string()))
                .collect::<HashMap<_, _>>()
        };
        let ok = Wrong { answers: 0, db: 0 };
        assert_eq!(
            wrong_seats(
                &clicked,
                &[(a, u), (b, v)],
                &[(a, u), (b, v)],
                &locked(&[a, b])
            ),
            ok
        );
        // two winners of a
        let w = wrong_seats(
            &clicked,
            &[(a, u), (a, v), (b, v)],
            &[(a, u), (b, v)],
            &locked(&[a, b]),
        );
        assert_eq!(w, Wrong { answers: 1, db: 0 });
        // no winner of b, and PostgreSQL agrees
        let w = wrong_seats(&clicked, &[(a, u)], &[(a, u)], &locked(&[a]));
        assert_eq!(w, Wrong { answers: 1, db: 1 });
        // PostgreSQL holds a for someone else, or twice, or b is left available
        for (live, seats) in [
            (vec![(a, v), (b, v)], locked(&[a, b])),
            (vec![(a, u), (a, v), (b, v)], locked(&[a, b])),
            (vec![(a, u), (b, v)], locked(&[a])),
        ] {
            let w = wrong_seats(&clicked, &[(a, u), (b, v)], &live, &seats);
            assert_eq!(w, Wrong { answers: 0, db: 1 }, "{live:?}");
        }
        // a seat nobody clicked is held or not available
        let c = Uuid::new_v4();
        let w = wrong_seats(
            &clicked,
            &[(a, u), (b, v)],
            &[(a, u), (b, v), (c, u)],
            &locked(&[a, b, c]),
        );
        assert_eq!(w, Wrong { answers: 0, db: 1 });
    }
}
