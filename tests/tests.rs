//! Integration tests: one binary, one module per area.

mod support;
mod util;

mod azure_admin;
mod conformance;
mod remote;
mod save_restore;
