//! Progress reporting. The library never prints: it reports to a [`Progress`] the caller
//! hands in, and the binary decides between a terminal bar and concise CI log lines.

/// Receives progress from long operations. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// A new phase starts (`"chunking"`, `"restoring"`), with the bytes it will process.
    fn phase(&self, name: &'static str, total_bytes: u64);
    /// `bytes` more were processed in the current phase.
    fn advance(&self, bytes: u64);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _name: &'static str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}
