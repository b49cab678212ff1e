//! The CSV and TSV reader: a header row naming the columns, then one product per row.
//!
//! Which column holds which field comes from the [`ColumnMap`](super::ColumnMap) (fields it does
//! not name come from a column named like the field). Cells are trimmed; an empty cell is an
//! absent value. A category cell is a path split on `>`. Every row must have as many fields as
//! the header.
//!
//! Rows are parsed as bytes and only the cells in use are decoded, with the chosen encoding.
//! This is equivalent to decoding the whole input first, because the delimiters, quotes and line
//! breaks are ASCII and both UTF-8 and Windows-1252 leave ASCII bytes alone; it keeps memory flat
//! and lets an invalid UTF-8 byte be reported with its row's line and the field it belongs to.
//!
//! Line numbers are physical lines, counted here: csv's own `Position::line` is where the
//! previous record ended and undercounts CRLF input and skipped blank lines.

use std::collections::VecDeque;
use std::io::Read;

use csv::{ByteRecord, ErrorKind, ReaderBuilder};

use super::columns::ResolvedColumns;
use super::error::{CatalogError, CatalogErrorKind};
use super::options::{ReadOptions, TextEncoding};
use super::product::{parse_category_path, parse_number_text, Product};
use super::{Collector, RowError};

/// Reads a header and rows separated by `delimiter` into `collector`. `quoting` enables RFC 4180
/// double quotes (CSV); TSV has none.
pub(super) fn read(
    reader: impl Read,
    delimiter: u8,
    quoting: bool,
    opts: &ReadOptions,
    collector: &mut Collector<'_>,
) -> Result<(), CatalogError> {
    let source_name = collector.source_name();
    let mut csv = ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(true)
        .flexible(false)
        .from_reader(NewlineTracker::new(reader));

    let header = match csv.byte_headers() {
        Ok(header) => header.clone(),
        Err(e) => return Err(csv_error(&mut csv, e, None, source_name)),
    };
    let header_line = record_line(&mut csv, &header);
    if header.iter().all(|h| h.iter().all(u8::is_ascii_whitespace)) {
        return Err(CatalogError::new(
            source_name,
            Some(header_line),
            None,
            CatalogErrorKind::MissingHeader,
        ));
    }
    let names = header
        .iter()
        .map(|name| {
            opts.encoding
                .decode_or_kind(name, None)
                .map(|n| n.trim().to_owned())
                .map_err(|kind| CatalogError::new(source_name, Some(header_line), None, kind))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let columns = opts.columns.resolve(&names, source_name, header_line)?;

    let mut record = ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record_line(&mut csv, &record);
                collector.push(line, parse_row(&record, &columns, opts.encoding))?;
            }
            Err(e) => {
                let err = csv_error(&mut csv, e, Some(&record), source_name);
                if matches!(err.kind, CatalogErrorKind::Io(_)) {
                    return Err(err);
                }
                collector.reject(err)?;
            }
        }
    }
}

/// Passes bytes through, remembering where the line feeds are, so that the physical line of a
/// record can be found after csv has parsed it.
struct NewlineTracker<R> {
    inner: R,
    /// Bytes passed through so far.
    offset: u64,
    /// Offsets of line feeds not yet counted into `counted`, in order. Only line feeds in csv's
    /// read-ahead buffer stay here, so this stays small.
    pending: VecDeque<u64>,
    /// Line feeds before the last offset asked about.
    counted: usize,
}

impl<R> NewlineTracker<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            pending: VecDeque::new(),
            counted: 0,
        }
    }

    /// The number of line feeds before byte `offset`. Offsets asked about must not decrease.
    fn newlines_before(&mut self, offset: u64) -> usize {
        while self.pending.front().is_some_and(|&at| at < offset) {
            self.pending.pop_front();
            self.counted += 1;
        }
        self.counted
    }
}

impl<R: Read> Read for NewlineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.offset;
        let feeds = buf
            .get(..n)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| start + i as u64);
        self.pending.extend(feeds);
        self.offset += n as u64;
        Ok(n)
    }
}

/// The 1-based physical line `record` (just read) starts on.
///
/// After a record, csv's position is just past the record's first terminator byte (or at the end
/// of input), so the byte before it is on the record's last line; the record starts as many lines
/// earlier as it holds line feeds (inside quoted fields).
fn record_line<R: Read>(csv: &mut csv::Reader<NewlineTracker<R>>, record: &ByteRecord) -> usize {
    let last_byte = csv.position().byte().saturating_sub(1);
    let last_line = csv.get_mut().newlines_before(last_byte) + 1;
    let inside = record.as_slice().iter().filter(|&&b| b == b'\n').count();
    last_line.saturating_sub(inside).max(1)
}

/// Turns a csv error into a [`CatalogError`] at its line. `record` is the record being read, when
/// csv has filled it (it has, for a wrong field count).
fn csv_error<R: Read>(
    csv: &mut csv::Reader<NewlineTracker<R>>,
    e: csv::Error,
    record: Option<&ByteRecord>,
    source_name: &str,
) -> CatalogError {
    let message = e.to_string();
    let kind = match e.into_kind() {
        ErrorKind::Io(io) => CatalogErrorKind::Io(io),
        ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => CatalogErrorKind::WrongFieldCount {
            expected: usize::try_from(expected_len).unwrap_or(usize::MAX),
            found: usize::try_from(len).unwrap_or(usize::MAX),
        },
        _ => CatalogErrorKind::Csv { message },
    };
    let line = match (&kind, record) {
        (CatalogErrorKind::WrongFieldCount { .. }, Some(record)) => record_line(csv, record),
        // The line being read when the error struck.
        _ => {
            let at = csv.position().byte();
            csv.get_mut().newlines_before(at) + 1
        }
    };
    CatalogError::new(source_name, Some(line), None, kind)
}

/// Parses one row into a product (not yet validated).
fn parse_row(
    record: &ByteRecord,
    columns: &ResolvedColumns,
    encoding: TextEncoding,
) -> Result<Product, RowError> {
    let cell = |field: &str, index: Option<usize>| -> Result<Option<String>, RowError> {
        let Some(bytes) = index.and_then(|i| record.get(i)) else {
            return Ok(None);
        };
        let text = encoding
            .decode_or_kind(bytes, None)
            .map_err(|kind| RowError::field(field, kind))?;
        let text = text.trim();
        Ok((!text.is_empty()).then(|| text.to_owned()))
    };
    let required = |field: &str, index: usize| -> Result<String, RowError> {
        cell(field, Some(index))?
            .ok_or_else(|| RowError::field(field, CatalogErrorKind::MissingField))
    };
    let number = |field: &str, index: Option<usize>| -> Result<Option<f64>, RowError> {
        match cell(field, index)? {
            Some(text) => Ok(Some(parse_number_text(field, &text)?)),
            None => Ok(None),
        }
    };

    let mut attributes = Vec::with_capacity(columns.attributes.len());
    for (key, index) in &columns.attributes {
        if let Some(value) = cell(&format!("attributes.{key}"), Some(*index))? {
            attributes.push((key.clone(), value));
        }
    }
    Ok(Product {
        id: required("id", columns.id)?,
        title: required("title", columns.title)?,
        description: cell("description", columns.description)?,
        category: cell("category", columns.category)?
            .map(|path| parse_category_path(&path))
            .unwrap_or_default(),
        brand: cell("brand", columns.brand)?,
        price: number("price", columns.price)?,
        attributes: attributes.into_iter().collect(),
        popularity: number("popularity", columns.popularity)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{read_catalog_from, Catalog, ColumnMap, Format};
    use super::*;

    fn opts(format: Format, columns: &str) -> ReadOptions {
        ReadOptions {
            format: Some(format),
            columns: columns.parse().unwrap(),
            ..ReadOptions::default()
        }
    }

    fn read(input: &[u8], opts: &ReadOptions) -> Result<Catalog, CatalogError> {
        read_catalog_from(input, "c.csv", opts)
    }

    const MAP: &str = "id=sku,title=name,description=desc,category=cat,brand=maker,price=cost,\
                       popularity=sales,attr.color=colour,attr.size=size";

    #[test]
    fn csv_with_column_map() {
        let input = "sku,name,desc,cat,maker,cost,sales,colour,size,ignored\n\
                     100001,\"Angle, 12-Gauge\",\"Says \"\"strong\"\"\",Hardware > Connectors,Simpson,0.79,12,silver,,x\n\
                     100002,Deck Screws,,,,,,,2 in.,y\n";
        let c = read(input.as_bytes(), &opts(Format::Csv, MAP)).unwrap();
        assert_eq!(c.products.len(), 2);
        let p = &c.products[0];
        assert_eq!(p.id, "100001");
        assert_eq!(p.title, "Angle, 12-Gauge");
        assert_eq!(p.description.as_deref(), Some("Says \"strong\""));
        assert_eq!(p.category, ["Hardware", "Connectors"]);
        assert_eq!(p.brand.as_deref(), Some("Simpson"));
        assert_eq!(p.price, Some(0.79));
        assert_eq!(p.popularity, Some(12.0));
        assert_eq!(p.attributes.len(), 1, "empty size cell is absent");
        assert_eq!(p.attributes["color"], "silver");

        let mut expected = Product::new("100002", "Deck Screws");
        expected.attributes.insert("size".into(), "2 in.".into());
        assert_eq!(c.products[1], expected);
    }

    #[test]
    fn csv_default_columns_by_field_name() {
        let input = "id,title,price,category,brand\n1,Hammer,9.5,Tools>Hand Tools,Estwing\n";
        let c = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap();
        let p = &c.products[0];
        assert_eq!(p.price, Some(9.5));
        assert_eq!(p.category, ["Tools", "Hand Tools"]);
        assert_eq!(p.brand.as_deref(), Some("Estwing"));
    }

    #[test]
    fn tsv_has_no_quoting() {
        let input = "id\ttitle\tdescription\n\
                     1\t\"Deluxe\" 12\" pipe\tsays \"hi\"\n\
                     2\tValve\t\n";
        let c = read(input.as_bytes(), &opts(Format::Tsv, "")).unwrap();
        assert_eq!(c.products[0].title, "\"Deluxe\" 12\" pipe");
        assert_eq!(c.products[0].description.as_deref(), Some("says \"hi\""));
        assert_eq!(c.products[1].description, None);
    }

    #[test]
    fn row_with_wrong_field_count_names_its_line() {
        let input = "id,title,price\n1,a,2\n2,b\n3,c,4\n";
        let err = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.field(), None);
        assert!(matches!(
            err.kind,
            CatalogErrorKind::WrongFieldCount {
                expected: 3,
                found: 2
            }
        ));
        assert_eq!(
            err.to_string(),
            "c.csv:3: row has 2 fields but the header has 3"
        );

        let skipping = ReadOptions {
            skip_invalid: true,
            ..opts(Format::Csv, "")
        };
        let c = read(input.as_bytes(), &skipping).unwrap();
        let ids: Vec<_> = c.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
        assert_eq!(c.skipped, 1);
        assert_eq!(c.problems[0].line(), Some(3));
    }

    #[test]
    fn unknown_column_in_map_is_fatal_even_when_skipping() {
        let o = ReadOptions {
            skip_invalid: true,
            ..opts(Format::Csv, "id=sku,title=name,price=cost")
        };
        let err = read(b"sku,name,price\n1,a,3\n", &o).unwrap_err();
        assert_eq!(err.field(), Some("price"));
        match &err.kind {
            CatalogErrorKind::UnknownColumn { column, available } => {
                assert_eq!(column, "cost");
                assert_eq!(available, &["sku", "name", "price"]);
            }
            other => panic!("expected UnknownColumn, got {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("c.csv:1: field \"price\": column \"cost\" not found in the header; the header has: sku, name, price; hint:"));
    }

    #[test]
    fn missing_header_is_fatal() {
        let err = read(b"", &opts(Format::Csv, "")).unwrap_err();
        assert!(matches!(err.kind, CatalogErrorKind::MissingHeader));
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn header_only_is_empty_catalog() {
        let err = read(b"id,title\n", &opts(Format::Csv, "")).unwrap_err();
        assert!(matches!(
            err.kind,
            CatalogErrorKind::EmptyCatalog { skipped: 0, .. }
        ));
    }

    #[test]
    fn empty_cells_are_absent_and_missing_required_is_missing_field() {
        let input = "id,title,price\n1,a,\n,b,3\n";
        let err = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.field(), Some("id"));
        assert!(matches!(err.kind, CatalogErrorKind::MissingField));
    }

    #[test]
    fn ids_with_control_characters_name_line_and_field() {
        // A quoted CSV cell may hold a newline or a tab; a TSV cell another control
        // character.
        for (input, format, line) in [
            ("id,title\n1,a\n\"x\ny\",b\n", Format::Csv, 3),
            ("id,title\n1,a\n\"x\ty\",b\n", Format::Csv, 3),
            ("id\ttitle\n1\ta\n2\tb\nx\u{b}y\tc\n", Format::Tsv, 4),
        ] {
            let err = read(input.as_bytes(), &opts(format, "")).unwrap_err();
            assert_eq!((err.line(), err.field()), (Some(line), Some("id")), "{err}");
            assert!(
                matches!(err.kind, CatalogErrorKind::ControlCharacter { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("c.csv"), "{err}");
        }
    }

    #[test]
    fn bad_numbers_in_cells() {
        let input = "id,title,price,popularity\n1,a,abc,\n2,b,-3,\n3,c,inf,\n4,d,1,-2\n";
        let o = ReadOptions {
            skip_invalid: true,
            ..opts(Format::Csv, "")
        };
        let c = read(input.as_bytes(), &o).unwrap_err();
        // All four rows are bad, so the catalog is empty; check the first via a fresh read.
        assert!(matches!(
            c.kind,
            CatalogErrorKind::EmptyCatalog { skipped: 4, .. }
        ));
        let o = ReadOptions {
            skip_invalid: true,
            ..opts(Format::Csv, "")
        };
        let input = format!("{input}5,e,1,1\n");
        let c = read(input.as_bytes(), &o).unwrap();
        let got: Vec<_> = c
            .problems
            .iter()
            .map(|p| (p.line(), p.field().map(str::to_owned)))
            .collect();
        assert_eq!(
            got,
            [
                (Some(2), Some("price".to_owned())),
                (Some(3), Some("price".to_owned())),
                (Some(4), Some("price".to_owned())),
                (Some(5), Some("popularity".to_owned())),
            ]
        );
        assert!(matches!(
            c.problems[0].kind,
            CatalogErrorKind::WrongType { ref found, .. } if found == "\"abc\""
        ));
        assert!(
            matches!(c.problems[1].kind, CatalogErrorKind::InvalidNumber { value } if value == -3.0)
        );
        assert!(
            matches!(c.problems[2].kind, CatalogErrorKind::InvalidNumber { value } if value.is_infinite())
        );
    }

    #[test]
    fn duplicate_id_in_csv_names_both_lines() {
        let input = "id,title\n1,a\n2,b\n1,c\n";
        let err = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(4));
        assert!(matches!(
            err.kind,
            CatalogErrorKind::DuplicateId { first_line: 2, .. }
        ));
    }

    #[test]
    fn multiline_quoted_cell_keeps_physical_line_numbers() {
        let input = "id,title,description\n1,a,\"two\nlines\"\n2,,x\n";
        let err = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(4));
        assert_eq!(err.field(), Some("title"));
    }

    #[test]
    fn line_numbers_are_physical_lines() {
        // Blank lines (skipped by csv) and a quoted cell spanning lines still count.
        let input = "\nid,title,description\n\n1,a,\"x\ny\nz\"\n\n2,b\n3,,c";
        let skipping = ReadOptions {
            skip_invalid: true,
            ..opts(Format::Csv, "")
        };
        let c = read(input.as_bytes(), &skipping).unwrap();
        assert_eq!(c.products[0].description.as_deref(), Some("x\ny\nz"));
        let got: Vec<_> = c.problems.iter().map(|p| (p.line(), p.field())).collect();
        assert_eq!(got, [(Some(8), None), (Some(9), Some("title"))]);
        assert!(matches!(
            c.problems[0].kind,
            CatalogErrorKind::WrongFieldCount {
                expected: 3,
                found: 2
            }
        ));

        // A header after blank lines is placed on its own line.
        let err = read(b"\r\n\r\nsku,title\r\n1,a\r\n", &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(matches!(err.kind, CatalogErrorKind::UnknownColumn { .. }));
    }

    #[test]
    fn bom_and_crlf_are_tolerated() {
        let input = "\u{feff}id,title\r\n1,a\r\n\r\n2,\r\n";
        let err = read(input.as_bytes(), &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(4), "{err}");
        assert_eq!(err.field(), Some("title"));
        let c = read(
            "\u{feff}id,title\r\n1,a\r\n2,b\r\n".as_bytes(),
            &opts(Format::Csv, ""),
        )
        .unwrap();
        assert_eq!(c.products[1], Product::new("2", "b"));
    }

    #[test]
    fn invalid_utf8_cell_names_line_and_field_and_latin1_decodes() {
        let input = b"id,title,color\n1,a,x\n2,Caf\xE9 elbow 90\xB0,y\n";
        let map = "attr.color=color";
        let err = read(input, &opts(Format::Csv, map)).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.field(), Some("title"));
        assert!(matches!(
            err.kind,
            CatalogErrorKind::InvalidUtf8 {
                byte: 0xE9,
                column: None
            }
        ));
        assert!(err.to_string().contains("pass --encoding latin1"));

        let latin1 = ReadOptions {
            encoding: TextEncoding::Latin1,
            ..opts(Format::Csv, map)
        };
        let c = read(input, &latin1).unwrap();
        assert_eq!(c.products[1].title, "Café elbow 90°");
    }

    #[test]
    fn latin1_header_is_decoded() {
        let input = b"id,title,d\xE9cor\n1,a,b\n";
        let latin1 = ReadOptions {
            encoding: TextEncoding::Latin1,
            columns: "attr.style=d\u{e9}cor".parse::<ColumnMap>().unwrap(),
            format: Some(Format::Csv),
            ..ReadOptions::default()
        };
        let c = read(input, &latin1).unwrap();
        assert_eq!(c.products[0].attributes["style"], "b");

        let err = read(input, &opts(Format::Csv, "")).unwrap_err();
        assert_eq!(err.line(), Some(1));
        assert!(matches!(err.kind, CatalogErrorKind::InvalidUtf8 { .. }));
    }
}
