//! The crate's one error type, and the one located-error type of its file readers.
//!
//! Each module has its own error (catalog, events, eval, the CTR head) or a variant
//! here; all convert into [`Error`] with `?`. Every error says what failed, where
//! (file, line, field when there is one) and, where it helps, how to fix it.
//! [`Error::is_user_error`] tells a server whether the caller (4xx) or the system
//! (5xx) is at fault.
//!
//! The line-oriented readers (catalogs, events, evaluation files, impression and
//! candidate lists) all report a [`LocatedError`]: the source, the 1-based line, the
//! field, and a module-specific kind ([`ErrorKind`]).

use std::fmt;
use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::eval::EvalError;
use crate::profile::events::EventError;
use crate::rank::head::HeadError;
use crate::store::durable::IoFailure;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shelfrank.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A catalog file could not be read or has a bad line.
    #[error(transparent)]
    Catalog(Box<CatalogError>),

    /// A query, qrels or run file could not be read or written.
    #[error(transparent)]
    Eval(Box<EvalError>),

    /// An events file could not be read, or the event store failed.
    #[error(transparent)]
    Events(Box<EventError>),

    /// Training, loading or running the CTR head failed.
    #[error(transparent)]
    Head(Box<HeadError>),

    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The model directory is missing or incomplete.
    #[error("model not found: {path} has no {missing}\nhint: run scripts/fetch-model.sh to fetch the default model (all-MiniLM-L6-v2) into models/, or pass --model DIR with a Hugging Face BERT directory (config.json, tokenizer.json, model.safetensors)")]
    ModelNotFound {
        /// The model directory that was tried.
        path: PathBuf,
        /// The file that is missing.
        missing: String,
    },

    /// The model files exist but cannot be used.
    #[error("model {path}: {reason}")]
    InvalidModel {
        /// The model directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The index was built with another model than the one given to open it.
    #[error("{0}")]
    ModelMismatch(Box<ModelMismatch>),

    /// The requested device cannot be used.
    #[error("device {requested}: {reason}")]
    Device {
        /// The device as asked for (`cpu`, `cuda:0`, `auto`).
        requested: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The neural-network backend failed while encoding.
    #[error("encoder: {0}")]
    Encoder(String),

    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The index directory does not hold a shelfrank index.
    #[error("{path} is not a shelfrank index (no manifest.json)\nhint: build one with `shelfrank build --catalog FILE --index {path}`")]
    IndexNotFound {
        /// The directory.
        path: PathBuf,
    },

    /// The index was written in another on-disk format (older: rebuild it; a build
    /// over it keeps its events and head. Newer: upgrade shelfrank).
    #[error("index {path} has format version {found}, this shelfrank reads versions 2 to {supported}\nhint: rebuild the index with this version, or upgrade shelfrank")]
    UnsupportedFormat {
        /// The index directory.
        path: PathBuf,
        /// Version found in the manifest.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// A file of the index is truncated, corrupt or inconsistent with the manifest.
    #[error("index file {path} is corrupt: {reason}\nhint: rebuild the index")]
    CorruptIndex {
        /// The damaged file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// A part of precomputed embeddings (`shelfrank embed`, `build --embeddings`)
    /// is damaged, from another model, or does not cover the catalog.
    #[error("embeddings part {path}: {reason}")]
    Embeddings {
        /// The part's file (or directory) at fault.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// The keyword index (tantivy) failed.
    #[error("keyword index: {0}")]
    TextIndex(String),

    /// The vector index (HNSW) failed.
    #[error("vector index: {0}")]
    VectorIndex(String),

    /// A request or option has an invalid value.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The request field or option.
        what: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// The trained head failed to score candidates the engine featurised: a fault of
    /// the system (a feature it computed is not finite, say), not of the request.
    #[error("the CTR head could not score the candidates: {0}")]
    Scoring(Box<HeadError>),

    /// `rerank: ctr` (or an evaluation mode that needs the head) was asked for, but
    /// the index has no trained head.
    #[error("ranking with the CTR head needs a trained head, and {} has none\nhint: train one with `shelfrank train --index {} ...`; without a head, use rerank auto or profile (in eval, the modes hybrid or profile)", index.display(), index.display())]
    NoHead {
        /// The index directory.
        index: PathBuf,
    },

    /// A lock inside the engine was poisoned: another thread panicked while holding
    /// it. The engine should be reopened.
    #[error(
        "the engine's {what} lock was poisoned by a panic in another thread; reopen the index"
    )]
    Poisoned {
        /// Which lock.
        what: &'static str,
    },

    /// Another process holds the index's writer lock (see `store::lock`).
    #[error("index {} is being written by {holder}\nhint: wait for that process to finish (or pass --wait); searching needs no lock", index.display())]
    Locked {
        /// The index directory.
        index: PathBuf,
        /// Who holds the lock: PID, command line and since when, as it wrote them.
        holder: String,
    },

    /// The request needs an encoder but the engine was opened without one.
    #[error("{mode} search needs the text encoder, but this engine was opened keyword-only\nhint: open it with a model directory")]
    NoEncoder {
        /// The mode asked for.
        mode: String,
    },
}

/// The model given to open an index differs from the one it was built with.
#[derive(Debug, thiserror::Error)]
#[error("index {index} was built with model {built_name} (dim {built_dim}, sha256 {built_sha}), but the model given is {given_name} (dim {given_dim}, sha256 {given_sha})\nhint: open it with the model it was built with, or rebuild the index")]
pub struct ModelMismatch {
    /// The index directory.
    pub index: PathBuf,
    /// Model name recorded in the index.
    pub built_name: String,
    /// Dimension recorded in the index.
    pub built_dim: usize,
    /// Weights checksum recorded in the index (first 12 hex digits).
    pub built_sha: String,
    /// Name of the model given.
    pub given_name: String,
    /// Its dimension.
    pub given_dim: usize,
    /// Its weights checksum (first 12 hex digits).
    pub given_sha: String,
}

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        Error::Catalog(Box::new(e))
    }
}

impl From<EvalError> for Error {
    fn from(e: EvalError) -> Self {
        Error::Eval(Box::new(e))
    }
}

impl From<EventError> for Error {
    fn from(e: EventError) -> Self {
        Error::Events(Box::new(e))
    }
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Self {
        Error::Head(Box::new(e))
    }
}

impl From<IoFailure> for Error {
    /// Keeps the step that failed in the message ("cannot fsync: ...").
    fn from(e: IoFailure) -> Self {
        let source = std::io::Error::new(
            e.source.kind(),
            format!("cannot {}: {}", e.action, e.source),
        );
        Error::Io {
            path: e.path,
            source,
        }
    }
}

impl Error {
    /// True when the caller is at fault (bad request, bad input file, missing model
    /// or index they pointed at); false for I/O failures, corrupt data and backend
    /// errors. A server maps `true` to 4xx and `false` to 5xx.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Catalog(e) => e.is_caller_fault(),
            Error::Eval(e) => e.is_caller_fault(),
            Error::Events(e) => e.is_caller_fault(),
            Error::Head(e) => e.is_caller_fault(),
            Error::ModelNotFound { .. }
            | Error::InvalidModel { .. }
            | Error::ModelMismatch(_)
            | Error::Device { .. }
            | Error::IndexNotFound { .. }
            | Error::UnsupportedFormat { .. }
            | Error::InvalidArgument { .. }
            | Error::Embeddings { .. }
            | Error::NoHead { .. }
            | Error::NoEncoder { .. } => true,
            // A conflict with another writer (HTTP 409): retrying later succeeds.
            Error::Locked { .. } => true,
            Error::Io { .. }
            | Error::Poisoned { .. }
            | Error::Scoring(_)
            | Error::Encoder(_)
            | Error::Tokenizer(_)
            | Error::CorruptIndex { .. }
            | Error::TextIndex(_)
            | Error::VectorIndex(_) => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::CorruptIndex {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// What the kind of a [`LocatedError`] tells besides its message.
pub trait ErrorKind: fmt::Display + fmt::Debug {
    /// A suggestion for fixing this kind of error, if there is a useful one.
    fn hint(&self) -> Option<&'static str> {
        None
    }

    /// `true` when the input or the caller is at fault (a server answers 4xx);
    /// `false` for I/O failures and damaged stored data (5xx).
    fn is_caller_fault(&self) -> bool;
}

/// An error found in a file or an input stream, with its place.
///
/// Displays as `SOURCE[:LINE]: [field "FIELD": ]REASON[; hint: HINT]`, e.g.
/// `catalog.jsonl:12: field "price": must be a finite number >= 0, got -3`, so a
/// person can jump straight to the offending line. The parts stay available as
/// fields for callers that want to react to them.
#[derive(Debug)]
pub struct LocatedError<K> {
    /// The file path (as given) or the name the caller passed for in-memory input.
    pub source_name: String,
    /// The 1-based physical line the problem is on, when it is tied to a line.
    pub line: Option<usize>,
    /// The field (or column) concerned, when there is one.
    pub field: Option<Box<str>>,
    /// What went wrong.
    pub kind: K,
}

impl<K: ErrorKind> LocatedError<K> {
    /// Builds an error from its parts.
    pub fn new(
        source_name: impl Into<String>,
        line: Option<usize>,
        field: Option<String>,
        kind: K,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            line,
            field: field.map(String::into_boxed_str),
            kind,
        }
    }

    /// An error about a whole file or stream (no line, no field).
    pub fn whole(source_name: impl Into<String>, kind: K) -> Self {
        Self::new(source_name, None, None, kind)
    }

    /// An error about one line, and optionally one field, of a file.
    pub fn at(source_name: impl Into<String>, line: usize, field: Option<&str>, kind: K) -> Self {
        Self::new(source_name, Some(line), field.map(str::to_owned), kind)
    }

    /// The file path or source name the error was found in.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The 1-based physical line the problem is on, if it is tied to a line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The field concerned, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &K {
        &self.kind
    }

    /// `true` when the input or the caller is at fault (4xx), `false` for the
    /// system's faults (5xx).
    pub fn is_caller_fault(&self) -> bool {
        self.kind.is_caller_fault()
    }
}

impl<K: ErrorKind> fmt::Display for LocatedError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field \"{field}\": ")?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(hint) = self.kind.hint() {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl<K: ErrorKind> std::error::Error for LocatedError<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Bad;

    impl fmt::Display for Bad {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("is bad")
        }
    }

    impl ErrorKind for Bad {
        fn hint(&self) -> Option<&'static str> {
            Some("fix it")
        }
        fn is_caller_fault(&self) -> bool {
            true
        }
    }

    #[test]
    fn located_errors_name_source_line_and_field() {
        let e = LocatedError::at("f.jsonl", 12, Some("price"), Bad);
        assert_eq!(
            e.to_string(),
            "f.jsonl:12: field \"price\": is bad; hint: fix it"
        );
        assert_eq!(
            LocatedError::whole("f", Bad).to_string(),
            "f: is bad; hint: fix it"
        );
        assert!(e.is_caller_fault());
        assert_eq!((e.line(), e.field()), (Some(12), Some("price")));
    }

    #[test]
    fn poisoned_locks_are_the_systems_fault() {
        assert!(!Error::Poisoned {
            what: "event store"
        }
        .is_user_error());
        assert!(Error::NoHead { index: "i".into() }.is_user_error());
    }
}
