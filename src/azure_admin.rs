//! Azure container administration (create-if-missing) over a shared-key signed REST call.
