//! Which CSV/TSV columns hold which product fields.
//!
//! A column map is written as comma-separated `FIELD=COLUMN` pairs, as on the command line:
//! `id=sku,title=name,category=cat,attr.color=colour`. Fields left out of the map are read from
//! a column named like the field, if the header has one; `attr.KEY=COLUMN` puts a column into
//! the product's attributes under `KEY`.
//!
//! Column names match the header exactly (after trimming), or else ASCII case-insensitively. A
//! name that matches more than one header column is an error, as is an explicitly mapped column
//! that is not in the header, or a header without a column for `id` or `title`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::{CatalogError, CatalogErrorKind};

/// The source name [`ColumnMap`] parse errors carry.
const COLUMN_MAP_SOURCE: &str = "column map";

/// The prefix that maps a column into the attributes: `attr.KEY=COLUMN`.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

/// The product fields a column can be mapped to (besides `attr.KEY`).
pub const MAPPABLE_FIELDS: [&str; 7] = [
    "id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "popularity",
];

/// Which CSV/TSV columns hold which product fields. The default (empty) map reads every field
/// from the column named like it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnMap {
    /// Field name (`"id"`, `"attr.color"`) -> column name.
    fields: BTreeMap<String, String>,
}

impl ColumnMap {
    /// An empty map: every field comes from the column named like it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `field` (one of [`MAPPABLE_FIELDS`] or `attr.KEY`) to `column`.
    ///
    /// Fails with [`CatalogErrorKind::BadColumnMap`] for an unknown field, an empty column or
    /// attribute key, or a field mapped twice.
    pub fn set(&mut self, field: &str, column: &str) -> Result<(), CatalogError> {
        let field = field.trim();
        let column = column.trim();
        let bad = |field: &str, reason: String| {
            CatalogError::new(
                COLUMN_MAP_SOURCE,
                None,
                (!field.is_empty()).then(|| field.to_owned()),
                CatalogErrorKind::BadColumnMap { reason },
            )
        };
        if let Some(key) = field.strip_prefix(ATTRIBUTE_PREFIX) {
            if key.trim().is_empty() {
                return Err(bad(
                    field,
                    format!("empty attribute key in \"{field}\"; write attr.KEY=COLUMN"),
                ));
            }
        } else if !MAPPABLE_FIELDS.contains(&field) {
            return Err(bad(
                field,
                format!(
                    "unknown field \"{field}\"; expected one of {} or attr.KEY",
                    MAPPABLE_FIELDS.join(", ")
                ),
            ));
        }
        if column.is_empty() {
            return Err(bad(
                field,
                format!("empty column name for field \"{field}\""),
            ));
        }
        if let Some(previous) = self.fields.get(field) {
            return Err(bad(
                field,
                format!(
                    "field \"{field}\" is mapped twice (to \"{previous}\" and to \"{column}\")"
                ),
            ));
        }
        self.fields.insert(field.to_owned(), column.to_owned());
        Ok(())
    }

    /// The column explicitly mapped to `field`, if any.
    pub fn column(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The explicit `(field, column)` pairs, sorted by field.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(f, c)| (f.as_str(), c.as_str()))
    }

    /// `true` when nothing is mapped explicitly.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Finds the header index of every field this map (or the defaults) asks for. Errors are
    /// placed at `header_line`.
    pub(super) fn resolve(
        &self,
        header: &[String],
        source_name: &str,
        header_line: usize,
    ) -> Result<ResolvedColumns, CatalogError> {
        let find = |field: &str, column: &str| -> Result<Option<usize>, CatalogError> {
            let matches = |pred: &dyn Fn(&str) -> bool| -> Vec<usize> {
                header
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| pred(h))
                    .map(|(i, _)| i)
                    .collect()
            };
            let mut found = matches(&|h| h == column);
            if found.is_empty() {
                found = matches(&|h| h.eq_ignore_ascii_case(column));
            }
            match found.as_slice() {
                [] => Ok(None),
                [index] => Ok(Some(*index)),
                _ => Err(CatalogError::new(
                    source_name,
                    Some(header_line),
                    Some(field.to_owned()),
                    CatalogErrorKind::DuplicateColumn {
                        column: column.to_owned(),
                    },
                )),
            }
        };
        let unknown = |field: &str, column: &str| {
            CatalogError::new(
                source_name,
                Some(header_line),
                Some(field.to_owned()),
                CatalogErrorKind::UnknownColumn {
                    column: column.to_owned(),
                    available: header.to_vec(),
                },
            )
        };
        // An explicitly mapped column must exist; a default one may be absent.
        let optional = |field: &str| -> Result<Option<usize>, CatalogError> {
            match self.column(field) {
                Some(column) => find(field, column)?
                    .map(Some)
                    .ok_or_else(|| unknown(field, column)),
                None => find(field, field),
            }
        };
        let required = |field: &str| -> Result<usize, CatalogError> {
            let column = self.column(field).unwrap_or(field);
            find(field, column)?.ok_or_else(|| unknown(field, column))
        };
        let mut attributes = Vec::new();
        for (field, column) in self.iter() {
            if let Some(key) = field.strip_prefix(ATTRIBUTE_PREFIX) {
                let index = find(field, column)?.ok_or_else(|| unknown(field, column))?;
                attributes.push((key.trim().to_owned(), index));
            }
        }
        Ok(ResolvedColumns {
            id: required("id")?,
            title: required("title")?,
            description: optional("description")?,
            category: optional("category")?,
            brand: optional("brand")?,
            price: optional("price")?,
            popularity: optional("popularity")?,
            attributes,
        })
    }
}

/// Header indices of the columns holding each field, for one CSV/TSV input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedColumns {
    pub(super) id: usize,
    pub(super) title: usize,
    pub(super) description: Option<usize>,
    pub(super) category: Option<usize>,
    pub(super) brand: Option<usize>,
    pub(super) price: Option<usize>,
    pub(super) popularity: Option<usize>,
    /// `(attribute key, column index)` pairs.
    pub(super) attributes: Vec<(String, usize)>,
}

impl FromStr for ColumnMap {
    type Err = CatalogError;

    /// Parses `FIELD=COLUMN` pairs separated by commas; whitespace around names is ignored and
    /// empty entries (a trailing comma) are skipped. An empty string is the empty map.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut map = ColumnMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((field, column)) = entry.split_once('=') else {
                return Err(CatalogError::new(
                    COLUMN_MAP_SOURCE,
                    None,
                    None,
                    CatalogErrorKind::BadColumnMap {
                        reason: format!("\"{entry}\" has no '='; write FIELD=COLUMN, e.g. id=sku"),
                    },
                ));
            };
            map.set(field, column)?;
        }
        Ok(map)
    }
}

impl fmt::Display for ColumnMap {
    /// Writes the map back in the `FIELD=COLUMN,...` form [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, column)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{field}={column}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn bad_reason(spec: &str) -> (Option<String>, String) {
        let err = spec.parse::<ColumnMap>().unwrap_err();
        assert_eq!(err.line(), None);
        match err.kind {
            CatalogErrorKind::BadColumnMap { reason } => (err.field.map(String::from), reason),
            other => panic!("expected BadColumnMap, got {other:?}"),
        }
    }

    #[test]
    fn parses_full_spec_and_round_trips() {
        let spec = "id=sku,title=name,description=desc,category=cat,brand=maker,price=cost,\
                    popularity=sales,attr.color=colour,attr.size=size";
        let map: ColumnMap = spec.parse().unwrap();
        assert_eq!(map.column("id"), Some("sku"));
        assert_eq!(map.column("popularity"), Some("sales"));
        assert_eq!(map.column("attr.color"), Some("colour"));
        assert_eq!(map.column("attr.size"), Some("size"));
        assert_eq!(map.iter().count(), 9);
        let again: ColumnMap = map.to_string().parse().unwrap();
        assert_eq!(again, map);
    }

    #[test]
    fn whitespace_and_empty_entries_are_tolerated() {
        let map: ColumnMap = " id = sku , title=name ,".parse().unwrap();
        assert_eq!(map.column("id"), Some("sku"));
        assert_eq!(map.column("title"), Some("name"));
        assert!("".parse::<ColumnMap>().unwrap().is_empty());
    }

    #[test]
    fn unknown_field_is_rejected() {
        let (field, reason) = bad_reason("id=sku,colour=c");
        assert_eq!(field.as_deref(), Some("colour"));
        assert!(reason.contains("unknown field \"colour\""), "{reason}");
        assert!(reason.contains("id, title, description"), "{reason}");
    }

    #[test]
    fn missing_equals_is_rejected() {
        let (field, reason) = bad_reason("id=sku,title");
        assert_eq!(field, None);
        assert!(reason.contains("\"title\" has no '='"), "{reason}");
    }

    #[test]
    fn duplicate_field_is_rejected() {
        let (field, reason) = bad_reason("id=sku,title=a,id=code");
        assert_eq!(field.as_deref(), Some("id"));
        assert!(reason.contains("mapped twice"), "{reason}");
        assert!(
            reason.contains("\"sku\"") && reason.contains("\"code\""),
            "{reason}"
        );
    }

    #[test]
    fn empty_column_and_empty_attribute_key_are_rejected() {
        let (field, reason) = bad_reason("id=");
        assert_eq!(field.as_deref(), Some("id"));
        assert!(reason.contains("empty column name"), "{reason}");
        let (field, reason) = bad_reason("attr.=colour");
        assert_eq!(field.as_deref(), Some("attr."));
        assert!(reason.contains("empty attribute key"), "{reason}");
    }

    #[test]
    fn display_of_bad_map_error() {
        let err = "price".parse::<ColumnMap>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "column map: bad column map: \"price\" has no '='; write FIELD=COLUMN, e.g. id=sku"
        );
    }

    #[test]
    fn resolve_uses_defaults_and_explicit_columns() {
        let map: ColumnMap = "id=sku,attr.color=colour".parse().unwrap();
        let cols = map
            .resolve(&header(&["sku", "Title", "price", "colour"]), "c.csv", 1)
            .unwrap();
        assert_eq!(cols.id, 0);
        assert_eq!(cols.title, 1, "default match is case-insensitive");
        assert_eq!(cols.price, Some(2));
        assert_eq!(cols.description, None);
        assert_eq!(cols.attributes, vec![("color".to_string(), 3)]);
    }

    #[test]
    fn resolve_reports_unknown_column() {
        let map: ColumnMap = "id=sku,brand=maker".parse().unwrap();
        let err = map
            .resolve(&header(&["sku", "title"]), "c.csv", 1)
            .unwrap_err();
        assert_eq!(err.field(), Some("brand"));
        match &err.kind {
            CatalogErrorKind::UnknownColumn { column, available } => {
                assert_eq!(column, "maker");
                assert_eq!(available, &header(&["sku", "title"]));
            }
            other => panic!("expected UnknownColumn, got {other:?}"),
        }
        assert!(err.to_string().contains("the header has: sku, title"));
    }

    #[test]
    fn resolve_requires_id_and_title_columns() {
        let err = ColumnMap::new()
            .resolve(&header(&["sku", "title"]), "c.csv", 1)
            .unwrap_err();
        assert_eq!(err.field(), Some("id"));
        assert!(
            matches!(err.kind, CatalogErrorKind::UnknownColumn { ref column, .. } if column == "id")
        );
    }

    #[test]
    fn resolve_rejects_ambiguous_column() {
        let err = ColumnMap::new()
            .resolve(&header(&["id", "title", "id"]), "c.csv", 1)
            .unwrap_err();
        assert_eq!(err.field(), Some("id"));
        assert!(matches!(err.kind, CatalogErrorKind::DuplicateColumn { .. }));
    }
}
