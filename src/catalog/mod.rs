//! Reading and validating the product catalog.
//!
//! A catalog is a list of [`Product`]s read from JSONL (one JSON object per line), CSV or TSV
//! (a header row, then one product per row), in UTF-8 or Latin-1. Everything downstream (the
//! text index, the embeddings, the reranker) trusts what this module returns, so it checks every
//! product once, here, with the same rules ([`validate_product`]) whether a product came from a
//! file or was built in code: a non-empty id and title, unique ids, prices and popularity that
//! are finite and >= 0.
//!
//! Bad input is reported with the file, the 1-based physical line and the field, e.g.
//! `catalog.jsonl:12: field "price": must be a finite number >= 0, got -3`. By default the first
//! bad line is an error; with [`ReadOptions::skip_invalid`] bad lines are skipped, counted, and
//! the first few reasons kept in [`Catalog::problems`]. I/O errors and an unusable header or
//! column map are always fatal, and an input with no valid product is an
//! [`EmptyCatalog`](CatalogErrorKind::EmptyCatalog) error.
//!
//! Input is read as bytes and decoded one line (JSONL) or cell (CSV/TSV) at a time, so an
//! invalid UTF-8 byte is reported with its line number instead of failing the whole file. A
//! UTF-8 byte-order mark at the start and Windows (CRLF) line endings are accepted.
//!
//! ```
//! use shelfrank::catalog::{read_catalog_from, Format, ReadOptions};
//!
//! let data = r#"{"id": "100001", "title": "Angle bracket", "category": "Hardware > Connectors", "price": 0.79}
//! {"id": 100002, "title": "Deck screws", "price": -3}
//! "#;
//! let opts = ReadOptions {
//!     format: Some(Format::Jsonl),
//!     skip_invalid: true,
//!     ..ReadOptions::default()
//! };
//! let catalog = read_catalog_from(data.as_bytes(), "inline.jsonl", &opts)?;
//! assert_eq!(catalog.products[0].category, ["Hardware", "Connectors"]);
//! assert_eq!(catalog.skipped, 1);
//! assert_eq!(
//!     catalog.problems[0].to_string(),
//!     r#"inline.jsonl:2: field "price": must be a finite number >= 0, got -3"#
//! );
//! # Ok::<(), shelfrank::catalog::CatalogError>(())
//! ```

mod attributes;
mod columns;
mod delimited;
mod error;
mod jsonl;
mod options;
mod product;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

pub use attributes::Attributes;
pub use columns::{ColumnMap, ATTRIBUTE_PREFIX, MAPPABLE_FIELDS};
pub use error::{CatalogError, CatalogErrorKind, LATIN1_HINT};
pub use options::{Format, ParseOptionError, ReadOptions, TextEncoding, DEFAULT_MAX_REPORTED};
pub use product::{
    deserialize_id, id_control_char, parse_category_path, validate_product, FieldError, Product,
    CATEGORY_SEPARATOR,
};

/// The source name [`Catalog::from_products`] errors carry; their "line" is the 1-based
/// position in the vector.
const IN_MEMORY_SOURCE: &str = "products";

/// A validated catalog: its products in input order, and what was skipped.
#[derive(Debug)]
pub struct Catalog {
    /// The valid products, in input order, with unique ids.
    pub products: Vec<Product>,
    /// How many lines were skipped as invalid (only with [`ReadOptions::skip_invalid`]).
    pub skipped: usize,
    /// Why lines were skipped: the first [`ReadOptions::max_reported`] reasons, in line order.
    pub problems: Vec<CatalogError>,
}

impl Catalog {
    /// Validates products built in code with the same rules the readers apply (including
    /// unique ids). Errors name the product's 1-based position as the line and `"products"` as
    /// the source. An empty vector gives an empty catalog, not an error.
    pub fn from_products(products: Vec<Product>) -> Result<Self, CatalogError> {
        let opts = ReadOptions::default();
        let mut collector = Collector::new(IN_MEMORY_SOURCE, &opts);
        for (i, product) in products.into_iter().enumerate() {
            collector.push(i + 1, Ok(product))?;
        }
        Ok(collector.into_catalog())
    }

    /// The number of products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// `true` when the catalog has no product (only possible through
    /// [`from_products`](Self::from_products)).
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

/// Reads and validates the catalog at `path`. The format comes from [`ReadOptions::format`], or
/// from the file extension when that is `None` (see [`Format::from_path`]).
///
/// Errors name `path` as given. Opening the file fails with an [`Io`](CatalogErrorKind::Io)
/// error without a line; see [`read_catalog_from`] for the rest.
pub fn read_catalog(path: &Path, opts: &ReadOptions) -> Result<Catalog, CatalogError> {
    let source_name = path.display().to_string();
    let Some(format) = opts.format.or_else(|| Format::from_path(path)) else {
        let extension = path
            .extension()
            .map(|ext| ext.to_string_lossy().into_owned());
        return Err(CatalogError::new(
            source_name,
            None,
            None,
            CatalogErrorKind::UnknownFormat { extension },
        ));
    };
    let file = std::fs::File::open(path)
        .map_err(|e| CatalogError::new(&source_name, None, None, CatalogErrorKind::Io(e)))?;
    read_with_format(file, &source_name, format, opts)
}

/// Reads and validates a catalog from any reader; `source_name` is what errors call it.
/// `opts.format` must be set (an [`UnknownFormat`](CatalogErrorKind::UnknownFormat) error
/// otherwise).
///
/// Without [`ReadOptions::skip_invalid`], the first bad line is the error. With it, bad lines
/// are skipped and counted. Either way I/O errors and header or column-map problems are fatal,
/// and no valid product at all is an [`EmptyCatalog`](CatalogErrorKind::EmptyCatalog) error.
pub fn read_catalog_from(
    reader: impl Read,
    source_name: &str,
    opts: &ReadOptions,
) -> Result<Catalog, CatalogError> {
    let Some(format) = opts.format else {
        return Err(CatalogError::new(
            source_name,
            None,
            None,
            CatalogErrorKind::UnknownFormat { extension: None },
        ));
    };
    read_with_format(reader, source_name, format, opts)
}

/// Dispatches to the reader for `format`.
fn read_with_format(
    reader: impl Read,
    source_name: &str,
    format: Format,
    opts: &ReadOptions,
) -> Result<Catalog, CatalogError> {
    let reader = crate::lines::skip_bom(reader)
        .map_err(|e| CatalogError::new(source_name, Some(1), None, CatalogErrorKind::Io(e)))?;
    let mut collector = Collector::new(source_name, opts);
    match format {
        Format::Jsonl => jsonl::read(reader, opts.encoding, &mut collector)?,
        Format::Csv => delimited::read(reader, b',', true, opts, &mut collector)?,
        Format::Tsv => delimited::read(reader, b'\t', false, opts, &mut collector)?,
    }
    collector.finish()
}

/// Why one line or row could not become a product, before it is placed at a line.
#[derive(Debug)]
struct RowError {
    /// The field concerned, if any.
    field: Option<String>,
    /// What is wrong.
    kind: CatalogErrorKind,
}

impl RowError {
    /// A problem with one field.
    fn field(field: &str, kind: CatalogErrorKind) -> Self {
        Self {
            field: Some(field.to_owned()),
            kind,
        }
    }

    /// A problem with the line as a whole.
    fn line(kind: CatalogErrorKind) -> Self {
        Self { field: None, kind }
    }
}

impl From<FieldError> for RowError {
    fn from(e: FieldError) -> Self {
        Self {
            field: Some(e.field),
            kind: e.kind,
        }
    }
}

/// The rule every product of a catalog obeys: valid fields ([`validate_product`]) and
/// an id not seen before (`first_seen` maps ids to the line they were first seen on).
fn check_new(first_seen: &HashMap<String, usize>, product: &Product) -> Result<(), RowError> {
    validate_product(product)?;
    if let Some(&first_line) = first_seen.get(&product.id) {
        return Err(RowError::field(
            "id",
            CatalogErrorKind::DuplicateId {
                id: product.id.clone(),
                first_line,
            },
        ));
    }
    Ok(())
}

/// Checks products built in code without taking them: the same rules as the readers
/// and [`Catalog::from_products`], and at least one product. Errors name the
/// product's 1-based position as the line and `"products"` as the source.
pub fn check_products(products: &[Product]) -> Result<(), CatalogError> {
    if products.is_empty() {
        return Err(CatalogError::whole(
            IN_MEMORY_SOURCE,
            CatalogErrorKind::EmptyCatalog {
                skipped: 0,
                first_problem: None,
            },
        ));
    }
    let mut first_seen = HashMap::with_capacity(products.len());
    for (i, product) in products.iter().enumerate() {
        check_new(&first_seen, product)
            .map_err(|e| CatalogError::new(IN_MEMORY_SOURCE, Some(i + 1), e.field, e.kind))?;
        first_seen.insert(product.id.clone(), i + 1);
    }
    Ok(())
}

/// Collects products from a reader: validates them, checks ids are unique, and applies the
/// skip-or-fail policy to bad lines.
struct Collector<'a> {
    source_name: &'a str,
    skip_invalid: bool,
    max_reported: usize,
    products: Vec<Product>,
    /// The line each id was first seen on.
    first_seen: HashMap<String, usize>,
    skipped: usize,
    problems: Vec<CatalogError>,
    /// The first problem, kept for the [`CatalogErrorKind::EmptyCatalog`] message when
    /// `max_reported` is 0.
    first_problem: Option<CatalogError>,
}

impl<'a> Collector<'a> {
    fn new(source_name: &'a str, opts: &ReadOptions) -> Self {
        Self {
            source_name,
            skip_invalid: opts.skip_invalid,
            max_reported: opts.max_reported,
            products: Vec::new(),
            first_seen: HashMap::new(),
            skipped: 0,
            problems: Vec::new(),
            first_problem: None,
        }
    }

    /// The source name errors carry.
    fn source_name(&self) -> &'a str {
        self.source_name
    }

    /// Takes the outcome of parsing line `line`: validates and keeps the product, or rejects
    /// the line. Returns `Err` when the line must stop the read.
    fn push(&mut self, line: usize, row: Result<Product, RowError>) -> Result<(), CatalogError> {
        let checked = row.and_then(|product| {
            check_new(&self.first_seen, &product)?;
            Ok(product)
        });
        match checked {
            Ok(product) => {
                self.first_seen.insert(product.id.clone(), line);
                self.products.push(product);
                Ok(())
            }
            Err(e) => self.reject(CatalogError::new(
                self.source_name,
                Some(line),
                e.field,
                e.kind,
            )),
        }
    }

    /// Skips a bad line (recording why) or, when not skipping, returns it as the error.
    fn reject(&mut self, err: CatalogError) -> Result<(), CatalogError> {
        if !self.skip_invalid || matches!(err.kind, CatalogErrorKind::Io(_)) {
            return Err(err);
        }
        self.skipped += 1;
        if self.problems.len() < self.max_reported {
            self.problems.push(err);
        } else if self.problems.is_empty() && self.first_problem.is_none() {
            self.first_problem = Some(err);
        }
        Ok(())
    }

    /// The catalog read so far, which may be empty.
    fn into_catalog(self) -> Catalog {
        Catalog {
            products: self.products,
            skipped: self.skipped,
            problems: self.problems,
        }
    }

    /// The catalog read, or [`CatalogErrorKind::EmptyCatalog`] if it has no product.
    fn finish(self) -> Result<Catalog, CatalogError> {
        if !self.products.is_empty() {
            return Ok(self.into_catalog());
        }
        let first_problem = self
            .problems
            .into_iter()
            .next()
            .or(self.first_problem)
            .map(Box::new);
        Err(CatalogError::new(
            self.source_name,
            None,
            None,
            CatalogErrorKind::EmptyCatalog {
                skipped: self.skipped,
                first_problem,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn jsonl_opts() -> ReadOptions {
        ReadOptions {
            format: Some(Format::Jsonl),
            ..ReadOptions::default()
        }
    }

    #[test]
    fn read_catalog_infers_format_from_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("products.csv");
        std::fs::write(&path, "id,title\n1,Hammer\n").unwrap();
        let catalog = read_catalog(&path, &ReadOptions::default()).unwrap();
        assert_eq!(catalog.products, vec![Product::new("1", "Hammer")]);

        let path = dir.path().join("products.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, r#"{{"id": "1", "title": "Hammer"}}"#).unwrap();
        drop(f);
        let catalog = read_catalog(&path, &ReadOptions::default()).unwrap();
        assert_eq!(catalog.len(), 1);
    }

    #[test]
    fn read_catalog_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(
            &path,
            "{\"id\": \"1\", \"title\": \"ok\"}\n{\"id\": \"2\"}\n",
        )
        .unwrap();
        let err = read_catalog(&path, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.source_name(), path.display().to_string());
        assert_eq!(err.line(), Some(2));
        assert_eq!(err.field(), Some("title"));
        assert!(matches!(err.kind(), CatalogErrorKind::MissingField));
        assert!(err
            .to_string()
            .ends_with("bad.jsonl:2: field \"title\": is required but missing"));
    }

    #[test]
    fn missing_file_is_io_error_without_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.jsonl");
        let err = read_catalog(&path, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.line(), None);
        assert!(
            matches!(err.kind(), CatalogErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(!err.is_caller_fault());
    }

    #[test]
    fn unknown_extension_without_format_is_unknown_format() {
        let err = read_catalog(Path::new("catalog.xml"), &ReadOptions::default()).unwrap_err();
        assert!(matches!(
            err.kind(),
            CatalogErrorKind::UnknownFormat { extension: Some(e) } if e == "xml"
        ));
        assert!(err.to_string().contains("hint: pass --format"), "{err}");
    }

    #[test]
    fn explicit_format_overrides_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("products.txt");
        std::fs::write(&path, "id\ttitle\n7\tSaw\n").unwrap();
        let opts = ReadOptions {
            format: Some(Format::Tsv),
            ..ReadOptions::default()
        };
        assert_eq!(read_catalog(&path, &opts).unwrap().products[0].id, "7");
    }

    #[test]
    fn read_catalog_from_needs_a_format() {
        let err = read_catalog_from(&b""[..], "stdin", &ReadOptions::default()).unwrap_err();
        assert!(matches!(
            err.kind(),
            CatalogErrorKind::UnknownFormat { extension: None }
        ));
    }

    #[test]
    fn empty_input_is_empty_catalog() {
        for input in ["", "\n  \n\r\n"] {
            let err = read_catalog_from(input.as_bytes(), "e.jsonl", &jsonl_opts()).unwrap_err();
            assert!(matches!(
                err.kind(),
                CatalogErrorKind::EmptyCatalog {
                    skipped: 0,
                    first_problem: None
                }
            ));
            assert_eq!(err.line(), None);
            assert_eq!(err.to_string(), "e.jsonl: no valid products");
        }
    }

    #[test]
    fn all_lines_invalid_is_empty_catalog_with_first_problem() {
        let opts = ReadOptions {
            skip_invalid: true,
            max_reported: 0,
            ..jsonl_opts()
        };
        let input = "{\"title\": \"no id\"}\nnot json\n";
        let err = read_catalog_from(input.as_bytes(), "e.jsonl", &opts).unwrap_err();
        match err.kind() {
            CatalogErrorKind::EmptyCatalog {
                skipped,
                first_problem: Some(first),
            } => {
                assert_eq!(*skipped, 2);
                assert_eq!(first.line(), Some(1));
                assert_eq!(first.field(), Some("id"));
            }
            other => panic!("expected EmptyCatalog, got {other:?}"),
        }
    }

    #[test]
    fn from_products_validates_and_rejects_duplicates() {
        let ok =
            Catalog::from_products(vec![Product::new("a", "A"), Product::new("b", "B")]).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(Catalog::from_products(Vec::new()).unwrap().is_empty());

        let err = Catalog::from_products(vec![
            Product::new("a", "A"),
            Product::new("b", "B"),
            Product::new("a", "again"),
        ])
        .unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.field(), Some("id"));
        assert!(matches!(
            err.kind(),
            CatalogErrorKind::DuplicateId { first_line: 1, .. }
        ));

        let mut bad = Product::new("c", "C");
        bad.price = Some(f64::NAN);
        let err = Catalog::from_products(vec![bad]).unwrap_err();
        assert_eq!(err.field(), Some("price"));
        assert!(matches!(err.kind(), CatalogErrorKind::InvalidNumber { .. }));
    }

    #[test]
    fn bom_is_skipped_only_at_start() {
        let mut input = b"\xEF\xBB\xBF".to_vec();
        input.extend_from_slice(b"{\"id\": \"1\", \"title\": \"Hammer\"}\n");
        let catalog = read_catalog_from(&input[..], "bom.jsonl", &jsonl_opts()).unwrap();
        assert_eq!(catalog.products[0].id, "1");

        // Short inputs that are a prefix of the BOM or shorter than it are passed through.
        let mut out = Vec::new();
        crate::lines::skip_bom(&b"{}"[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"{}");
    }
}
