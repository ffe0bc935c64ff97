pub mod holds;
pub mod queue;
pub mod realtime;
pub mod rest;
