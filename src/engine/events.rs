//! The engine's event-store facade: recording and importing shopper events,
//! forgetting a shopper, and building profiles and item statistics as of a time.

use std::path::Path;
use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use super::{Engine, SearchRequest};
use crate::error::{Error, Result};
use crate::profile::events::{
    now_unix, read_events, EventBatch, EventError, EventErrorKind, EventReadOptions,
};
use crate::profile::store::appended_name;
use crate::profile::{build_profile, Event, EventStore, ItemStats, Profile};

/// What [`Engine::import_events`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Events stored.
    pub imported: usize,
    /// Lines skipped (with `skip_invalid`).
    pub skipped: usize,
    /// The first reasons, as text.
    pub problems: Vec<String>,
}

impl Engine {
    /// Records one event: it is durable (fsynced) when this returns, and the
    /// shopper's profile reflects it at once.
    pub fn record(&self, event: Event) -> Result<()> {
        self.record_many(std::slice::from_ref(&event))
    }

    /// Records events (one fsync for all). Unknown item ids are refused.
    pub fn record_many(&self, events: &[Event]) -> Result<()> {
        for (i, e) in events.iter().enumerate() {
            if !self.by_id.contains_key(&e.item) {
                return Err(EventError::new(
                    appended_name(i, events.len()),
                    None,
                    Some("item".into()),
                    EventErrorKind::UnknownItem {
                        item: e.item.clone(),
                    },
                )
                .into());
            }
        }
        let mut store = self.lock_events()?;
        store.append(events)?;
        let mut stats = self.write_stats()?;
        for e in events {
            if let Some(&o) = self.by_id.get(&e.item) {
                stats.add(o, e.ts);
            }
        }
        Ok(())
    }

    /// Loads an events JSONL file into the store (see [`read_events`]).
    pub fn import_events(&self, path: &Path, opts: &EventReadOptions) -> Result<ImportSummary> {
        let EventBatch {
            events,
            skipped,
            problems,
        } = read_events(path, opts, &|id: &str| self.by_id.contains_key(id))?;
        for chunk in events.chunks(10_000) {
            self.record_many(chunk)?;
        }
        Ok(ImportSummary {
            imported: events.len(),
            skipped,
            problems: problems.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// Removes everything stored about `user`; returns how many events were removed.
    pub fn forget(&self, user: &str) -> Result<usize> {
        let mut store = self.lock_events()?;
        let gone: Vec<(String, i64)> = store
            .user_events(user)
            .iter()
            .map(|e| (e.item.clone(), e.ts))
            .collect();
        let n = store.forget(user)?;
        let mut stats = self.write_stats()?;
        for (item, ts) in gone {
            if let Some(&o) = self.by_id.get(&item) {
                stats.remove(o, ts);
            }
        }
        Ok(n)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<usize> {
        Ok(self.lock_events()?.len())
    }

    /// `user`'s profile from the stored events before `as_of`. Unknown users get
    /// an empty profile (cold start).
    pub fn profile(&self, user: &str, as_of: i64) -> Result<Profile> {
        let store = self.lock_events()?;
        Ok(self.profile_from(user, store.user_events(user), as_of))
    }

    /// A profile from the given events (sorted by time) before `as_of`.
    pub(crate) fn profile_from(&self, user: &str, events: &[Event], as_of: i64) -> Profile {
        build_profile(
            user,
            events,
            as_of,
            &self.profile_cfg,
            &|id: &str| self.by_id.get(id).copied(),
            &|o: u32| self.products.get(o as usize),
            &|o: u32| self.vectors.row(o as usize),
        )
    }

    /// Item statistics over the given events (for evaluation with external logs).
    pub(crate) fn item_stats<'e>(&self, events: impl IntoIterator<Item = &'e Event>) -> ItemStats {
        ItemStats::from_events(events, &|id: &str| self.by_id.get(id).copied())
    }

    /// The request's time (default now) and its shopper's profile at that time.
    pub(crate) fn request_profile(&self, req: &SearchRequest) -> Result<(i64, Option<Profile>)> {
        let as_of = req.as_of.unwrap_or_else(now_unix);
        let profile = req
            .user
            .as_deref()
            .map(|u| self.profile(u, as_of))
            .transpose()?;
        Ok((as_of, profile))
    }

    fn lock_events(&self) -> Result<MutexGuard<'_, EventStore>> {
        self.events.lock().map_err(|_| Error::Poisoned {
            what: "event store",
        })
    }

    pub(crate) fn read_stats(&self) -> Result<RwLockReadGuard<'_, ItemStats>> {
        self.stats.read().map_err(|_| Error::Poisoned {
            what: "item statistics",
        })
    }

    fn write_stats(&self) -> Result<RwLockWriteGuard<'_, ItemStats>> {
        self.stats.write().map_err(|_| Error::Poisoned {
            what: "item statistics",
        })
    }
}
