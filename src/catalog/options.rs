//! Runtime knobs for reading a catalog: file format, text encoding, column map and how to treat
//! bad lines.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use super::columns::ColumnMap;
use super::error::CatalogErrorKind;

/// The file format of a catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line (JSON Lines / NDJSON).
    Jsonl,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row. No quoting: as in the IANA
    /// `text/tab-separated-values` format, a `"` is an ordinary character (product titles are
    /// full of `12"` and `1/2"`), so fields cannot hold tabs or line breaks.
    Tsv,
}

impl Format {
    /// The format a file name's extension implies (case-insensitive): `.jsonl`, `.ndjson` and
    /// `.json` are [`Format::Jsonl`], `.csv` is [`Format::Csv`], `.tsv` and `.tab` are
    /// [`Format::Tsv`]. `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            _ => None,
        }
    }

    /// The format's canonical name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ParseOptionError;

    /// Parses `jsonl` (or `ndjson`, `json`), `csv` or `tsv`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            _ => Err(ParseOptionError {
                what: "catalog format",
                given: s.to_owned(),
                expected: "jsonl, csv, tsv",
            }),
        }
    }
}

/// The text encoding of a catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TextEncoding {
    /// UTF-8 (the default). Invalid bytes are an error naming the line.
    #[default]
    Utf8,
    /// Latin-1, decoded as Windows-1252 through `encoding_rs`: that is what browsers (and the
    /// WHATWG Encoding Standard) mean by "latin1"/"iso-8859-1", a superset of ISO-8859-1's
    /// printable characters. Every byte decodes, so this never fails.
    Latin1,
}

impl TextEncoding {
    /// Decodes one line or cell. For UTF-8 input that is not valid UTF-8, returns the offending
    /// byte and its 0-based offset.
    pub(super) fn decode<'a>(self, bytes: &'a [u8]) -> Result<Cow<'a, str>, (u8, usize)> {
        match self {
            TextEncoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Cow::Borrowed(s)),
                Err(e) => {
                    let at = e.valid_up_to();
                    Err((bytes.get(at).copied().unwrap_or(0), at))
                }
            },
            TextEncoding::Latin1 => Ok(encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0),
        }
    }

    /// Decodes like [`decode`](Self::decode), turning a failure into an error kind. When
    /// `column_offset` (the byte offset of `bytes` within its line) is given, the error carries
    /// the 1-based byte column of the bad byte.
    pub(super) fn decode_or_kind<'a>(
        self,
        bytes: &'a [u8],
        column_offset: Option<usize>,
    ) -> Result<Cow<'a, str>, CatalogErrorKind> {
        self.decode(bytes)
            .map_err(|(byte, at)| CatalogErrorKind::InvalidUtf8 {
                byte,
                column: column_offset.map(|offset| offset + at + 1),
            })
    }
}

impl FromStr for TextEncoding {
    type Err = ParseOptionError;

    /// Parses `utf8`/`utf-8` or `latin1`/`latin-1`/`iso-8859-1` (also `windows-1252`/`cp1252`,
    /// which is what is actually decoded), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Ok(TextEncoding::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" | "windows-1252" | "cp1252" => {
                Ok(TextEncoding::Latin1)
            }
            _ => Err(ParseOptionError {
                what: "text encoding",
                given: s.to_owned(),
                expected: "utf8, latin1",
            }),
        }
    }
}

/// A [`Format`] or [`TextEncoding`] name that is not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{given}\"; expected one of: {expected}")]
pub struct ParseOptionError {
    /// What was being parsed (`"catalog format"`).
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

/// The default for [`ReadOptions::max_reported`]: enough reasons to see a pattern without
/// flooding a terminal.
pub const DEFAULT_MAX_REPORTED: usize = 5;

/// How to read a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    /// The file format; `None` infers it from the file extension ([`Format::from_path`]).
    /// [`read_catalog_from`](super::read_catalog_from) needs it set.
    pub format: Option<Format>,
    /// The text encoding (default UTF-8).
    pub encoding: TextEncoding,
    /// Which CSV/TSV columns hold which fields (ignored for JSONL).
    pub columns: ColumnMap,
    /// Skip bad lines (counting them) instead of failing on the first one. I/O errors, a bad
    /// column map or header are fatal either way.
    pub skip_invalid: bool,
    /// How many skipped-line reasons to keep in [`Catalog::problems`](super::Catalog::problems)
    /// (default [`DEFAULT_MAX_REPORTED`]).
    pub max_reported: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: None,
            encoding: TextEncoding::Utf8,
            columns: ColumnMap::default(),
            skip_invalid: false,
            max_reported: DEFAULT_MAX_REPORTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_path_by_extension() {
        for (name, format) in [
            ("a.jsonl", Some(Format::Jsonl)),
            ("dir/a.NDJSON", Some(Format::Jsonl)),
            ("a.json", Some(Format::Jsonl)),
            ("a.csv", Some(Format::Csv)),
            ("a.tsv", Some(Format::Tsv)),
            ("a.tab", Some(Format::Tsv)),
            ("a.xml", None),
            ("noext", None),
        ] {
            assert_eq!(Format::from_path(Path::new(name)), format, "{name}");
        }
    }

    #[test]
    fn format_from_str() {
        assert_eq!("jsonl".parse::<Format>(), Ok(Format::Jsonl));
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert_eq!("tsv".parse::<Format>(), Ok(Format::Tsv));
        let err = "xml".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown catalog format \"xml\"; expected one of: jsonl, csv, tsv"
        );
        for f in [Format::Jsonl, Format::Csv, Format::Tsv] {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
    }

    #[test]
    fn encoding_from_str() {
        for s in ["utf8", "UTF-8"] {
            assert_eq!(s.parse::<TextEncoding>(), Ok(TextEncoding::Utf8));
        }
        for s in ["latin1", "Latin-1", "iso-8859-1", "cp1252"] {
            assert_eq!(s.parse::<TextEncoding>(), Ok(TextEncoding::Latin1));
        }
        let err = "ebcdic".parse::<TextEncoding>().unwrap_err();
        assert_eq!(err.given, "ebcdic");
        assert!(err.to_string().contains("utf8, latin1"));
    }

    #[test]
    fn latin1_decodes_windows_1252() {
        // 0xE9 = é, 0xB0 = °, 0x80 = € (Windows-1252 only).
        let text = TextEncoding::Latin1.decode(b"caf\xE9 90\xB0 \x80").unwrap();
        assert_eq!(text, "café 90° €");
        assert_eq!(
            TextEncoding::Utf8.decode(b"ab\xE9c").unwrap_err(),
            (0xE9, 2)
        );
    }

    #[test]
    fn read_options_default() {
        let o = ReadOptions::default();
        assert_eq!(o.format, None);
        assert_eq!(o.encoding, TextEncoding::Utf8);
        assert!(!o.skip_invalid);
        assert_eq!(o.max_reported, 5);
    }
}
