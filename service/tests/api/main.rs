//! HTTP API tests against real PostgreSQL and Redis (started by `make test`). One binary, one module
//! per feature; helpers in `common`.

mod admin;
mod audit;
mod auth;
mod capacity;
mod caps;
mod common;
mod events;
mod eviction;
mod fairness;
mod faults;
mod flood;
mod fuzz;
mod grouped_holds;
mod limits;
mod news;
mod overload;
mod payments;
mod platform;
mod pool;
mod queue;
mod readiness;
mod realtime;
mod redis_server;
mod replication;
mod reservations;
mod seats;
mod sio;
mod smoke;
mod uploads;
