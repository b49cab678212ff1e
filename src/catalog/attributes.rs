//! [`Attributes`]: a product's free-form attributes, kept compact.

use std::fmt;
use std::ops::Index;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A product's attributes (`"color" -> "white"`): each key once, iterated in key
/// order, with the API of a `BTreeMap<String, String>` that products use.
///
/// Held as one sorted vector of pairs, two strings an attribute: a `BTreeMap`'s
/// first node alone takes about 550 bytes, which was half of a served product's
/// memory on the generated million-product catalog (README, "Scale"). Serialised
/// as a map (a JSON object; bincode's map form, the same bytes a `BTreeMap`
/// writes). A key given twice keeps its last value, as a `BTreeMap` would.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(Vec<(String, String)>);

impl Attributes {
    /// No attributes.
    pub fn new() -> Self {
        Attributes(Vec::new())
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// True when `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// (key, value) pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &String)> + DoubleEndedIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> + DoubleEndedIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &String> + DoubleEndedIterator {
        self.0.iter().map(|(_, v)| v)
    }
}

impl FromIterator<(String, String)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut pairs: Vec<(String, String)> = iter.into_iter().collect();
        // Stable: of equal keys, the last given stays last, and is kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        out.shrink_to_fit();
        Attributes(out)
    }
}

impl<const N: usize> From<[(String, String); N]> for Attributes {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl Extend<(String, String)> for Attributes {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Attributes {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Index<&str> for Attributes {
    type Output = String;

    /// The value of `key`; panics when there is none, like a `BTreeMap`.
    fn index(&self, key: &str) -> &String {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no attribute {key:?}"),
        }
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;

        impl<'de> Visitor<'de> for Pairs {
            type Value = Attributes;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Attributes, A::Error> {
                // The size hint is the input's claim: cap what is reserved on it.
                let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = access.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }

        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keeps_key_order_and_the_last_value_of_a_repeated_key() {
        let a = attrs(&[("size", "2"), ("color", "red"), ("size", "3")]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["color", "size"]);
        assert_eq!(a["size"], "3");
        assert_eq!(a.get("weight"), None);
        let mut b = Attributes::new();
        assert_eq!(b.insert("size".into(), "2".into()), None);
        assert_eq!(b.insert("color".into(), "red".into()), None);
        assert_eq!(b.insert("size".into(), "3".into()), Some("2".into()));
        assert_eq!(a, b);
        assert_eq!(b.remove("color"), Some("red".into()));
        assert!(!b.contains_key("color") && b.contains_key("size"));
    }

    #[test]
    fn serialises_like_a_btreemap() {
        let a = attrs(&[("size", "2"), ("color", "red")]);
        let map: std::collections::BTreeMap<String, String> =
            a.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&a, config).unwrap();
        assert_eq!(bytes, bincode::serde::encode_to_vec(&map, config).unwrap());
        let (back, _): (Attributes, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, a);
        let json: Attributes = serde_json::from_str(r#"{"b": "1", "a": "2", "b": "3"}"#).unwrap();
        assert_eq!(json, attrs(&[("a", "2"), ("b", "3")]));
        assert!(serde_json::from_str::<Attributes>(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn holds_no_spare_capacity_once_collected() {
        let a = attrs(&[("size", "2")]);
        assert_eq!(a.0.capacity(), 1);
    }
}
