//! HTTP API tests against real PostgreSQL and Redis (started by `make test`). One binary, one module
//! per feature; helpers in `common`.

mod common;
mod queue;
mod smoke;
