pub mod failover;
pub mod herd;
pub mod holds;
pub mod hotseats;
pub mod queue;
pub mod realtime;
pub mod rest;
pub mod rooms;
