//! Progress of long work (index builds, training, evaluation), reported to whoever
//! runs it: the CLI draws bars, a server can log, a test passes [`Silent`].
//!
//! Work goes through named phases one after the other ("encoding", "hnsw",
//! "samples", "epochs" ...). Within a phase, [`Progress::set`] may be called from
//! several threads at once.

/// Receives progress reports.
pub trait Progress: Sync {
    /// A phase of `total` steps starts (`total` 0: not known in advance).
    fn start(&self, phase: &str, total: usize);
    /// `done` steps of the current phase are finished.
    fn set(&self, done: usize);
    /// A line worth showing to a person, such as an epoch's losses.
    fn message(&self, line: &str);
    /// The current phase is over.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _phase: &str, _total: usize) {}
    fn set(&self, _done: usize) {}
    fn message(&self, _line: &str) {}
    fn finish(&self) {}
}
