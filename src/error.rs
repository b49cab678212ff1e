//! The crate's one error type.
//!
//! Each module has its own error (catalog, eval) or a variant here; all convert into
//! [`Error`] with `?`. Every error says what failed, where (file, line, field when
//! there is one) and, where it helps, how to fix it. [`Error::is_user_error`] tells a
//! server whether the caller (4xx) or the system (5xx) is at fault.

use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::eval::EvalError;
use crate::profile::events::EventError;

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

    /// The index was written by a newer (or unknown) on-disk format.
    #[error("index {path} has format version {found}, this shelfrank reads version {supported}\nhint: rebuild the index with this version, or upgrade shelfrank")]
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

impl Error {
    /// True when the caller is at fault (bad request, bad input file, missing model
    /// or index they pointed at); false for I/O failures, corrupt data and backend
    /// errors. A server maps `true` to 4xx and `false` to 5xx.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Catalog(e) => e.is_caller_fault(),
            Error::Eval(e) => e.is_caller_fault(),
            Error::Events(e) => e.is_caller_fault(),
            Error::ModelNotFound { .. }
            | Error::InvalidModel { .. }
            | Error::ModelMismatch(_)
            | Error::Device { .. }
            | Error::IndexNotFound { .. }
            | Error::UnsupportedFormat { .. }
            | Error::InvalidArgument { .. }
            | Error::NoEncoder { .. } => true,
            Error::Io { .. }
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

/// Renders the `SOURCE[:LINE]: [field "FIELD": ]` prefix shared by the
/// line-oriented file errors (catalogs, events).
pub(crate) struct Location<'a> {
    pub source: &'a str,
    pub line: Option<usize>,
    pub field: Option<&'a str>,
}

impl std::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = self.field {
            write!(f, "field \"{field}\": ")?;
        }
        Ok(())
    }
}

/// Renders a `; hint: ...` suffix, or nothing.
pub(crate) struct Hint(pub Option<&'static str>);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(hint) => write!(f, "; hint: {hint}"),
            None => Ok(()),
        }
    }
}
