//! Container creation against a real Azurite.
