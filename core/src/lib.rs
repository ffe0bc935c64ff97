//! TIKETI shared rules with no IO: Redis key builders, wire-level formats and pure domain rules.
//! Both the service and the operator build on these, so a key or a format has exactly one definition.

pub mod email;
pub mod ids;
pub mod keys;
pub mod rules;
pub mod time;
pub mod wire;
