//! Save and restore through the binary against real emulators (Azurite, moto).
