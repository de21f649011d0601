//! The Board trait and the shared vocabulary of the harness.
