//! Tests only: see tests/ and run.sh. The library holds what both test targets share (`cluster`).

pub mod cluster;
