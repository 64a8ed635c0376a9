//! End-to-end tests live in `tests/e2e/*.rs`: they drive the real `emu` and `loadtest` binaries
//! (built by `cargo test --workspace` before any test runs) against each other.
