//! The one error type of the evaluation module, [`EvalError`].
//!
//! Every error names the file it concerns and, where it comes from one line of an input file, the
//! 1-based line number and the field (column) at fault, so a message reads like
//!
//! ```text
//! qrels.dev.txt:17: field "grade": expected an integer, got "x"
//! ```
//!
//! It is the crate's one [`LocatedError`](crate::error::LocatedError): the parts are public
//! fields (source, line, field, kind) so callers can match on them instead of parsing the
//! message, and `is_caller_fault` says whether the input (the caller) or the system is to blame,
//! so a server or CLI can map errors to 4xx/5xx or exit codes in one place.
//!
//! No metric formulas live here; see `metrics.rs` for those.

use std::io;
use std::path::Path;

/// An error while reading or writing an evaluation file (queries, qrels, personal tasks, TREC runs,
/// JSON reports), with the file, line and field at fault.
pub type EvalError = crate::error::LocatedError<EvalErrorKind>;

/// What went wrong, without the location (see [`EvalError`] for that).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read the file: {0}")]
    Read(io::Error),
    /// The file (or its temporary sibling) could not be created, written, synced or renamed.
    #[error("cannot write the file: {0}; hint: check that the directory exists and is writable")]
    Write(io::Error),
    /// The output path has no file name (e.g. `/` or `..`), so there is nothing to write to.
    #[error("the path has no file name; hint: pass a file path, not a directory")]
    NoFileName,
    /// A line is not valid UTF-8.
    #[error("the line is not valid UTF-8; hint: re-encode the file as UTF-8")]
    InvalidUtf8,
    /// A tab-separated line has no tab at all.
    #[error("expected {format} (tab-separated), found no tab")]
    MissingTab {
        /// The expected line layout, e.g. `` `qid<TAB>query text` ``.
        format: &'static str,
    },
    /// A line has the wrong number of columns.
    #[error("expected {expected} columns ({format}), found {found}")]
    ColumnCount {
        /// The expected line layout.
        format: &'static str,
        /// How many columns the format has.
        expected: usize,
        /// How many columns the line has.
        found: usize,
    },
    /// A field that must be an integer is not one.
    #[error("expected an integer, got {value:?}")]
    NotAnInteger {
        /// The text found in the field.
        value: String,
    },
    /// A field that must be a finite number is not one.
    #[error("expected a finite number, got {value:?}")]
    NotANumber {
        /// The text found in the field.
        value: String,
    },
    /// A timestamp field cannot be read (the message lists the accepted forms).
    #[error("{0}")]
    InvalidTimestamp(String),
    /// A JSON document cannot be parsed as what was expected.
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// The parser's message and what was expected.
        message: String,
    },
    /// A field that must not be empty is empty.
    #[error("must not be empty")]
    Empty,
    /// A value contains whitespace, which whitespace-separated formats (TREC qrels and runs)
    /// cannot represent.
    #[error("{value:?} contains whitespace, which the whitespace-separated TREC formats cannot represent")]
    ContainsWhitespace {
        /// The offending value.
        value: String,
    },
    /// The same query id appears on two lines.
    #[error("duplicate qid {qid:?} (first on line {first_line})")]
    DuplicateQid {
        /// The repeated query id.
        qid: String,
        /// The 1-based line where the query id first appeared.
        first_line: usize,
    },
    /// The same (query, document) pair is judged twice with different grades.
    #[error("conflicting grades for qid {qid:?} doc {doc:?}: {first} on line {first_line}, {second} here")]
    ConflictingGrade {
        /// The query id.
        qid: String,
        /// The document (product) id.
        doc: String,
        /// The grade on the first line.
        first: i32,
        /// The 1-based line of the first judgement.
        first_line: usize,
        /// The grade on this line.
        second: i32,
    },
    /// A run to be written lists the same query twice.
    #[error("query {qid:?} appears twice in the run; hint: merge its rankings first")]
    DuplicateRunQuery {
        /// The repeated query id.
        qid: String,
    },
    /// A ranking lists the same document twice (trec_eval rejects such runs).
    #[error("document {doc:?} appears twice in the ranking of query {qid:?}")]
    DuplicateDoc {
        /// The query id.
        qid: String,
        /// The repeated document id.
        doc: String,
    },
    /// A score is NaN or infinite.
    #[error("score {value} of document {doc:?} for query {qid:?} is not finite")]
    NonFiniteScore {
        /// The query id.
        qid: String,
        /// The document id.
        doc: String,
        /// The offending score.
        value: f64,
    },
    /// A reranking candidate breaks a rule of [`CandidateCheck`](crate::engine::CandidateCheck).
    #[error("{0}")]
    Candidate(crate::engine::CandidateProblem),
    /// A value could not be serialised to JSON.
    #[error("cannot serialise to JSON: {0}")]
    Json(serde_json::Error),
}

/// An error about the whole file (no line, no field).
pub(crate) fn file_error(path: &Path, kind: EvalErrorKind) -> EvalError {
    EvalError::whole(path.display().to_string(), kind)
}

/// An error about one line (and optionally one field) of a file.
pub(crate) fn line_error(
    path: &Path,
    line: usize,
    field: Option<&str>,
    kind: EvalErrorKind,
) -> EvalError {
    EvalError::at(path.display().to_string(), line, field, kind)
}

/// An error about one field of a value being written (no line: the output does not exist yet).
pub(crate) fn field_error(path: &Path, field: &str, kind: EvalErrorKind) -> EvalError {
    EvalError::new(
        path.display().to_string(),
        None,
        Some(field.to_owned()),
        kind,
    )
}

impl crate::error::ErrorKind for EvalErrorKind {
    /// Whether the caller is at fault (bad input data, a missing input file, a bad path or value)
    /// rather than the system (a full disk, an I/O failure). Servers map `true` to 4xx, `false`
    /// to 5xx.
    fn is_caller_fault(&self) -> bool {
        match self {
            EvalErrorKind::Read(e) | EvalErrorKind::Write(e) => matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::AlreadyExists
            ),
            EvalErrorKind::Json(_) => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_field() {
        let e = line_error(
            Path::new("qrels.dev.txt"),
            17,
            Some("grade"),
            EvalErrorKind::NotAnInteger { value: "x".into() },
        );
        assert_eq!(
            e.to_string(),
            r#"qrels.dev.txt:17: field "grade": expected an integer, got "x""#
        );
        assert!(e.is_caller_fault());
    }

    #[test]
    fn display_without_line_or_field() {
        let e = file_error(
            Path::new("out/run.trec"),
            EvalErrorKind::Write(io::Error::other("disk full")),
        );
        assert!(e
            .to_string()
            .starts_with("out/run.trec: cannot write the file: disk full"));
        assert!(!e.is_caller_fault());
    }
}
