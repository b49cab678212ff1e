//! The JSONL reader: one JSON object per line.
//!
//! Accepted fields (unknown ones are ignored): `id` (string, or integer turned into its decimal
//! text; required), `title` (string; required), `description` and `brand` (strings), `category`
//! (a path string `"Bath > Faucets"` or an array of segment strings), `price` and `popularity`
//! (numbers, or numeric strings), `attributes` (an object whose values are strings, numbers or
//! booleans). `null` means absent, as does an empty or whitespace-only optional string. Text
//! fields are trimmed.

use std::io::Read;

use serde_json::{Map, Value};

use super::attributes::Attributes;
use super::error::{CatalogError, CatalogErrorKind};
use super::options::TextEncoding;
use super::product::{deserialize_id, parse_category_path, parse_number_text, shorten, Product};
use super::{Collector, RowError};

/// Reads every line of `reader` into `collector`. Returns `Err` for I/O errors and, unless the
/// collector skips bad lines, for the first bad line.
pub(super) fn read(
    reader: impl Read,
    encoding: TextEncoding,
    collector: &mut Collector<'_>,
) -> Result<(), CatalogError> {
    let source = collector.source_name();
    crate::lines::read_lines(
        reader,
        |line, e| CatalogError::new(source, Some(line), None, CatalogErrorKind::Io(e)),
        |line, bytes| {
            let row = encoding
                .decode_or_kind(bytes, Some(0))
                .map_err(RowError::line)
                .and_then(|text| parse_line(&text));
            collector.push(line, row)
        },
    )
}

/// Parses one non-blank line into a product (not yet validated).
fn parse_line(text: &str) -> Result<Product, RowError> {
    let value: Value = serde_json::from_str(text).map_err(json_error)?;
    let Value::Object(mut obj) = value else {
        return Err(RowError::line(CatalogErrorKind::WrongType {
            expected: "a JSON object",
            found: excerpt(&value),
        }));
    };
    Ok(Product {
        id: id_field(obj.remove("id"))?,
        title: required_text("title", obj.remove("title"))?,
        description: optional_text("description", obj.remove("description"))?,
        category: category_field(obj.remove("category"))?,
        brand: optional_text("brand", obj.remove("brand"))?,
        price: number_field("price", obj.remove("price"))?,
        attributes: attributes_field(obj.remove("attributes"))?,
        popularity: number_field("popularity", obj.remove("popularity"))?,
    })
}

/// Turns a serde_json error into [`CatalogErrorKind::InvalidJson`], replacing its "at line 1
/// column N" (always line 1 here) with just the column.
fn json_error(e: serde_json::Error) -> RowError {
    RowError::line(CatalogErrorKind::InvalidJson {
        message: crate::lines::json_error_message(&e),
    })
}

/// A value's JSON text, shortened, for an error message.
fn excerpt(value: &Value) -> String {
    shorten(&value.to_string())
}

/// A wrong-type error for `field`.
fn wrong_type(field: &str, expected: &'static str, found: &Value) -> RowError {
    RowError::field(
        field,
        CatalogErrorKind::WrongType {
            expected,
            found: excerpt(found),
        },
    )
}

/// Trims a string, reusing it when there is nothing to trim.
fn trimmed(s: String) -> String {
    if s.trim().len() == s.len() {
        s
    } else {
        s.trim().to_owned()
    }
}

/// The id: a string, or an integer turned into its decimal text. Required.
fn id_field(value: Option<Value>) -> Result<String, RowError> {
    match value {
        None | Some(Value::Null) => Err(RowError::field("id", CatalogErrorKind::MissingField)),
        Some(v @ (Value::String(_) | Value::Number(_))) => {
            deserialize_id(&v).map_err(|_| wrong_type("id", "a string or an integer", &v))
        }
        Some(other) => Err(wrong_type("id", "a string or an integer", &other)),
    }
}

/// A required string field (emptiness is checked by validation).
fn required_text(field: &str, value: Option<Value>) -> Result<String, RowError> {
    match value {
        None | Some(Value::Null) => Err(RowError::field(field, CatalogErrorKind::MissingField)),
        Some(Value::String(s)) => Ok(trimmed(s)),
        Some(other) => Err(wrong_type(field, "a string", &other)),
    }
}

/// An optional string field; null and blank strings are absent.
fn optional_text(field: &str, value: Option<Value>) -> Result<Option<String>, RowError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(trimmed(s)).filter(|s| !s.is_empty())),
        Some(other) => Err(wrong_type(field, "a string", &other)),
    }
}

/// The category: a `"A > B"` path string or an array of segment strings.
fn category_field(value: Option<Value>) -> Result<Vec<String>, RowError> {
    const EXPECTED: &str = "a category path string or an array of strings";
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(parse_category_path(&s)),
        Some(Value::Array(items)) => {
            let mut segments = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => {
                        let s = trimmed(s);
                        if !s.is_empty() {
                            segments.push(s);
                        }
                    }
                    other => return Err(wrong_type("category", EXPECTED, &other)),
                }
            }
            Ok(segments)
        }
        Some(other) => Err(wrong_type("category", EXPECTED, &other)),
    }
}

/// A number field: a JSON number or a numeric string; null and blank strings are absent.
/// Range (finite, >= 0) is checked by validation.
fn number_field(field: &str, value: Option<Value>) -> Result<Option<f64>, RowError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) => Ok(Some(v)),
            None => Err(wrong_type(field, "a number", &Value::Number(n))),
        },
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => parse_number_text(field, &s)
            .map(Some)
            .map_err(|_| wrong_type(field, "a number", &Value::String(s))),
        Some(other) => Err(wrong_type(field, "a number", &other)),
    }
}

/// The attributes: an object of strings, numbers or booleans (kept as text); null values are
/// dropped.
fn attributes_field(value: Option<Value>) -> Result<Attributes, RowError> {
    match value {
        None | Some(Value::Null) => Ok(Attributes::new()),
        Some(Value::Object(obj)) => attribute_map(obj),
        Some(other) => Err(wrong_type("attributes", "an object", &other)),
    }
}

/// Converts the attribute object's values to text.
fn attribute_map(obj: Map<String, Value>) -> Result<Attributes, RowError> {
    let mut attributes = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(wrong_type(
                    &format!("attributes.{key}"),
                    "a string, number or boolean",
                    &other,
                ))
            }
        };
        attributes.push((key, text));
    }
    Ok(attributes.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::super::{read_catalog_from, Catalog, Format, ReadOptions};
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions {
            format: Some(Format::Jsonl),
            ..ReadOptions::default()
        }
    }

    fn read(input: &str) -> Result<Catalog, CatalogError> {
        read_catalog_from(input.as_bytes(), "c.jsonl", &opts())
    }

    /// Reads `input`, expecting an error at `line` for `field`, and returns its kind.
    fn read_err(input: &str, line: usize, field: Option<&str>) -> CatalogErrorKind {
        let err = read(input).unwrap_err();
        assert_eq!(err.line(), Some(line), "{err}");
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.source_name(), "c.jsonl");
        err.kind
    }

    const OK1: &str = r#"{"id": "1", "title": "Hammer"}"#;

    #[test]
    fn reads_all_fields() {
        let input = r#"{"id": "100001", "title": " Simpson Strong-Tie 12-Gauge Angle ", "description": "Not only do angles make joints stronger", "category": "Building Materials > Connectors", "brand": "Simpson Strong-Tie", "price": 0.79, "popularity": 12, "attributes": {"Material": "Steel", "Width (in.)": 1.5, "Galvanized": true, "Gone": null}, "unknown": [1, 2]}"#;
        let catalog = read(input).unwrap();
        assert_eq!(catalog.skipped, 0);
        let p = &catalog.products[0];
        assert_eq!(p.id, "100001");
        assert_eq!(p.title, "Simpson Strong-Tie 12-Gauge Angle");
        assert_eq!(
            p.description.as_deref(),
            Some("Not only do angles make joints stronger")
        );
        assert_eq!(p.category, ["Building Materials", "Connectors"]);
        assert_eq!(p.brand.as_deref(), Some("Simpson Strong-Tie"));
        assert_eq!(p.price, Some(0.79));
        assert_eq!(p.popularity, Some(12.0));
        let attrs: Vec<(&str, &str)> = p
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("Galvanized", "true"),
                ("Material", "Steel"),
                ("Width (in.)", "1.5")
            ]
        );
    }

    #[test]
    fn optional_fields_absent_null_or_blank() {
        let input = r#"{"id": "1", "title": "t", "description": null, "brand": "  ", "price": null, "category": null, "attributes": null, "popularity": ""}"#;
        let p = &read(input).unwrap().products[0];
        assert_eq!(*p, Product::new("1", "t"));
    }

    #[test]
    fn category_as_string_and_list() {
        let input = concat!(
            r#"{"id": "1", "title": "a", "category": "Bath > Faucets >  > Bathroom Sink Faucets"}"#,
            "\n",
            r#"{"id": "2", "title": "b", "category": ["Bath", " Faucets ", ""]}"#,
            "\n",
            r#"{"id": "3", "title": "c", "category": []}"#,
        );
        let c = read(input).unwrap();
        assert_eq!(
            c.products[0].category,
            ["Bath", "Faucets", "Bathroom Sink Faucets"]
        );
        assert_eq!(c.products[1].category, ["Bath", "Faucets"]);
        assert!(c.products[2].category.is_empty());
    }

    #[test]
    fn category_of_wrong_type() {
        let kind = read_err(
            r#"{"id": "1", "title": "a", "category": ["Bath", 3]}"#,
            1,
            Some("category"),
        );
        assert!(matches!(kind, CatalogErrorKind::WrongType { ref found, .. } if found == "3"));
        let kind = read_err(
            r#"{"id": "1", "title": "a", "category": 7}"#,
            1,
            Some("category"),
        );
        assert!(matches!(kind, CatalogErrorKind::WrongType { .. }));
    }

    #[test]
    fn integer_id_becomes_text() {
        let c = read(r#"{"id": 100001, "title": "a"}"#).unwrap();
        assert_eq!(c.products[0].id, "100001");
        let kind = read_err(r#"{"id": 1.5, "title": "a"}"#, 1, Some("id"));
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType { expected: "a string or an integer", ref found } if found == "1.5"
        ));
        let kind = read_err(r#"{"id": true, "title": "a"}"#, 1, Some("id"));
        assert!(matches!(kind, CatalogErrorKind::WrongType { .. }));
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let input = format!("\n{OK1}\n   \n\t\n{{\"id\": \"2\"}}\n");
        let kind = read_err(&input, 5, Some("title"));
        assert!(matches!(kind, CatalogErrorKind::MissingField));
        let c = read(&format!("\n\n{OK1}\n\n")).unwrap();
        assert_eq!((c.products.len(), c.skipped), (1, 0));
    }

    #[test]
    fn invalid_json_names_its_line() {
        let input = format!("{OK1}\n{{\"id\": \"2\", \"title\": \n{OK1}\n");
        let kind = read_err(&input, 2, None);
        match kind {
            CatalogErrorKind::InvalidJson { message } => {
                assert!(message.contains("EOF"), "{message}");
                assert!(message.contains("at column"), "{message}");
                assert!(!message.contains("line"), "{message}");
            }
            other => panic!("expected InvalidJson, got {other:?}"),
        }
        let kind = read_err(&format!("{OK1} x\n"), 1, None);
        assert!(matches!(kind, CatalogErrorKind::InvalidJson { .. }));
    }

    #[test]
    fn non_object_line_is_wrong_type() {
        let kind = read_err(&format!("{OK1}\n[1, 2]\n"), 2, None);
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType { expected: "a JSON object", ref found } if found == "[1,2]"
        ));
    }

    #[test]
    fn missing_id() {
        let kind = read_err(r#"{"title": "a"}"#, 1, Some("id"));
        assert!(matches!(kind, CatalogErrorKind::MissingField));
        let kind = read_err(r#"{"id": null, "title": "a"}"#, 1, Some("id"));
        assert!(matches!(kind, CatalogErrorKind::MissingField));
    }

    #[test]
    fn ids_with_control_characters_name_line_and_field() {
        for id in [r#""a\tb""#, r#""a\nb""#, r#""a\rb""#, r#""a\u0000b""#] {
            let input = format!("{OK1}\n{{\"id\": {id}, \"title\": \"t\"}}\n");
            let kind = read_err(&input, 2, Some("id"));
            assert!(
                matches!(kind, CatalogErrorKind::ControlCharacter { .. }),
                "{id}: {kind}"
            );
        }
    }

    #[test]
    fn blank_id_is_empty_field() {
        let kind = read_err(r#"{"id": "  ", "title": "a"}"#, 1, Some("id"));
        assert!(matches!(kind, CatalogErrorKind::EmptyField));
    }

    #[test]
    fn missing_title() {
        let kind = read_err(&format!("{OK1}\n{{\"id\": \"2\"}}"), 2, Some("title"));
        assert!(matches!(kind, CatalogErrorKind::MissingField));
    }

    #[test]
    fn empty_title() {
        let err = read(r#"{"id": "2", "title": ""}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.jsonl:1: field \"title\": must not be empty"
        );
        assert!(matches!(err.kind, CatalogErrorKind::EmptyField));
        let kind = read_err(r#"{"id": "2", "title": 5}"#, 1, Some("title"));
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType {
                expected: "a string",
                ..
            }
        ));
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let input = format!(
            "{OK1}\n{{\"id\": \"2\", \"title\": \"b\"}}\n\n{{\"id\": 1, \"title\": \"c\"}}\n"
        );
        let err = read(&input).unwrap_err();
        assert_eq!(err.line(), Some(4));
        assert_eq!(err.field(), Some("id"));
        assert!(matches!(
            err.kind,
            CatalogErrorKind::DuplicateId { ref id, first_line: 1 } if id == "1"
        ));
        assert_eq!(
            err.to_string(),
            "c.jsonl:4: field \"id\": duplicate id \"1\" (first seen on line 1)"
        );
    }

    #[test]
    fn duplicate_id_skipped_keeps_first() {
        let input = format!("{OK1}\n{{\"id\": \"1\", \"title\": \"second\"}}\n");
        let opts = ReadOptions {
            skip_invalid: true,
            ..opts()
        };
        let c = read_catalog_from(input.as_bytes(), "c.jsonl", &opts).unwrap();
        assert_eq!(c.products.len(), 1);
        assert_eq!(c.products[0].title, "Hammer");
        assert_eq!(c.skipped, 1);
        assert_eq!(c.problems[0].line(), Some(2));
        assert!(matches!(
            c.problems[0].kind,
            CatalogErrorKind::DuplicateId { first_line: 1, .. }
        ));
    }

    #[test]
    fn negative_price_is_invalid_number() {
        let err = read(&format!(
            "{OK1}\n{{\"id\": \"2\", \"title\": \"b\", \"price\": -1}}"
        ))
        .unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert_eq!(err.field(), Some("price"));
        assert!(matches!(err.kind, CatalogErrorKind::InvalidNumber { value } if value == -1.0));
        assert_eq!(
            err.to_string(),
            "c.jsonl:2: field \"price\": must be a finite number >= 0, got -1"
        );
    }

    #[test]
    fn non_numeric_price_is_wrong_type() {
        let kind = read_err(
            r#"{"id": "2", "title": "b", "price": "abc"}"#,
            1,
            Some("price"),
        );
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType { expected: "a number", ref found } if found == "\"abc\""
        ));
        let kind = read_err(
            r#"{"id": "2", "title": "b", "price": true}"#,
            1,
            Some("price"),
        );
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType {
                expected: "a number",
                ..
            }
        ));
    }

    #[test]
    fn numeric_string_price_is_accepted() {
        let c = read(r#"{"id": "2", "title": "b", "price": " 12.5 ", "popularity": "3"}"#).unwrap();
        assert_eq!(c.products[0].price, Some(12.5));
        assert_eq!(c.products[0].popularity, Some(3.0));
    }

    #[test]
    fn infinite_or_nan_price_string_is_rejected() {
        for text in ["inf", "-inf", "NaN", "infinity"] {
            let input = format!("{{\"id\": \"2\", \"title\": \"b\", \"price\": \"{text}\"}}");
            let kind = read_err(&input, 1, Some("price"));
            assert!(
                matches!(kind, CatalogErrorKind::InvalidNumber { value } if !value.is_finite() || value < 0.0),
                "{text}: {kind:?}"
            );
        }
    }

    #[test]
    fn negative_popularity_is_invalid_number() {
        let kind = read_err(
            r#"{"id": "2", "title": "b", "popularity": -0.5}"#,
            1,
            Some("popularity"),
        );
        assert!(matches!(kind, CatalogErrorKind::InvalidNumber { value } if value == -0.5));
    }

    #[test]
    fn attributes_must_be_flat() {
        let kind = read_err(
            r#"{"id": "2", "title": "b", "attributes": {"size": {"w": 1}}}"#,
            1,
            Some("attributes.size"),
        );
        assert!(
            matches!(kind, CatalogErrorKind::WrongType { ref found, .. } if found == "{\"w\":1}")
        );
        let kind = read_err(
            r#"{"id": "2", "title": "b", "attributes": ["a"]}"#,
            1,
            Some("attributes"),
        );
        assert!(matches!(
            kind,
            CatalogErrorKind::WrongType {
                expected: "an object",
                ..
            }
        ));
        let kind = read_err(
            r#"{"id": "2", "title": "b", "attributes": {"": "x"}}"#,
            1,
            Some("attributes"),
        );
        assert!(matches!(kind, CatalogErrorKind::EmptyField));
    }

    #[test]
    fn invalid_utf8_names_line_and_hints_latin1() {
        // Latin-1 bytes: 0xE9 = é, 0xB0 = °.
        let mut input = format!("{OK1}\n").into_bytes();
        input.extend_from_slice(b"{\"id\": \"2\", \"title\": \"Caf\xE9 elbow 90\xB0\"}\n");
        let err = read_catalog_from(&input[..], "hd.jsonl", &opts()).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert_eq!(err.field(), None);
        assert!(matches!(
            err.kind,
            CatalogErrorKind::InvalidUtf8 {
                byte: 0xE9,
                column: Some(26)
            }
        ));
        assert_eq!(
            err.to_string(),
            "hd.jsonl:2: invalid UTF-8 byte 0xE9 at byte 26 of the line; hint: the file is not \
             UTF-8; if it is Latin-1 (like the original Home Depot data), pass --encoding latin1"
        );

        let latin1 = ReadOptions {
            encoding: TextEncoding::Latin1,
            ..opts()
        };
        let c = read_catalog_from(&input[..], "hd.jsonl", &latin1).unwrap();
        assert_eq!(c.products[1].title, "Café elbow 90°");
    }

    #[test]
    fn skip_invalid_counts_and_caps_problems() {
        let mut input = String::new();
        for i in 1..=10 {
            if i % 2 == 0 {
                input.push_str(&format!("{{\"id\": \"{i}\", \"title\": \"ok\"}}\n"));
            } else {
                input.push_str(&format!(
                    "{{\"id\": \"{i}\", \"price\": -{i}, \"title\": \"x\"}}\n"
                ));
            }
        }
        input.push_str("garbage\n");
        let opts = ReadOptions {
            skip_invalid: true,
            max_reported: 3,
            ..opts()
        };
        let c = read_catalog_from(input.as_bytes(), "c.jsonl", &opts).unwrap();
        assert_eq!(c.products.len(), 5);
        assert_eq!(c.skipped, 6);
        assert_eq!(c.problems.len(), 3);
        let lines: Vec<_> = c.problems.iter().map(|p| p.line()).collect();
        assert_eq!(lines, [Some(1), Some(3), Some(5)]);
        assert!(c.problems.iter().all(|p| p.field() == Some("price")));
        let ids: Vec<_> = c.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["2", "4", "6", "8", "10"]);
    }

    #[test]
    fn without_skip_first_bad_line_is_the_error() {
        let input = format!("{OK1}\n{{\"id\": \"2\", \"title\": \"\"}}\nnot json\n");
        let kind = read_err(&input, 2, Some("title"));
        assert!(matches!(kind, CatalogErrorKind::EmptyField));
    }

    #[test]
    fn crlf_and_bom_are_tolerated() {
        let input = format!(
            "\u{feff}{OK1}\r\n\r\n{{\"id\": \"2\", \"title\": \"b\"}}\r\n{{\"id\": \"3\"}}\r\n"
        );
        let err = read(&input).unwrap_err();
        assert_eq!(err.line(), Some(4));
        assert_eq!(err.field(), Some("title"));
        let c =
            read(&input.replace("{\"id\": \"3\"}", "{\"id\": \"3\", \"title\": \"c\"}")).unwrap();
        let titles: Vec<_> = c.products.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["Hammer", "b", "c"]);
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let c = read(&format!("{OK1}\n{{\"id\": \"2\", \"title\": \"b\"}}")).unwrap();
        assert_eq!(c.products.len(), 2);
    }

    #[test]
    fn serialized_products_read_back() {
        let mut p = Product::new("9", "Drill");
        p.category = vec!["Tools".into(), "Power Tools".into()];
        p.price = Some(99.0);
        p.attributes.insert("Voltage".into(), "18".into());
        let line = serde_json::to_string(&p).unwrap();
        assert_eq!(read(&line).unwrap().products, [p]);
    }

    #[test]
    fn io_error_mid_read_is_fatal_with_line() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let reader = std::io::Cursor::new(format!("{OK1}\n")).chain(Failing);
        let opts = ReadOptions {
            skip_invalid: true,
            ..opts()
        };
        let err = read_catalog_from(reader, "c.jsonl", &opts).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(matches!(err.kind, CatalogErrorKind::Io(_)));
        assert!(!err.is_caller_fault());
    }
}
