//! Shared helpers for integration tests: temporary trees, the real binary, emulator servers.
//! - [`servers`]: Azurite and moto, started per test from `.tools/` (see `scripts/install-test-servers.sh`).

pub mod servers;
