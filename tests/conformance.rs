//! Storage conformance suite: the same checks on every backend.
