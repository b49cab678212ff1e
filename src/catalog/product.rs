//! The [`Product`] record and the validation rules every product must pass, whether it was read
//! from a file or built in code.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::attributes::Attributes;
use super::error::{CatalogError, CatalogErrorKind};

/// The separator between category path segments in text form (`"Bath > Faucets"`).
pub const CATEGORY_SEPARATOR: char = '>';

/// One product of the catalog.
///
/// The serde form is the canonical JSONL form the reader accepts: optional fields are left out
/// when absent, `category` is an array of segments and `attributes` an object of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Unique, non-empty product id (Home Depot ids are strings like `"100001"`).
    pub id: String,
    /// Non-empty product title.
    pub title: String,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Category path segments from the root, e.g. `["Bath", "Faucets"]`; empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
    /// Brand or manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// Price, finite and >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Free-form attributes (`"color" -> "white"`); keys are non-empty.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// A popularity signal (sales, clicks), finite and >= 0. Reranking counts it like
    /// that many earlier events on the item (the `popularity` feature and the fallback
    /// formula's prior).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub popularity: Option<f64>,
}

impl Product {
    /// A product with the given id and title and every optional field empty.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            description: None,
            category: Vec::new(),
            brand: None,
            price: None,
            attributes: Attributes::new(),
            popularity: None,
        }
    }

    /// The category path in text form, segments joined by `" > "` (empty when there is none).
    pub fn category_path(&self) -> String {
        self.category.join(" > ")
    }
}

/// Why a product failed [`validate_product`]: the field and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("field \"{field}\": {kind}")]
pub struct FieldError {
    /// The offending field (`"price"`, `"attributes.color"`).
    pub field: String,
    /// What is wrong with it.
    pub kind: CatalogErrorKind,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, kind: CatalogErrorKind) -> Self {
        Self {
            field: field.into(),
            kind,
        }
    }

    /// Places this error at a line of a source, turning it into a [`CatalogError`].
    pub fn at(self, source_name: &str, line: usize) -> CatalogError {
        CatalogError::new(source_name, Some(line), Some(self.field), self.kind)
    }
}

/// The first control character (Unicode category Cc: tab, newline, carriage return, NUL,
/// DEL, ...) in a product id, if any. Ids with one are refused wherever ids come in
/// (catalogs, reranking candidates): they would split a line of tab-separated or TREC
/// output.
pub fn id_control_char(id: &str) -> Option<char> {
    id.chars().find(|c| c.is_control())
}

/// Reads a product id given as a string (trimmed) or an integer (its decimal text, the
/// form the catalog readers store an integer id in). For `#[serde(deserialize_with)]`.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct IdVisitor;
    impl serde::de::Visitor<'_> for IdVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a product id (a string or an integer)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.trim().to_owned())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(IdVisitor)
}

/// Checks the rules every product must satisfy: non-empty (after trimming) id and title, an id
/// without control characters ([`id_control_char`]), no empty category segment, non-empty attribute keys, and a price and popularity that are finite
/// and >= 0 when present. Returns the first violation.
///
/// The readers call this on every product they build; callers building products in code should
/// call it too (or use [`Catalog::from_products`](super::Catalog::from_products)).
pub fn validate_product(p: &Product) -> Result<(), FieldError> {
    if p.id.trim().is_empty() {
        return Err(FieldError::new("id", CatalogErrorKind::EmptyField));
    }
    if let Some(ch) = id_control_char(&p.id) {
        return Err(FieldError::new(
            "id",
            CatalogErrorKind::ControlCharacter {
                value: shorten(&p.id),
                ch,
            },
        ));
    }
    if p.title.trim().is_empty() {
        return Err(FieldError::new("title", CatalogErrorKind::EmptyField));
    }
    if p.category.iter().any(|s| s.trim().is_empty()) {
        return Err(FieldError::new("category", CatalogErrorKind::EmptyField));
    }
    check_amount("price", p.price)?;
    check_amount("popularity", p.popularity)?;
    if p.attributes.keys().any(|k| k.trim().is_empty()) {
        return Err(FieldError::new("attributes", CatalogErrorKind::EmptyField));
    }
    Ok(())
}

/// Checks that an optional amount is finite and >= 0.
fn check_amount(field: &str, value: Option<f64>) -> Result<(), FieldError> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(FieldError::new(
            field,
            CatalogErrorKind::InvalidNumber { value: v },
        )),
        _ => Ok(()),
    }
}

/// Splits a category path like `"Bath > Faucets"` into trimmed segments, dropping empty ones.
pub fn parse_category_path(text: &str) -> Vec<String> {
    text.split(CATEGORY_SEPARATOR)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a numeric text (`"12.5"`, `" 3 "`). Text that is not a number is a
/// [`CatalogErrorKind::WrongType`]; range checks (`"inf"`, `"-1"`) are left to
/// [`validate_product`].
pub(super) fn parse_number_text(field: &str, text: &str) -> Result<f64, FieldError> {
    text.trim().parse::<f64>().map_err(|_| {
        FieldError::new(
            field,
            CatalogErrorKind::WrongType {
                expected: "a number",
                found: quote_short(text),
            },
        )
    })
}

pub(super) use crate::lines::shorten;

/// Quotes and shortens a text value for an error message.
pub(super) fn quote_short(text: &str) -> String {
    format!("\"{}\"", shorten(text))
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.title, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Product {
        let mut p = Product::new("100001", "Simpson Strong-Tie angle");
        p.category = vec!["Hardware".into(), "Connectors".into()];
        p.price = Some(12.5);
        p.popularity = Some(0.0);
        p.attributes.insert("color".into(), "silver".into());
        p
    }

    #[test]
    fn valid_product_passes() {
        assert!(validate_product(&valid()).is_ok());
    }

    #[test]
    fn blank_id_and_title_are_empty_fields() {
        let mut p = valid();
        p.id = "  ".into();
        let err = validate_product(&p).unwrap_err();
        assert_eq!(err.field, "id");
        assert!(matches!(err.kind, CatalogErrorKind::EmptyField));

        let mut p = valid();
        p.title = String::new();
        let err = validate_product(&p).unwrap_err();
        assert_eq!(err.field, "title");
        assert!(matches!(err.kind, CatalogErrorKind::EmptyField));
    }

    #[test]
    fn ids_with_control_characters_are_refused() {
        for id in [
            "a\tb",
            "a\nb",
            "a\rb",
            "nul\0",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let mut p = valid();
            p.id = id.into();
            let err = validate_product(&p).unwrap_err();
            assert_eq!(err.field, "id", "{id:?}");
            assert!(
                matches!(err.kind, CatalogErrorKind::ControlCharacter { .. }),
                "{id:?}: {err}"
            );
        }
        let mut p = valid();
        p.id = "Crème-brûlée 12\u{a0}in".into();
        assert!(validate_product(&p).is_ok(), "printable Unicode is fine");
    }

    #[test]
    fn ids_deserialize_from_strings_and_integers() {
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(deserialize_with = "deserialize_id")]
            id: String,
        }
        let id = |json: &str| serde_json::from_str::<Row>(json).map(|r| r.id);
        assert_eq!(id(r#"{"id": " p1 "}"#).unwrap(), "p1");
        assert_eq!(id(r#"{"id": 100001}"#).unwrap(), "100001");
        assert_eq!(id(r#"{"id": -7}"#).unwrap(), "-7");
        let err = id(r#"{"id": 1.5}"#).unwrap_err().to_string();
        assert!(err.contains("a string or an integer"), "{err}");
        assert!(id(r#"{"id": true}"#).is_err());
    }

    #[test]
    fn bad_amounts_are_invalid_numbers() {
        for (price, popularity, field) in [
            (Some(-1.0), None, "price"),
            (Some(f64::NAN), None, "price"),
            (Some(f64::INFINITY), None, "price"),
            (None, Some(-0.5), "popularity"),
        ] {
            let mut p = valid();
            p.price = price;
            p.popularity = popularity;
            let err = validate_product(&p).unwrap_err();
            assert_eq!(err.field, field);
            assert!(matches!(err.kind, CatalogErrorKind::InvalidNumber { .. }));
        }
    }

    #[test]
    fn empty_category_segment_and_attribute_key_are_rejected() {
        let mut p = valid();
        p.category.push(" ".into());
        assert_eq!(validate_product(&p).unwrap_err().field, "category");

        let mut p = valid();
        p.attributes.insert(String::new(), "x".into());
        assert_eq!(validate_product(&p).unwrap_err().field, "attributes");
    }

    #[test]
    fn category_path_is_split_and_trimmed() {
        assert_eq!(
            parse_category_path(" Bath >Faucets > > Bathroom Sink "),
            vec!["Bath", "Faucets", "Bathroom Sink"]
        );
        assert!(parse_category_path("  ").is_empty());
    }

    #[test]
    fn number_text_parses_or_is_wrong_type() {
        assert_eq!(parse_number_text("price", " 12.5 ").unwrap(), 12.5);
        let err = parse_number_text("price", "abc").unwrap_err();
        assert!(matches!(
            err.kind,
            CatalogErrorKind::WrongType { expected: "a number", ref found } if found == "\"abc\""
        ));
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "é".repeat(100);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), crate::lines::MAX_EXCERPT_CHARS + 3);
        assert!(short.ends_with("..."));
    }

    #[test]
    fn serde_form_skips_absent_fields() {
        let p = Product::new("1", "t");
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"id":"1","title":"t"}"#
        );
        let back: Product = serde_json::from_str(r#"{"id":"1","title":"t"}"#).unwrap();
        assert_eq!(back, p);
    }
}
