//! Shared helpers for integration tests: temporary trees, the real binary, emulator servers.
