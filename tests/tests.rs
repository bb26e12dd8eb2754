//! Integration tests: one binary, one module per area.

#[path = "../fixtures/gradle.rs"]
mod gradle;
mod support;
mod util;

mod analyze;
mod auto_cache;
mod aws_roles;
mod azure_ad;
mod azure_admin;
mod conformance;
mod endpoints;
mod faults;
mod first_hour;
mod gc;
mod gcs;
mod hostile;
mod keys;
mod kill;
mod packs;
mod plugin;
mod plugin_gc;
mod plugin_settings;
mod read_only;
mod remote;
mod restore_dry_run;
mod save_dry_run;
mod save_restore;
mod stats;
mod template_diff;
mod verify;
