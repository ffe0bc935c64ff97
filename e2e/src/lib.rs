//! Tests only: see tests/ and run.sh.
