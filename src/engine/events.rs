//! The engine's event-store facade: recording and importing shopper events,
//! forgetting a shopper, and building profiles and item statistics as of a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use serde::Serialize;

use super::{Engine, SearchRequest};
use crate::error::{Error, Result};
use crate::profile::events::{
    now_unix, read_events, EventBatch, EventError, EventErrorKind, EventReadOptions,
};
use crate::profile::store::{appended_name, Appended};
use crate::profile::{build_profile, Event, EventStore, ItemStats, PreparedBatch, Profile};
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

/// The engine's event store and the commit queue of its writers.
///
/// Readers (profiles, the event count) take `store`'s read side, which no writer holds
/// while it waits for the disk. Writers take turns through `queue`: a
/// [`Engine::record_many`] call queues its batch; the first caller to find no writer
/// at work becomes the leader, takes every queued batch, writes them with one write
/// and one fsync (each batch still its own committed batch in the log), applies them
/// to memory under a short write lock, hands each caller its own result, and gives
/// the turn to a caller still waiting (group commit). Imports and forgets take a
/// whole turn for themselves. Every write to `store` happens during a turn, so a
/// turn's holder may keep a read guard across its fsync without ever blocking a
/// reader: no one else can be waiting for the write side.
pub(super) struct SharedEvents {
    store: RwLock<EventStore>,
    queue: Mutex<CommitQueue>,
    /// Signalled when a turn ends.
    turn_ended: Condvar,
    /// Groups committed by record calls, and the calls in them.
    groups: AtomicU64,
    calls: AtomicU64,
}

impl From<EventStore> for SharedEvents {
    fn from(store: EventStore) -> Self {
        Self {
            store: RwLock::new(store),
            queue: Mutex::new(CommitQueue::default()),
            turn_ended: Condvar::new(),
            groups: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }
}

/// Writers waiting for their turn, and results not yet collected.
#[derive(Default)]
struct CommitQueue {
    /// A writer (a group's leader, an import, a forget) is at work.
    busy: bool,
    next_ticket: u64,
    /// Record calls waiting for the next group.
    pending: Vec<Pending>,
    /// Results of finished record calls, by ticket, until their callers take them.
    done: HashMap<u64, Result<Appended>>,
}

/// One queued [`Engine::record_many`] call.
struct Pending {
    ticket: u64,
    events: Vec<Event>,
    /// The events' ids, when the caller gave them (retries are then idempotent).
    ids: Option<Vec<u64>>,
}

/// A writer's turn: ends when dropped, handing the group's results to their callers
/// (or, if the leader panicked before it had them, an error to each).
struct Turn<'a> {
    events: &'a SharedEvents,
    tickets: Vec<u64>,
    results: Option<Vec<(u64, Result<Appended>)>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut queue = self.events.lock_queue();
        queue.busy = false;
        match self.results.take() {
            Some(results) => queue.done.extend(results),
            None => {
                for &ticket in &self.tickets {
                    let lost = Error::Poisoned {
                        what: "event store",
                    };
                    queue.done.insert(ticket, Err(lost));
                }
            }
        }
        drop(queue);
        self.events.turn_ended.notify_all();
    }
}

impl SharedEvents {
    /// The queue. Nothing panics while it is held, so poisoning is ignored.
    fn lock_queue(&self) -> MutexGuard<'_, CommitQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no writer is at work and takes the turn.
    fn exclusive_turn(&self) -> Turn<'_> {
        let mut queue = self.lock_queue();
        while queue.busy {
            queue = self
                .turn_ended
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        queue.busy = true;
        Turn {
            events: self,
            tickets: Vec::new(),
            results: Some(Vec::new()),
        }
    }
}

/// How the record calls of an engine were committed (see [`Engine::commit_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitStats {
    /// [`Engine::record_many`] calls committed (whether they stored events or failed).
    pub calls: u64,
    /// Groups they were committed in: each group is one write and one fsync of the log
    /// (none for a group that stored nothing). Fewer groups than calls means that
    /// concurrent calls shared fsyncs.
    pub groups: u64,
    /// Writes (each one fsync) of the event log by the engine's store since it was last
    /// (re)opened, record calls, imports and compactions' appends alike.
    pub log_syncs: u64,
    /// Record calls queued now, waiting for the group being written to finish.
    pub waiting: usize,
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
    ///
    /// Safe to call from many threads at once, and cheap that way: calls that arrive
    /// while another call's events are being written and fsynced are queued, and the
    /// next of them writes all the queued batches with one fsync (group commit). Each
    /// batch is still checked, written (as its own committed batch) and stored all or
    /// none on its own: a refused batch fails alone, and a call returns `Ok` only once
    /// its own events are durable. Reads (profiles, searches) never wait for the disk.
    pub fn record_many(&self, events: &[Event]) -> Result<()> {
        self.record_queued(events, None).map(|_| ())
    }

    /// Records events with their ids (`ids[i]` is the id of `events[i]`, for example
    /// a hash of a client's idempotency key, as the events reader computes for a
    /// line's `id` field):
    /// an event whose id is stored already, or repeated in the batch, is skipped and
    /// counted in [`Appended::duplicates`], so a client that retries a request after a
    /// timeout stores nothing twice; an event of a shopper forgotten after it
    /// happened is skipped and counted in [`Appended::forgotten`]. Otherwise as
    /// [`record_many`](Self::record_many), group commit included.
    pub fn record_identified(&self, events: &[Event], ids: &[u64]) -> Result<Appended> {
        if ids.len() != events.len() {
            return Err(Error::invalid(
                "ids",
                format!("{} ids for {} events", ids.len(), events.len()),
            ));
        }
        self.record_queued(events, Some(ids.to_vec()))
    }

    fn record_queued(&self, events: &[Event], ids: Option<Vec<u64>>) -> Result<Appended> {
        self.check_items(events)?;
        let shared = &self.events;
        let mut queue = shared.lock_queue();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.pending.push(Pending {
            ticket,
            events: events.to_vec(),
            ids,
        });
        loop {
            if let Some(result) = queue.done.remove(&ticket) {
                return result;
            }
            if queue.busy {
                queue = shared
                    .turn_ended
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // No writer at work: lead a group of every queued call (this one included).
            queue.busy = true;
            let group = std::mem::take(&mut queue.pending);
            drop(queue);
            let mut turn = Turn {
                events: shared,
                tickets: group.iter().map(|p| p.ticket).collect(),
                results: None,
            };
            turn.results = Some(self.commit_group(group));
            drop(turn);
            queue = shared.lock_queue();
        }
    }

    /// Writes a group of record calls (see [`record_many`](Self::record_many)) during
    /// the leader's turn; returns each call's result.
    fn commit_group(&self, group: Vec<Pending>) -> Vec<(u64, Result<Appended>)> {
        let shared = &self.events;
        shared.groups.fetch_add(1, Ordering::Relaxed);
        shared
            .calls
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let tickets: Vec<u64> = group.iter().map(|p| p.ticket).collect();
        let fail_all = |tickets: &[u64], e: Error| -> Vec<(u64, Result<Appended>)> {
            let mut results: Vec<(u64, Result<Appended>)> = tickets[1..]
                .iter()
                .map(|&t| (t, Err(copy_error(&e))))
                .collect();
            if let Some(&first) = tickets.first() {
                results.push((first, Err(e)));
            }
            results
        };
        let _writer = match self.writer_lock() {
            Ok(w) => w,
            Err(e) => return fail_all(&tickets, e),
        };
        let store = match self.read_events() {
            Ok(s) => s,
            Err(e) => return fail_all(&tickets, e),
        };
        let batches: Vec<(&[Event], Option<&[u64]>)> = group
            .iter()
            .map(|p| (p.events.as_slice(), p.ids.as_deref()))
            .collect();
        let mut results = Vec::with_capacity(group.len());
        let mut ok_tickets = Vec::new();
        let mut prepared = Vec::new();
        for (ticket, batch) in tickets.iter().zip(store.prepare_group(&batches)) {
            match batch {
                Ok(b) => {
                    ok_tickets.push(*ticket);
                    prepared.push(b);
                }
                Err(e) => results.push((*ticket, Err(e.into()))),
            }
        }
        let needs_compaction = if stores_any(&prepared) {
            store.needs_compaction()
        } else {
            Ok(false)
        };
        drop(store);
        let written = match needs_compaction {
            Ok(compact) => self.write_prepared(compact, &mut prepared),
            Err(e) => Err(e.into()),
        };
        match written.and_then(|()| self.apply_prepared(prepared)) {
            Ok(appended) => {
                results.extend(ok_tickets.into_iter().zip(appended.into_iter().map(Ok)))
            }
            Err(e) => results.extend(fail_all(&ok_tickets, e)),
        }
        results
    }

    /// Compacts the store first if `compact` (under the write lock: rare), then writes
    /// `prepared` to the log under the read lock (readers go on meanwhile).
    fn write_prepared(&self, compact: bool, prepared: &mut [PreparedBatch]) -> Result<()> {
        if compact {
            self.write_events_store()?.compact()?;
        }
        self.read_events()?.write_prepared(prepared)?;
        Ok(())
    }

    /// Adds written batches to memory and to the item statistics, under the write
    /// locks (memory only: short). Returns what each stored.
    fn apply_prepared(&self, prepared: Vec<PreparedBatch>) -> Result<Vec<Appended>> {
        let mut store = self.write_events_store()?;
        let mut stats = self.write_stats()?;
        let mut appended = Vec::with_capacity(prepared.len());
        for batch in prepared {
            for e in batch.events() {
                if let Some(o) = self.row_of(&e.item) {
                    stats.add(o, e.ts);
                }
            }
            appended.push(store.apply_prepared(batch)?);
        }
        Ok(appended)
    }

    /// How this engine's record calls were committed: calls, groups (fsyncs shared by
    /// concurrent calls), the log's fsyncs, and the calls queued now.
    pub fn commit_stats(&self) -> Result<CommitStats> {
        let shared = &self.events;
        Ok(CommitStats {
            calls: shared.calls.load(Ordering::Relaxed),
            groups: shared.groups.load(Ordering::Relaxed),
            log_syncs: self.read_events()?.log_syncs(),
            waiting: shared.lock_queue().pending.len(),
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
        let appended = {
            let _turn = self.events.exclusive_turn();
            let _writer = self.writer_lock()?;
            let store = self.read_events()?;
            let mut prepared = store
                .prepare_group(&[(&events, Some(&ids))])
                .into_iter()
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let compact = stores_any(&prepared) && store.needs_compaction()?;
            drop(store);
            self.write_prepared(compact, &mut prepared)?;
            self.apply_prepared(prepared)?.pop().unwrap_or_default()
        };
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
        let _turn = self.events.exclusive_turn();
        let _writer = self.writer_lock()?;
        // Under the write locks, fsyncs included: forgets are rare.
        let mut store = self.write_events_store()?;
        let mut stats = self.write_stats()?;
        {
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
        }
    }

    /// Takes the index's writer lock (during a writer's turn), after catching up with
    /// what other processes wrote since this engine last read the store (a reopen of
    /// the store, which also repairs a torn tail; an engine opened for searching holds
    /// the store read-only until then). The new store is read before the write lock
    /// is taken, so readers wait only for the swap.
    fn writer_lock(&self) -> Result<WriterLock> {
        let writer = WriterLock::acquire(&self.dir, self.wait_for_lock)?;
        let stale = {
            let store = self.read_events()?;
            store.is_read_only() || store.changed_on_disk()?
        };
        if stale {
            let fresh = EventStore::open(&IndexPaths::new(&self.dir).events_dir())?;
            let stats = self.item_stats(fresh.iter());
            let mut store = self.write_events_store()?;
            *self.write_stats()? = stats;
            *store = fresh;
        }
        Ok(writer)
    }

    /// Reads the event store again if another writer changed it since this engine
    /// read it; returns whether it did. (The statistics are the caller's to redo.)
    pub(crate) fn refresh_events(&self) -> Result<bool> {
        let _turn = self.events.exclusive_turn();
        if !self.read_events()?.changed_on_disk()? {
            return Ok(false);
        }
        let fresh = EventStore::open_read_only(&IndexPaths::new(&self.dir).events_dir())?;
        *self.write_events_store()? = fresh;
        Ok(true)
    }

    /// Item statistics over the whole store, as it is now.
    pub(crate) fn item_stats_now(&self) -> Result<ItemStats> {
        let store = self.read_events()?;
        Ok(self.item_stats(store.iter()))
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<usize> {
        Ok(self.read_events()?.len())
    }

    /// `user`'s profile from the stored events before `as_of`. Unknown users get
    /// an empty profile (cold start).
    pub fn profile(&self, user: &str, as_of: i64) -> Result<Profile> {
        let store = self.read_events()?;
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

    fn read_events(&self) -> Result<RwLockReadGuard<'_, EventStore>> {
        self.events.store.read().map_err(|_| Error::Poisoned {
            what: "event store",
        })
    }

    fn write_events_store(&self) -> Result<RwLockWriteGuard<'_, EventStore>> {
        self.events.store.write().map_err(|_| Error::Poisoned {
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

/// Whether any of the batches stores an event (else nothing is written, nor compacted).
fn stores_any(prepared: &[PreparedBatch]) -> bool {
    prepared.iter().any(|b| b.appended().stored > 0)
}

/// A copy of a group's error for each of the group's other callers (errors are not
/// `Clone`): the same variant where it matters to a caller (another process holds the
/// writer lock; a lock was poisoned), otherwise an event-store error with the message.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Locked { index, holder } => Error::Locked {
            index: index.clone(),
            holder: holder.clone(),
        },
        Error::Poisoned { what } => Error::Poisoned { what },
        Error::Events(located) => match &located.kind {
            EventErrorKind::Io { action, source } => EventError::new(
                located.source_name.clone(),
                located.line,
                located.field.as_deref().map(str::to_owned),
                EventErrorKind::Io {
                    action,
                    source: std::io::Error::new(source.kind(), source.to_string()),
                },
            )
            .into(),
            EventErrorKind::Unusable { reason } => EventError::new(
                located.source_name.clone(),
                located.line,
                located.field.as_deref().map(str::to_owned),
                EventErrorKind::Unusable {
                    reason: reason.clone(),
                },
            )
            .into(),
            _ => failed_write(e),
        },
        _ => failed_write(e),
    }
}

/// An event-store I/O error saying that the group's write failed with `e`.
fn failed_write(e: &Error) -> Error {
    EventError::whole(
        "event store",
        EventErrorKind::Io {
            action: "write the group of batches",
            source: std::io::Error::other(e.to_string()),
        },
    )
    .into()
}
