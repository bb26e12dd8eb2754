//! The Drone/Harness plugin step, a drop-in for `meltwater/drone-cache`.
//!
//! - [`settings`] parses the step's `PLUGIN_*` environment variables into validated settings.
//! - [`template`] renders cache-key templates (Go `text/template` syntax) exactly as drone-cache does.
//! - [`auto`] detects the build tools of a workspace for `auto_cache: true`, their folders and key.
//!
//! They take an environment map and a working directory from the caller and never read the process environment
//! themselves.

pub mod auto;
pub mod settings;
pub mod step;
pub mod template;
