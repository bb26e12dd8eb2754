//! The Drone/Harness plugin step: settings and cache-key templates.
