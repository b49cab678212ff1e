//! Errors raised while reading and validating a catalog.
//!
//! Every error names where it happened (file or source name, 1-based physical line, field) and
//! what is wrong, in the shape `catalog.jsonl:12: field "price": must be a finite number >= 0,
//! got -3`, so a person can jump straight to the offending line. The structured parts stay
//! available as fields for callers that want to react to them.

/// The hint appended to every invalid UTF-8 error.
///
/// The original Home Depot product-search data set ships as Latin-1 (Windows-1252), which is the
/// most common reason a catalog fails to decode as UTF-8.
pub const LATIN1_HINT: &str = "the file is not UTF-8; if it is Latin-1 (like the original Home \
                               Depot data), pass --encoding latin1";

/// An error found while reading or validating a catalog, with the place it was found.
///
/// Displays as `SOURCE[:LINE]: [field "FIELD": ]REASON[; hint: HINT]`. The line is `None`
/// when there is none (opening the file failed, a bad column map, an empty catalog); the
/// field is the product field concerned (`"price"`, `"attributes.color"`).
pub type CatalogError = crate::error::LocatedError<CatalogErrorKind>;

/// The kinds of [`CatalogError`]. Each variant's `Display` is the reason part of the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogErrorKind {
    /// Opening or reading the input failed. Always fatal.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// A JSONL line is not valid JSON.
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// The parser's message, with the column of the problem.
        message: String,
    },
    /// A required field (`id`, `title`) is absent or null.
    #[error("is required but missing")]
    MissingField,
    /// A required text field is empty (or only whitespace), or a category segment or
    /// attribute key is empty.
    #[error("must not be empty")]
    EmptyField,
    /// A value has the wrong JSON type, or a cell cannot be read as the field's type.
    #[error("expected {expected}, got {found}")]
    WrongType {
        /// What the field accepts, e.g. `"a number"`.
        expected: &'static str,
        /// The offending value as it appeared in the input (shortened if long).
        found: String,
    },
    /// A price or popularity is negative, NaN or infinite.
    #[error("must be a finite number >= 0, got {value}")]
    InvalidNumber {
        /// The offending value.
        value: f64,
    },
    /// A product id holds a control character (tab, newline, carriage return, ...), which
    /// the tab-separated and TREC outputs cannot represent.
    #[error("{value:?} contains the control character {ch:?}; product ids must be printable text, since they appear in tab-separated and TREC output")]
    ControlCharacter {
        /// The offending id (shortened if long).
        value: String,
        /// The first control character in it.
        ch: char,
    },
    /// The same product id appears on an earlier line.
    #[error("duplicate id \"{id}\" (first seen on line {first_line})")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// The 1-based line (or position, for in-memory products) of the first occurrence.
        first_line: usize,
    },
    /// The line or cell is not valid UTF-8.
    #[error("invalid UTF-8 byte 0x{byte:02X}{}", column.map(|c| format!(" at byte {c} of the line")).unwrap_or_default())]
    InvalidUtf8 {
        /// The first byte that is not valid UTF-8.
        byte: u8,
        /// Its 1-based byte position within the line, when known (JSONL).
        column: Option<usize>,
    },
    /// A column the column map asks for (or a required field's default column) is not in the
    /// header.
    #[error("column \"{column}\" not found in the header; the header has: {}", available.join(", "))]
    UnknownColumn {
        /// The missing column.
        column: String,
        /// The header's columns, in order.
        available: Vec<String>,
    },
    /// A column the catalog needs appears more than once in the header, so it is ambiguous.
    #[error("column \"{column}\" appears more than once in the header")]
    DuplicateColumn {
        /// The repeated column name.
        column: String,
    },
    /// A CSV/TSV input has no header row.
    #[error("no header row; CSV and TSV catalogs need a first row naming the columns")]
    MissingHeader,
    /// A CSV/TSV row has a different number of fields than the header.
    #[error("row has {found} fields but the header has {expected}")]
    WrongFieldCount {
        /// The number of header columns.
        expected: usize,
        /// The number of fields in this row.
        found: usize,
    },
    /// The CSV parser rejected the input for another reason.
    #[error("malformed CSV: {message}")]
    Csv {
        /// The parser's message.
        message: String,
    },
    /// A column map string (`--columns`) could not be parsed. Always fatal.
    #[error("bad column map: {reason}")]
    BadColumnMap {
        /// What is wrong with it.
        reason: String,
    },
    /// No format was given and none could be inferred from the file extension.
    #[error("cannot tell the catalog format{}", match extension {
        Some(ext) => format!(" from the extension \".{ext}\""),
        None => " (no format given and no file extension)".to_string(),
    })]
    UnknownFormat {
        /// The file's extension, if it had one.
        extension: Option<String>,
    },
    /// The input holds no valid product.
    #[error("no valid products{}", match (skipped, first_problem) {
        (0, _) => String::new(),
        (n, Some(first)) => format!(" ({n} bad lines skipped; the first: {first})"),
        (n, None) => format!(" ({n} bad lines skipped)"),
    })]
    EmptyCatalog {
        /// How many lines were skipped as invalid.
        skipped: usize,
        /// Why the first skipped line was skipped.
        first_problem: Option<Box<CatalogError>>,
    },
}

impl crate::error::ErrorKind for CatalogErrorKind {
    /// `false` for I/O failures (the system's fault), `true` for everything else: the input
    /// data or the caller's options are at fault.
    fn is_caller_fault(&self) -> bool {
        !matches!(self, CatalogErrorKind::Io(_))
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::InvalidUtf8 { .. } => Some(LATIN1_HINT),
            Self::UnknownFormat { .. } => {
                Some("pass --format jsonl, csv or tsv, or use a .jsonl, .csv or .tsv file name")
            }
            Self::UnknownColumn { .. } => {
                Some("map fields to columns with --columns, e.g. \"id=sku,title=name\"")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_source_line_field_and_reason() {
        let err = CatalogError::new(
            "catalog.jsonl",
            Some(12),
            Some("price".into()),
            CatalogErrorKind::InvalidNumber { value: -3.0 },
        );
        assert_eq!(
            err.to_string(),
            "catalog.jsonl:12: field \"price\": must be a finite number >= 0, got -3"
        );
        assert_eq!(err.line(), Some(12));
        assert_eq!(err.field(), Some("price"));
        assert!(err.is_caller_fault());
    }

    #[test]
    fn invalid_utf8_display_has_hint() {
        let err = CatalogError::new(
            "x.jsonl",
            Some(3),
            None,
            CatalogErrorKind::InvalidUtf8 {
                byte: 0xE9,
                column: Some(7),
            },
        );
        let text = err.to_string();
        assert!(
            text.starts_with("x.jsonl:3: invalid UTF-8 byte 0xE9 at byte 7 of the line; hint: "),
            "{text}"
        );
        assert!(text.ends_with("pass --encoding latin1"), "{text}");
    }

    #[test]
    fn io_error_is_system_fault_and_has_no_line() {
        let err = CatalogError::new(
            "missing.jsonl",
            None,
            None,
            CatalogErrorKind::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not found",
            )),
        );
        assert!(!err.is_caller_fault());
        assert_eq!(err.to_string(), "missing.jsonl: cannot read: not found");
    }

    #[test]
    fn empty_catalog_display_names_first_problem() {
        let first = CatalogError::new(
            "c.jsonl",
            Some(1),
            Some("id".into()),
            CatalogErrorKind::MissingField,
        );
        let err = CatalogError::new(
            "c.jsonl",
            None,
            None,
            CatalogErrorKind::EmptyCatalog {
                skipped: 2,
                first_problem: Some(Box::new(first)),
            },
        );
        assert_eq!(
            err.to_string(),
            "c.jsonl: no valid products (2 bad lines skipped; the first: c.jsonl:1: field \"id\": \
             is required but missing)"
        );
    }
}
