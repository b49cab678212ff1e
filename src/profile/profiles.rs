//! Shopper profiles and item statistics, computed "as of" a time.
//!
//! A [`Profile`] summarises one shopper's events strictly before `as_of`:
//!
//! * a taste vector: the L2-normalised, weighted mean of the embeddings of the
//!   items they interacted with, each event weighted by
//!   `kind_weight(kind) * 2^(-age / half_life)` where `age = as_of - ts`;
//! * per-item history: decayed weight, event count and last time;
//! * affinities to categories (top-level segment) and brands: decayed weight
//!   shares summing to 1;
//! * their usual price: the decayed mean of `ln(1 + price)`.
//!
//! [`ItemStats`] counts events per item over time so that an item's popularity
//! can be read as of any time, also without seeing the future.
//!
//! Nothing at or after `as_of` is ever read: evaluation and training build
//! profiles at each task's time, and `tests` check that a later event changes
//! nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::events::{Event, EventKind};
use crate::catalog::Product;

/// Seconds in a day.
const DAY: f64 = 86_400.0;

/// How events turn into a profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// Half-life of an event's weight, in days. 30 days: a shopper's month-old
    /// purchase counts half as much as today's (retail tastes drift seasonally).
    pub half_life_days: f64,
    /// Weight of a view.
    pub view: f32,
    /// Weight of a click.
    pub click: f32,
    /// Weight of an add-to-cart.
    pub cart: f32,
    /// Weight of a purchase.
    pub purchase: f32,
}

impl Default for ProfileConfig {
    /// Kind weights follow the usual implicit-feedback ladder (a purchase is the
    /// strongest evidence, a view the weakest): 0.1 / 0.3 / 0.6 / 1.0.
    fn default() -> Self {
        ProfileConfig {
            half_life_days: 30.0,
            view: 0.1,
            click: 0.3,
            cart: 0.6,
            purchase: 1.0,
        }
    }
}

impl ProfileConfig {
    /// The weight of an event kind.
    pub fn kind_weight(&self, kind: EventKind) -> f32 {
        match kind {
            EventKind::View => self.view,
            EventKind::Click => self.click,
            EventKind::Cart => self.cart,
            EventKind::Purchase => self.purchase,
        }
    }

    /// Decay factor of an event `age_secs` old.
    pub fn decay(&self, age_secs: i64) -> f32 {
        if self.half_life_days <= 0.0 {
            return 1.0;
        }
        let days = (age_secs.max(0) as f64) / DAY;
        (0.5f64).powf(days / self.half_life_days) as f32
    }
}

/// One shopper's history with one item.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ItemHistory {
    /// Number of events.
    pub count: u32,
    /// Number of purchases.
    pub purchases: u32,
    /// Sum of decayed, kind-weighted event weights.
    pub weight: f32,
    /// Time of the latest event (Unix seconds).
    pub last_ts: i64,
}

/// A shopper's profile as of a time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// The shopper.
    pub user: String,
    /// Only events strictly before this time were used.
    pub as_of: i64,
    /// Number of events used (those on items in the catalog).
    pub events: usize,
    /// Taste vector (unit length), `None` without events.
    pub embedding: Option<Vec<f32>>,
    /// History per product ordinal.
    pub items: HashMap<u32, ItemHistory>,
    /// Share of weight per top-level category (lower-cased).
    pub categories: HashMap<String, f32>,
    /// Share of weight per brand (lower-cased).
    pub brands: HashMap<String, f32>,
    /// Decayed mean of `ln(1 + price)` of the items, when any had a price.
    pub log_price: Option<f32>,
}

impl Profile {
    /// True when the shopper has no usable history (cold start).
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// Builds `user`'s profile from their events (sorted by time, as
/// [`super::EventStore::user_events`] returns them) strictly before `as_of`.
/// `ord_of` maps item ids to product ordinals (events on unknown items are
/// ignored); `embedding` returns a product's stored embedding.
pub fn build_profile<'a>(
    user: &str,
    events: &[Event],
    as_of: i64,
    cfg: &ProfileConfig,
    ord_of: &dyn Fn(&str) -> Option<u32>,
    product: &dyn Fn(u32) -> Option<&'a Product>,
    embedding: &dyn Fn(u32) -> Option<&'a [f32]>,
) -> Profile {
    let end = events.partition_point(|e| e.ts < as_of);
    let mut p = Profile {
        user: user.to_string(),
        as_of,
        ..Profile::default()
    };
    let mut taste: Vec<f32> = Vec::new();
    let mut price_sum = 0.0f32;
    let mut price_weight = 0.0f32;
    let mut cat_total = 0.0f32;
    let mut brand_total = 0.0f32;
    for e in &events[..end] {
        let Some(ord) = ord_of(&e.item) else { continue };
        let w = cfg.kind_weight(e.kind) * cfg.decay(as_of - e.ts);
        p.events += 1;
        let h = p.items.entry(ord).or_default();
        h.count += 1;
        if e.kind == EventKind::Purchase {
            h.purchases += 1;
        }
        h.weight += w;
        h.last_ts = h.last_ts.max(e.ts);
        if let Some(v) = embedding(ord) {
            if taste.is_empty() {
                taste = vec![0.0; v.len()];
            }
            if taste.len() == v.len() {
                for (t, x) in taste.iter_mut().zip(v) {
                    *t += w * x;
                }
            }
        }
        if let Some(prod) = product(ord) {
            if let Some(top) = prod.category.first() {
                *p.categories.entry(top.to_lowercase()).or_default() += w;
                cat_total += w;
            }
            if let Some(b) = &prod.brand {
                *p.brands.entry(b.to_lowercase()).or_default() += w;
                brand_total += w;
            }
            if let Some(price) = prod.price {
                price_sum += w * (price as f32).ln_1p();
                price_weight += w;
            }
        }
    }
    let norm = taste.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        p.embedding = Some(taste.into_iter().map(|x| x / norm).collect());
    }
    for (map, total) in [(&mut p.categories, cat_total), (&mut p.brands, brand_total)] {
        if total > 0.0 {
            for v in map.values_mut() {
                *v /= total;
            }
        }
    }
    if price_weight > 0.0 {
        p.log_price = Some(price_sum / price_weight);
    }
    p
}

/// Window of "recent" popularity: 30 days.
pub const RECENT_SECS: i64 = 30 * 86_400;

/// Event times per item, to read popularity as of any time.
#[derive(Debug, Clone, Default)]
pub struct ItemStats {
    times: HashMap<u32, Vec<i64>>,
}

impl ItemStats {
    /// Counts `events` (any order) on known items.
    pub fn from_events<'e>(
        events: impl IntoIterator<Item = &'e Event>,
        ord_of: &dyn Fn(&str) -> Option<u32>,
    ) -> Self {
        let mut s = ItemStats::default();
        for e in events {
            if let Some(o) = ord_of(&e.item) {
                s.times.entry(o).or_default().push(e.ts);
            }
        }
        for t in s.times.values_mut() {
            t.sort_unstable();
        }
        s
    }

    /// Adds one event.
    pub fn add(&mut self, ord: u32, ts: i64) {
        let t = self.times.entry(ord).or_default();
        let at = t.partition_point(|&x| x <= ts);
        t.insert(at, ts);
    }

    /// Removes one event (used when a shopper is forgotten).
    pub fn remove(&mut self, ord: u32, ts: i64) {
        if let Some(t) = self.times.get_mut(&ord) {
            if let Ok(i) = t.binary_search(&ts) {
                t.remove(i);
            }
        }
    }

    /// Events on `ord` strictly before `as_of`.
    pub fn count_before(&self, ord: u32, as_of: i64) -> usize {
        self.times
            .get(&ord)
            .map_or(0, |t| t.partition_point(|&x| x < as_of))
    }

    /// Events on `ord` in the [`RECENT_SECS`] before `as_of`.
    pub fn recent_before(&self, ord: u32, as_of: i64) -> usize {
        self.times.get(&ord).map_or(0, |t| {
            t.partition_point(|&x| x < as_of) - t.partition_point(|&x| x < as_of - RECENT_SECS)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, cat: &str, price: f64) -> Product {
        let mut p = Product::new(id, id);
        p.category = vec![cat.to_string()];
        p.price = Some(price);
        p
    }

    #[test]
    fn a_future_event_never_reaches_a_profile() {
        let products = [product("a", "Bath", 10.0), product("b", "Tools", 100.0)];
        let vecs = [vec![1.0f32, 0.0], vec![0.0, 1.0]];
        let ord_of = |id: &str| products.iter().position(|p| p.id == id).map(|i| i as u32);
        let prod = |o: u32| products.get(o as usize);
        let emb = |o: u32| vecs.get(o as usize).map(Vec::as_slice);
        let cfg = ProfileConfig::default();
        let past = vec![Event::new("u", "a", EventKind::Purchase, 100)];
        let mut with_future = past.clone();
        with_future.push(Event::new("u", "b", EventKind::Purchase, 200));
        with_future.push(Event::new("u", "b", EventKind::Purchase, 300));
        // As of 200: the event at exactly 200 is not "before".
        let p1 = build_profile("u", &past, 200, &cfg, &ord_of, &prod, &emb);
        let p2 = build_profile("u", &with_future, 200, &cfg, &ord_of, &prod, &emb);
        assert_eq!(p1, p2);
        assert_eq!(p2.events, 1);
        assert!(!p2.items.contains_key(&1));
        assert_eq!(p2.embedding.as_deref(), Some(&[1.0, 0.0][..]));
        let p3 = build_profile("u", &with_future, 201, &cfg, &ord_of, &prod, &emb);
        assert_eq!(p3.events, 2);
    }

    #[test]
    fn decay_and_weights() {
        let cfg = ProfileConfig::default();
        assert!((cfg.decay(30 * 86_400) - 0.5).abs() < 1e-6);
        assert_eq!(cfg.decay(-5), 1.0);
        assert!(cfg.kind_weight(EventKind::Purchase) > cfg.kind_weight(EventKind::View));
    }

    #[test]
    fn affinities_sum_to_one_and_price_is_tracked() {
        let products = [product("a", "Bath", 10.0), product("b", "Tools", 100.0)];
        let ord_of = |id: &str| products.iter().position(|p| p.id == id).map(|i| i as u32);
        let prod = |o: u32| products.get(o as usize);
        let emb = |_: u32| None;
        let ev = vec![
            Event::new("u", "a", EventKind::Purchase, 0),
            Event::new("u", "b", EventKind::Click, 0),
            Event::new("u", "zzz", EventKind::Click, 0),
        ];
        let p = build_profile(
            "u",
            &ev,
            10,
            &ProfileConfig::default(),
            &ord_of,
            &prod,
            &emb,
        );
        assert_eq!(p.events, 2, "unknown items are ignored");
        let total: f32 = p.categories.values().sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(p.categories["bath"] > p.categories["tools"]);
        assert!(p.log_price.is_some());
        assert!(p.embedding.is_none());
    }

    #[test]
    fn item_stats_read_as_of() {
        let ev = vec![
            Event::new("u", "a", EventKind::Purchase, 10),
            Event::new("v", "a", EventKind::Purchase, 20),
            Event::new("v", "a", EventKind::Purchase, 40 * 86_400),
        ];
        let mut s = ItemStats::from_events(&ev, &|id: &str| (id == "a").then_some(0));
        assert_eq!(s.count_before(0, 20), 1);
        assert_eq!(s.count_before(0, 21), 2);
        assert_eq!(s.recent_before(0, 40 * 86_400 + 1), 1);
        s.add(0, 15);
        assert_eq!(s.count_before(0, 20), 2);
        s.remove(0, 15);
        assert_eq!(s.count_before(0, 20), 1);
        assert_eq!(s.count_before(7, 100), 0);
    }
}
