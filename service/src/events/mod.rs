//! Public event listing, search and detail, and ticket-type availability.

pub mod db;
pub mod http;
