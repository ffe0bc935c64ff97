//! TIKETI operator: plans, pre-scales and follows ticket sales (`TicketEvent`).

pub mod plan;
