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
use crate::store::{IndexPaths, WriterLock};

/// What [`Engine::import_events`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Events stored.
    pub imported: usize,
    /// Events skipped because their id was stored already (an import repeated).
    pub duplicates: usize,
    /// Events skipped because their shopper was forgotten after they happened.
    pub forgotten: usize,
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

    /// Records events (one fsync for all, stored all or none). Unknown item ids are
    /// refused. Takes the index's writer lock for the time of the write (see
    /// [`EngineBuilder::wait_for_lock`](super::EngineBuilder::wait_for_lock)).
    pub fn record_many(&self, events: &[Event]) -> Result<()> {
        self.check_items(events)?;
        self.write_events(|store, stats| {
            store.append(events)?;
            for e in events {
                if let Some(o) = self.row_of(&e.item) {
                    stats.add(o, e.ts);
                }
            }
            Ok(())
        })
    }

    /// Refuses events whose item is not in the catalog.
    fn check_items(&self, events: &[Event]) -> Result<()> {
        for (i, e) in events.iter().enumerate() {
            if self.row_of(&e.item).is_none() {
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
        Ok(())
    }

    /// Loads an events JSONL file into the store (see [`read_events`]), all or
    /// nothing: the file's events are written as one batch with one fsync, so after a
    /// failure or a crash none of them is stored. Events whose id is stored already
    /// are skipped ([`ImportSummary::duplicates`]), so importing a file again after
    /// a failure or a timeout stores each event once.
    pub fn import_events(&self, path: &Path, opts: &EventReadOptions) -> Result<ImportSummary> {
        let EventBatch {
            events,
            ids,
            skipped,
            problems,
        } = read_events(path, opts, &|id: &str| self.row_of(id).is_some())?;
        let appended = self.write_events(|store, stats| {
            let appended = store.append_identified(&events, &ids)?;
            *stats = self.item_stats(store.iter());
            Ok(appended)
        })?;
        Ok(ImportSummary {
            imported: appended.stored,
            duplicates: appended.duplicates,
            forgotten: appended.forgotten,
            skipped,
            problems: problems.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// Removes everything stored about `user`, durably; returns how many events were
    /// removed. Events of `user` dated before now are refused from then on (see
    /// [`EventStore::forget`]).
    pub fn forget(&self, user: &str) -> Result<usize> {
        self.write_events(|store, stats| {
            let gone: Vec<(String, i64)> = store
                .user_events(user)
                .iter()
                .map(|e| (e.item.clone(), e.ts))
                .collect();
            let n = store.forget(user)?;
            for (item, ts) in gone {
                if let Some(o) = self.row_of(&item) {
                    stats.remove(o, ts);
                }
            }
            Ok(n)
        })
    }

    /// Runs `write` on the event store and the item statistics under the index's
    /// writer lock, after catching up with what other processes wrote since this
    /// engine last read the store (a reopen of the store, which also repairs a torn
    /// tail; an engine opened for searching holds the store read-only until then).
    fn write_events<T>(
        &self,
        write: impl FnOnce(&mut EventStore, &mut ItemStats) -> Result<T>,
    ) -> Result<T> {
        let mut store = self.lock_events()?;
        let _writer = WriterLock::acquire(&self.dir, self.wait_for_lock)?;
        if store.is_read_only() || store.changed_on_disk()? {
            let fresh = EventStore::open(&IndexPaths::new(&self.dir).events_dir())?;
            *self.write_stats()? = self.item_stats(fresh.iter());
            *store = fresh;
        }
        let mut stats = self.write_stats()?;
        write(&mut store, &mut stats)
    }

    /// Reads the event store again if another writer changed it since this engine
    /// read it; returns whether it did. (The statistics are the caller's to redo.)
    pub(crate) fn refresh_events(&self) -> Result<bool> {
        let mut store = self.lock_events()?;
        if !store.changed_on_disk()? {
            return Ok(false);
        }
        *store = EventStore::open_read_only(&IndexPaths::new(&self.dir).events_dir())?;
        Ok(true)
    }

    /// Item statistics over the whole store, as it is now.
    pub(crate) fn item_stats_now(&self) -> Result<ItemStats> {
        let store = self.lock_events()?;
        Ok(self.item_stats(store.iter()))
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
            &|id: &str| self.row_of(id),
            &|o: u32| self.product_at(o),
            &|o: u32| self.embedding_at(o),
        )
    }

    /// Item statistics over the given events (for evaluation with external logs).
    pub(crate) fn item_stats<'e>(&self, events: impl IntoIterator<Item = &'e Event>) -> ItemStats {
        ItemStats::from_events(events, &|id: &str| self.row_of(id))
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

    pub(crate) fn write_stats(&self) -> Result<RwLockWriteGuard<'_, ItemStats>> {
        self.stats.write().map_err(|_| Error::Poisoned {
            what: "item statistics",
        })
    }
}
