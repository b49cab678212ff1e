//! The embedded, crash-safe event store: every acknowledged event survives a killed process
//! or a power loss.
//!
//! One [`EventStore`] per index keeps all recorded [`Event`]s in memory, grouped by user and
//! sorted by time, and on disk in a directory of two files:
//!
//! | file | content |
//! | --- | --- |
//! | `snapshot.bin` | every event at the last compaction, written atomically (absent until the first one) |
//! | `log.bin` | the events appended since, one checksummed record each |
//!
//! # Durability
//!
//! [`EventStore::append`] writes a batch to the end of the log, its event records followed
//! by a commit record, and calls `fsync` (`File::sync_data`) before it returns `Ok`: once
//! acknowledged, an event is on disk. Only committed batches count: a crash in the middle
//! of an append leaves an uncommitted or torn tail, which readers ignore and the next writer
//! cuts off (reporting how many bytes in [`EventStore::recovered_bytes`]), so a batch (a
//! whole import) is stored entirely or not at all. Damage anywhere else, such as a bad
//! record followed by good ones, is not what a crash leaves: opening fails with an error
//! naming the file and the byte offset, and nothing on disk is changed. So is a snapshot
//! without its log, or a log whose generation says that a newer snapshot than the one
//! present was written.
//!
//! A writer that must not hold an exclusive lock on the store while it waits for the disk
//! (the engine, whose readers would wait) splits an append in three:
//! [`EventStore::prepare_group`] checks and encodes one or several batches, each on its
//! own (`&self`); [`EventStore::write_prepared`] writes them with one write and one fsync,
//! each still its own committed batch (`&self`: the log handle has its own lock);
//! [`EventStore::apply_prepared`] adds each to memory (`&mut self`, no I/O). A crash in the
//! middle of such a group write keeps each batch whole or absent, like any torn tail.
//!
//! [`EventStore::compact`] and [`EventStore::forget`] rewrite the snapshot the atomic way
//! (a temporary file in the same directory, fsync, rename, fsync of the directory) and then
//! replace the log with an empty one the same way. The snapshot's rename is the commit
//! point. Each log carries a generation number and the snapshot records the first
//! generation it does not contain, so a crash between the two renames cannot replay old log
//! records on top of the new snapshot (and cannot bring back the events of a forgotten
//! user). Appends compact first when the log holds [`COMPACT_AFTER_RECORDS`] records or more.
//!
//! Events may carry an id ([`EventStore::append_identified`]); an event whose id is stored
//! already is skipped, so a retried import stores nothing twice. A forget keeps a hash of
//! the user id with its time, and events of that user dated before it are refused later.
//!
//! # Sharing between processes
//!
//! One process writes at a time: the caller holds the index's writer lock
//! ([`crate::store::WriterLock`]) around [`EventStore::open`] and every write, and reopens
//! the store when [`EventStore::changed_on_disk`] says another writer came in between (the
//! engine does both). Readers use [`EventStore::open_read_only`], which never creates, cuts
//! or deletes a file: it reads the snapshot, then the committed batches of the log, and
//! reads both again if a compaction replaced them in between.
//!
//! # On-disk format, version 2 ([`FORMAT_VERSION`]; version 1 is still read)
//!
//! Integers are little-endian. Both files start with a 24-byte header:
//!
//! | bytes | content |
//! | --- | --- |
//! | 0..8 | magic: `SRLOG\0\0\0` for the log, `SRSNAP\0\0` for the snapshot |
//! | 8..12 | format version, `u32` |
//! | 12..20 | generation, `u64`: the log's own; for the snapshot, the first log generation it does not contain |
//! | 20..24 | CRC-32 of bytes 0..20, `u32` |
//!
//! The log then holds records, each `u32` payload length, `u32` CRC-32 (IEEE) of the payload,
//! payload. A payload is bincode 2 with the standard configuration (varints), through serde,
//! of an enum: variant 0, an event: its id (`Option<u64>`) then the event's fields in this
//! order: `user` string, `item` string, `kind` `u8` (0 view, 1 click, 2 cart, 3 purchase),
//! `ts` `i64`, `quantity` `Option<f64>`, `query` `Option<String>`, `position` `Option<u32>`;
//! variant 1, a commit: the number of events of the batch it ends (`u32`). Payloads are at
//! most [`MAX_RECORD_BYTES`]. (Version 1 records are the event's fields alone, each one
//! committed by itself.)
//!
//! The snapshot then holds one `u64` payload length, one `u32` CRC-32 of the payload, and the
//! payload: bincode of the stored event ids (a sequence of `u64`), the forgotten users (a
//! sequence of (hash of the user id, `u64` FNV-1a; time of the forget, `i64`)), and the events
//! in the form above without ids, grouped by user (users in byte order), each user's events
//! in store order. (A version 1 snapshot is the sequence of events alone.)
//!
//! The stored form is its own private type, so a change to [`Event`] does not silently change
//! the format: it fails to compile until the conversion is updated, which is the moment to
//! bump [`FORMAT_VERSION`].

mod format;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::profile::events::{
    check_event_values, read_events, Event, EventError, EventErrorKind, EventReadOptions,
};
use crate::store::durable::{self, IoFailure};
use crate::store::layout::{EVENT_LOG as LOG_FILE, EVENT_SNAPSHOT as SNAPSHOT_FILE};
use format::*;

impl From<IoFailure> for EventError {
    fn from(e: IoFailure) -> Self {
        EventError::whole(
            e.path.display().to_string(),
            EventErrorKind::Io {
                action: e.action,
                source: e.source,
            },
        )
    }
}

/// What [`EventStore::load_files`] read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    /// The file.
    pub path: PathBuf,
    /// Events loaded.
    pub events: usize,
    /// Lines skipped.
    pub skipped: usize,
    /// Why the first skipped line was skipped.
    pub first_problem: Option<String>,
}

/// The version of the log and snapshot format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// The largest payload of one log record, 16 MiB. Real events are a few hundred bytes; the
/// cap keeps a damaged length field from asking for a huge allocation.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// When the log holds this many records, the next append compacts first. At a few hundred
/// bytes per event that is a log of tens of MB, replayed in well under a second on open,
/// while compactions (which rewrite every event) stay rare.
pub const COMPACT_AFTER_RECORDS: usize = 100_000;

/// How many times [`EventStore::open_read_only`] reads the files again when a
/// compaction replaced them between its reads.
const READ_ATTEMPTS: usize = 20;

/// An embedded, append-only store of shopper events, durable on disk (or in memory only).
///
/// See the [module docs](self) for the guarantees and the file format.
pub struct EventStore {
    /// Each user's events, sorted by time (equal times in insertion order).
    by_user: BTreeMap<String, Vec<Event>>,
    /// The id of every event stored with one (forgotten ones included).
    ids: HashSet<u64>,
    /// Forgotten shoppers: hash of the user id, and the time of the `forget`.
    forgotten: HashMap<u64, i64>,
    /// Opened with [`EventStore::open_read_only`]: takes no writes.
    read_only: bool,
    /// Total number of events.
    len: usize,
    /// The files, or `None` for an in-memory store.
    disk: Option<Disk>,
    /// Bytes of torn tail cut from the log by [`EventStore::open`].
    recovered_bytes: u64,
    /// Log length (in records) at which an append compacts first.
    compact_after: usize,
}

impl std::fmt::Debug for EventStore {
    /// A summary, not the events (a store can hold millions).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("dir", &self.dir())
            .field("events", &self.len)
            .field("users", &self.by_user.len())
            .field("log_records", &self.log_records())
            .field("recovered_bytes", &self.recovered_bytes)
            .finish_non_exhaustive()
    }
}

/// The open files of an on-disk store.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    log_path: PathBuf,
    /// The log's handle and state, behind its own lock: a write and its fsync need only
    /// `&EventStore` ([`EventStore::write_prepared`]), so the readers of the store are
    /// not held up by an fsync.
    log: Mutex<Log>,
    /// Records in the log (changed only with `log` held; read without it, so that
    /// [`EventStore::log_records`] never waits for a write).
    records: AtomicUsize,
    /// Writes (each one fsync) of records to the log by this store (as `records`).
    syncs: AtomicU64,
}

/// The log file being appended to, and what the store knows about it.
#[derive(Debug)]
struct Log {
    /// The log, opened for appending.
    file: File,
    /// Length of the log's good data in bytes (its size, unless a write failed).
    len: u64,
    /// The log's generation.
    generation: u64,
    /// Why the store takes no more writes, after a failure it could not undo.
    unusable: Option<String>,
}

impl EventStore {
    /// Opens the store in `dir`, creating the directory and an empty store if missing.
    ///
    /// Loads `snapshot.bin`, then replays `log.bin`. A torn tail left by a crash during an
    /// append is cut off (see [`recovered_bytes`](Self::recovered_bytes)); any other damage
    /// is an error naming the file and byte offset, and leaves the files untouched.
    pub fn open(dir: &Path) -> Result<Self, EventError> {
        let existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(io_err(dir, "create the directory"))?;
        if !existed {
            durable::sync_dir(&durable::parent_dir(dir))?;
        }
        let log_path = dir.join(LOG_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        // Leftovers of an interrupted compaction: never renamed, so never part of the store.
        durable::remove_temp_files(dir, &[LOG_FILE, SNAPSHOT_FILE]);
        // ...and their names before the durable module: `log.bin.tmp`, `snapshot.bin.tmp`.
        for name in [LOG_FILE, SNAPSHOT_FILE] {
            let _ = fs::remove_file(dir.join(format!("{name}.tmp")));
        }

        let mut store = Self::open_in_memory();
        let snapshot = read_if_exists(&snapshot_path)?
            .map(|bytes| decode_snapshot(&bytes, &snapshot_path))
            .transpose()?;
        let mut upgrade = false;
        let snapshot_generation = match snapshot {
            Some(content) => {
                upgrade |= content.version == format::FORMAT_V1;
                Some(store.load_snapshot(content))
            }
            None => None,
        };

        let (generation, log_len, log_records) = match read_if_exists(&log_path)? {
            None => {
                if snapshot_generation.is_some() {
                    // Compactions replace the log by a rename, so it never goes missing.
                    return Err(corrupt(
                        &log_path,
                        0,
                        format!("{LOG_FILE} is missing but {SNAPSHOT_FILE} is there"),
                    ));
                }
                write_new_log(&log_path, 0)?;
                (0, HEADER_BYTES as u64, 0)
            }
            Some(bytes) => {
                let (generation, version) = check_header(&bytes, &LOG_MAGIC, &log_path)?;
                upgrade |= version == format::FORMAT_V1;
                let covered = snapshot_generation.unwrap_or(0);
                if generation > covered {
                    return Err(newer_log_error(&log_path, generation, snapshot_generation));
                }
                if generation < covered {
                    // A crash came between the snapshot's rename and the log's reset: the
                    // snapshot already holds these records.
                    write_new_log(&log_path, covered)?;
                    (covered, HEADER_BYTES as u64, 0)
                } else {
                    let scan = scan_log(&bytes, &log_path, version)?;
                    let records = scan.records;
                    for (id, event) in scan.events {
                        store.insert_identified(id, event);
                    }
                    if scan.good_end < bytes.len() {
                        cut_log(&log_path, scan.good_end as u64)?;
                        store.recovered_bytes = (bytes.len() - scan.good_end) as u64;
                    }
                    (generation, scan.good_end as u64, records)
                }
            }
        };
        // Files of format 1 hold nothing format 2 lacks: rewrite them in format 2 before
        // the first append (the snapshot first, as every compaction does). An empty
        // format-1 log too: format-2 records appended under its header would not read.
        let file = open_for_append(&log_path)?;
        store.disk = Some(Disk {
            dir: dir.to_path_buf(),
            log_path,
            log: Mutex::new(Log {
                file,
                len: log_len,
                generation,
                unusable: None,
            }),
            records: AtomicUsize::new(log_records),
            syncs: AtomicU64::new(0),
        });
        if upgrade {
            store.compact()?;
        }
        Ok(store)
    }

    /// Opens the store in `dir` for reading only: loads the snapshot and the committed
    /// records of the log, and never creates, cuts or deletes anything (a missing
    /// directory is an empty store). Safe while another process writes the store: an
    /// append in progress is not read, and a compaction in progress is waited out.
    /// The store takes no writes.
    pub fn open_read_only(dir: &Path) -> Result<Self, EventError> {
        let log_path = dir.join(LOG_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let mut last_error = None;
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10 * attempt as u64));
            }
            let mut store = Self::open_in_memory();
            store.read_only = true;
            // The snapshot first: a compaction renames it before the log, so a log
            // read after it is never older than what it covers without saying so.
            let snapshot = read_if_exists(&snapshot_path)?
                .map(|bytes| decode_snapshot(&bytes, &snapshot_path))
                .transpose()?;
            let covered = snapshot.map(|content| store.load_snapshot(content));
            let Some(bytes) = read_if_exists(&log_path)? else {
                if covered.is_none() {
                    return Ok(store); // no store yet
                }
                last_error = Some(corrupt(
                    &log_path,
                    0,
                    format!("{LOG_FILE} is missing but {SNAPSHOT_FILE} is there"),
                ));
                continue;
            };
            let (generation, version) = check_header(&bytes, &LOG_MAGIC, &log_path)?;
            if generation > covered.unwrap_or(0) {
                // A compaction replaced both files between our two reads.
                last_error = Some(newer_log_error(&log_path, generation, covered));
                continue;
            }
            if generation == covered.unwrap_or(0) {
                for (id, event) in scan_log(&bytes, &log_path, version)?.events {
                    store.insert_identified(id, event);
                }
            }
            return Ok(store);
        }
        Err(last_error.unwrap_or_else(|| corrupt(&log_path, 0, "unreadable".into())))
    }

    /// Loads a snapshot's content into an empty store; returns its generation.
    fn load_snapshot(&mut self, content: format::SnapshotContent) -> u64 {
        self.ids.extend(content.ids);
        self.forgotten.extend(content.forgotten);
        for event in content.events {
            self.insert(event);
        }
        content.generation
    }

    /// An empty store that keeps its events in memory only: for tests and one-off jobs.
    pub fn open_in_memory() -> Self {
        Self {
            by_user: BTreeMap::new(),
            ids: HashSet::new(),
            forgotten: HashMap::new(),
            read_only: false,
            len: 0,
            disk: None,
            recovered_bytes: 0,
            compact_after: COMPACT_AFTER_RECORDS,
        }
    }

    /// An in-memory store of the events in `files` (for training and evaluation on
    /// logs): lines that fail to parse or name an item `known_item` rejects are skipped
    /// and counted per file. I/O errors fail.
    pub fn load_files(
        files: &[PathBuf],
        known_item: &dyn Fn(&str) -> bool,
    ) -> Result<(Self, Vec<LoadedFile>), EventError> {
        let opts = EventReadOptions {
            skip_invalid: true,
            ..EventReadOptions::default()
        };
        let mut store = Self::open_in_memory();
        let mut loaded = Vec::with_capacity(files.len());
        for path in files {
            let batch = read_events(path, &opts, known_item)?;
            store.append(&batch.events)?;
            loaded.push(LoadedFile {
                path: path.clone(),
                events: batch.events.len(),
                skipped: batch.skipped,
                first_problem: batch.problems.first().map(|p| p.to_string()),
            });
        }
        Ok((store, loaded))
    }

    /// Records `events` (without ids: nothing is deduplicated).
    ///
    /// Every event is checked first (see [`check_event_values`]: non-empty ids without
    /// control characters, a time from 1970 to a day after now, a quantity above zero,
    /// an encoded size within [`MAX_RECORD_BYTES`], and not of a
    /// [forgotten](Self::forget) shopper dated before the forget); if one fails,
    /// nothing is recorded. Then the batch is written to the log as
    /// one unit (its records, then a commit record) and fsynced before this returns
    /// `Ok`: an acknowledged event survives a killed process or a power loss, and a
    /// batch cut short by a crash is not read at all. If the log already holds
    /// [`COMPACT_AFTER_RECORDS`] records, the store is compacted first.
    ///
    /// After an `Err` from the disk, none of the events is in memory, and none is in the log
    /// (a partly written batch is cut off again) unless the store reports itself unusable.
    pub fn append(&mut self, events: &[Event]) -> Result<Appended, EventError> {
        self.append_batch(events, None)
    }

    /// Records `events`, `ids[i]` being the id of `events[i]` (see
    /// [`read_events`](crate::profile::events::read_events)): an event whose id is stored
    /// already, or repeated within the batch, is skipped and counted in
    /// [`Appended::duplicates`], so a retried import stores nothing twice; an event of a
    /// forgotten shopper dated before the forget is skipped and counted in
    /// [`Appended::forgotten`] (an import that started before the forget, or a
    /// re-import of an old file). Otherwise as [`append`](Self::append).
    pub fn append_identified(
        &mut self,
        events: &[Event],
        ids: &[u64],
    ) -> Result<Appended, EventError> {
        check_id_count(events, ids)?;
        self.append_batch(events, Some(ids))
    }

    fn append_batch(
        &mut self,
        events: &[Event],
        ids: Option<&[u64]>,
    ) -> Result<Appended, EventError> {
        let batch = self.prepare_batch(events, ids, &HashSet::new())?;
        if batch.kept.is_empty() {
            return Ok(batch.outcome);
        }
        if self.needs_compaction()? {
            self.compact()?;
        }
        let mut batches = [batch];
        self.write_prepared(&mut batches)?;
        let [batch] = batches;
        self.apply_prepared(batch)
    }

    /// The first step of an append split in three, for a writer that must not hold an
    /// exclusive lock on the store while it waits for the disk (see
    /// [`write_prepared`](Self::write_prepared)): checks and encodes each batch of
    /// `batches` on its own, exactly as [`append`](Self::append) (ids `None`) or
    /// [`append_identified`](Self::append_identified) (ids `Some`) would, and changes
    /// nothing. One batch's error is its own: the others are prepared as if it had not
    /// been there. Ids stored by an earlier batch of the group count as stored.
    ///
    /// The prepared batches stay valid until the store changes other than by
    /// [`compact`](Self::compact) and applying them: write them with one
    /// [`write_prepared`](Self::write_prepared), then [`apply_prepared`](Self::apply_prepared)
    /// each, with no other write to the store in between.
    pub fn prepare_group(
        &self,
        batches: &[(&[Event], Option<&[u64]>)],
    ) -> Vec<Result<PreparedBatch, EventError>> {
        let mut taken = HashSet::new();
        batches
            .iter()
            .map(|&(events, ids)| {
                if let Some(ids) = ids {
                    check_id_count(events, ids)?;
                }
                let batch = self.prepare_batch(events, ids, &taken)?;
                taken.extend(batch.kept.iter().filter_map(|(id, _)| *id));
                Ok(batch)
            })
            .collect()
    }

    /// Checks and encodes one batch; `taken` are ids of batches prepared before it in
    /// the same group.
    fn prepare_batch(
        &self,
        events: &[Event],
        ids: Option<&[u64]>,
        taken: &HashSet<u64>,
    ) -> Result<PreparedBatch, EventError> {
        if self.read_only {
            return Err(EventError::whole(
                self.dir()
                    .map_or("event store".into(), |d| d.display().to_string()),
                EventErrorKind::Unusable {
                    reason: "it was opened read-only".into(),
                },
            ));
        }
        let mut outcome = Appended::default();
        let mut records = Vec::new();
        let mut kept: Vec<(Option<u64>, Event)> = Vec::with_capacity(events.len());
        let mut batch_ids = HashSet::new();
        for (i, event) in events.iter().enumerate() {
            check_event(event, i, events.len())?;
            let id = ids.map(|ids| ids[i]);
            if let Some(id) = id {
                if self.ids.contains(&id) || taken.contains(&id) || !batch_ids.insert(id) {
                    outcome.duplicates += 1;
                    continue;
                }
            }
            if let Some(at) = self.forgotten_at(event) {
                if ids.is_none() {
                    // A single recorded event is refused outright: the caller must not
                    // be told it was stored.
                    return Err(EventError::new(
                        appended_name(i, events.len()),
                        None,
                        Some("user".into()),
                        EventErrorKind::ForgottenUser {
                            ts: event.ts,
                            forgotten_at: at,
                        },
                    ));
                }
                outcome.forgotten += 1;
                continue;
            }
            encode_record(event, id, i, events.len(), &mut records)?;
            kept.push((id, event.clone()));
        }
        if !kept.is_empty() {
            encode_commit(kept.len(), &mut records);
        }
        outcome.stored = kept.len();
        Ok(PreparedBatch {
            records,
            kept,
            outcome,
            written: false,
        })
    }

    /// Whether the next write should [`compact`](Self::compact) first: the log holds
    /// [`COMPACT_AFTER_RECORDS`] records or more. `Err` when the store has had a failure
    /// it could not undo.
    pub fn needs_compaction(&self) -> Result<bool, EventError> {
        let Some(disk) = &self.disk else {
            return Ok(false);
        };
        let log = disk.lock_log();
        disk.check_usable(&log)?;
        Ok(disk.records.load(Ordering::Relaxed) >= self.compact_after)
    }

    /// The second step: writes every prepared batch of `batches` that stores anything
    /// to the end of the log, each as its own committed batch (its records, then its
    /// commit record), with one write and one fsync for all, and marks them written.
    /// Takes `&self`: the log has its own lock, so readers of the store (behind a
    /// reader-writer lock, say) are not held up by the fsync. Only one writer may
    /// write at a time, and the batches must have been prepared by this store since
    /// its last change (see [`prepare_group`](Self::prepare_group)).
    ///
    /// A crash during the write leaves whole batches or a torn tail: each batch is in
    /// the store after a reopen entirely or not at all. After an `Err`, none of the
    /// batches is in the log (a partial write is cut off again) unless the store
    /// reports itself unusable. An in-memory store writes nothing.
    pub fn write_prepared(&self, batches: &mut [PreparedBatch]) -> Result<(), EventError> {
        if let Some(batch) = batches.iter().find(|b| b.written) {
            return Err(EventError::whole(
                "prepared batch",
                EventErrorKind::Unusable {
                    reason: format!("a batch of {} events was written already", batch.kept.len()),
                },
            ));
        }
        if let Some(disk) = &self.disk {
            let total: usize = batches.iter().map(|b| b.records.len()).sum();
            if total > 0 {
                let mut log = disk.lock_log();
                disk.check_usable(&log)?;
                let mut bytes = Vec::with_capacity(total);
                let mut records = 0;
                for batch in batches.iter().filter(|b| !b.kept.is_empty()) {
                    bytes.extend_from_slice(&batch.records);
                    records += batch.kept.len();
                }
                crate::store::durable::crash_point("events-before-write");
                disk.write_records(&mut log, &bytes, records)?;
                crate::store::durable::crash_point("events-appended");
            }
        }
        for batch in batches.iter_mut() {
            batch.written = true;
        }
        Ok(())
    }

    /// The third step: adds a batch [`write_prepared`](Self::write_prepared) wrote to
    /// memory (in memory only: nothing can fail but a batch that was not written, which
    /// is refused and changes nothing). Returns what the batch stored.
    pub fn apply_prepared(&mut self, batch: PreparedBatch) -> Result<Appended, EventError> {
        if !batch.written {
            return Err(EventError::whole(
                "prepared batch",
                EventErrorKind::Unusable {
                    reason: "it was not written to the log".into(),
                },
            ));
        }
        for (id, event) in batch.kept {
            self.insert_identified(id, event);
        }
        Ok(batch.outcome)
    }

    /// When `event`'s shopper was forgotten, if that was after the event.
    fn forgotten_at(&self, event: &Event) -> Option<i64> {
        self.forgotten
            .get(&user_hash(&event.user))
            .copied()
            .filter(|&at| event.ts < at)
    }

    /// Removes every event of `user`, durably, and returns how many were removed.
    ///
    /// Writes a new snapshot without them and empties the log (see the
    /// [module docs](self)), so the events are gone from the files too, not only hidden.
    /// The snapshot keeps a hash of the user id and the time of the forget, so that
    /// events of that user dated before it are refused later (an import that started
    /// before the forget, a retried import of an old file); events dated after it
    /// (the shopper came back) are recorded as usual.
    pub fn forget(&mut self, user: &str) -> Result<usize, EventError> {
        let count = self.user_events(user).len();
        let latest = self.user_events(user).last().map_or(i64::MIN, |e| e.ts);
        let at = crate::profile::events::now_unix().max(latest.saturating_add(1));
        if self.read_only {
            return Err(EventError::whole(
                "event store",
                EventErrorKind::Unusable {
                    reason: "it was opened read-only".into(),
                },
            ));
        }
        let key = user_hash(user);
        let before = self.forgotten.insert(key, at);
        if let Err(e) = self.rewrite(Some(user)) {
            match before {
                Some(b) => self.forgotten.insert(key, b),
                None => self.forgotten.remove(&key),
            };
            return Err(e);
        }
        Ok(count)
    }

    /// Folds the log into the snapshot: the snapshot gets every event and the log is emptied,
    /// with the same atomic steps as [`forget`](Self::forget). Appends do this on their own
    /// when the log holds [`COMPACT_AFTER_RECORDS`] records.
    pub fn compact(&mut self) -> Result<(), EventError> {
        self.rewrite(None)
    }

    /// The events of `user`, sorted by time (equal times in the order they were appended);
    /// empty for an unknown user.
    pub fn user_events(&self, user: &str) -> &[Event] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// The users with at least one event, in byte order of their ids.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.by_user.keys().map(String::as_str)
    }

    /// The number of events in the store.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store holds no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every event, user by user (in the order of [`users`](Self::users)), each user's
    /// sorted by time.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.by_user.values().flatten()
    }

    /// How many bytes of torn tail [`open`](Self::open) cut from the log (0 when the last
    /// run ended cleanly, and for an in-memory store).
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// How many records the log holds (0 right after a compaction, and for an in-memory
    /// store).
    pub fn log_records(&self) -> usize {
        self.disk
            .as_ref()
            .map_or(0, |d| d.records.load(Ordering::Relaxed))
    }

    /// How many times this store wrote records to its log, each write followed by one
    /// fsync (0 for an in-memory store). A group of batches written by one
    /// [`write_prepared`](Self::write_prepared) counts once.
    pub fn log_syncs(&self) -> u64 {
        self.disk
            .as_ref()
            .map_or(0, |d| d.syncs.load(Ordering::Relaxed))
    }

    /// Whether the store was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether another process changed the files since this store last read or wrote
    /// them (an append, a compaction or a forget): then the store must be opened again
    /// before it writes. Always `false` for an in-memory store.
    pub fn changed_on_disk(&self) -> Result<bool, EventError> {
        let Some(disk) = &self.disk else {
            return Ok(false);
        };
        // The log: another writer appended (its length) or compacted (its generation).
        let (generation, len) = {
            let log = disk.lock_log();
            (log.generation, log.len)
        };
        let Some((log_generation, log_len)) = read_file_header(&disk.log_path, &LOG_MAGIC)? else {
            return Ok(true);
        };
        if log_generation != generation || log_len != len {
            return Ok(true);
        }
        // The snapshot: another writer committed a compaction or a forget and stopped
        // before resetting the log (a crash, or a failed reset). In the state this
        // store keeps, the snapshot covers exactly the log's generation (or is absent
        // while that is 0).
        let snapshot_path = disk.dir.join(SNAPSHOT_FILE);
        let covered = read_file_header(&snapshot_path, &SNAPSHOT_MAGIC)?.map_or(0, |(g, _)| g);
        Ok(covered != generation)
    }

    /// The store's directory, or `None` for an in-memory store.
    pub fn dir(&self) -> Option<&Path> {
        self.disk.as_ref().map(|d| d.dir.as_path())
    }

    /// Adds one event and its id to memory.
    fn insert_identified(&mut self, id: Option<u64>, event: Event) {
        if let Some(id) = id {
            self.ids.insert(id);
        }
        self.insert(event);
    }

    /// Adds one event to memory, after the events of its user with the same or earlier time.
    fn insert(&mut self, event: Event) {
        self.len += 1;
        match self.by_user.get_mut(&event.user) {
            Some(events) => {
                let at = events.partition_point(|e| e.ts <= event.ts);
                events.insert(at, event);
            }
            None => {
                self.by_user.insert(event.user.clone(), vec![event]);
            }
        }
    }

    /// Removes a user from memory.
    fn remove_user(&mut self, user: &str) {
        if let Some(events) = self.by_user.remove(user) {
            self.len -= events.len();
        }
    }

    /// Writes a snapshot of every event except `skip_user`'s and empties the log; on
    /// success (or once the snapshot is in place) drops `skip_user` from memory.
    fn rewrite(&mut self, skip_user: Option<&str>) -> Result<(), EventError> {
        let Some(disk) = &self.disk else {
            if let Some(user) = skip_user {
                self.remove_user(user);
            }
            return Ok(());
        };
        let generation = {
            let log = disk.lock_log();
            disk.check_usable(&log)?;
            log.generation
        };
        let len = self
            .by_user
            .iter()
            .filter(|(user, _)| Some(user.as_str()) != skip_user)
            .map(|(_, events)| events.len())
            .sum();
        let mut ids: Vec<u64> = self.ids.iter().copied().collect();
        ids.sort_unstable();
        let mut forgotten: Vec<(u64, i64)> = self.forgotten.iter().map(|(&k, &v)| (k, v)).collect();
        forgotten.sort_unstable();
        let snapshot = SnapshotRef {
            ids,
            forgotten,
            events: SnapshotEvents {
                by_user: &self.by_user,
                skip_user,
                len,
            },
        };
        let new_generation = generation + 1;
        let snapshot_path = disk.dir.join(SNAPSHOT_FILE);
        let bytes = encode_snapshot(&snapshot, new_generation, &snapshot_path)?;
        // An error here means nothing was renamed: the store is as it was.
        durable::replace(&snapshot_path, &bytes)?;
        crate::store::durable::crash_point("events-snapshot-replaced");
        // The new snapshot is in place: from here memory must follow it, and a failure
        // (of the directory sync too) leaves the open log handle out of step with the files.
        if let Some(user) = skip_user {
            self.remove_user(user);
        }
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        let reset = durable::sync_dir(&disk.dir)
            .map_err(EventError::from)
            .and_then(|()| write_new_log(&disk.log_path, new_generation))
            .and_then(|()| open_for_append(&disk.log_path));
        crate::store::durable::crash_point("events-log-reset");
        let log = disk.log.get_mut().unwrap_or_else(PoisonError::into_inner);
        match reset {
            Ok(file) => {
                log.file = file;
                log.len = HEADER_BYTES as u64;
                disk.records.store(0, Ordering::Relaxed);
                log.generation = new_generation;
                Ok(())
            }
            Err(e) => {
                log.unusable = Some(e.to_string());
                Err(e)
            }
        }
    }
}

impl Disk {
    /// The log. A panic while it was held cannot have left it half-updated (its fields
    /// change only after a write succeeded or was undone), so poisoning is ignored.
    fn lock_log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err` once the store has had a failure it could not undo.
    fn check_usable(&self, log: &Log) -> Result<(), EventError> {
        match &log.unusable {
            None => Ok(()),
            Some(reason) => Err(EventError::new(
                self.dir.display().to_string(),
                None,
                None,
                EventErrorKind::Unusable {
                    reason: reason.clone(),
                },
            )),
        }
    }

    /// Appends encoded records to the log and fsyncs it. On failure, cuts the log back to
    /// its previous length so that no partial record stays in front of later ones.
    fn write_records(&self, log: &mut Log, records: &[u8], count: usize) -> Result<(), EventError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = durable::append_synced(&mut log.file, &self.log_path, records) {
            if let Err(undo) = durable::truncate_synced(&log.file, &self.log_path, log.len) {
                log.unusable = Some(format!("a failed append could not be cut: {undo}"));
            }
            return Err(e.into());
        }
        log.len += records.len() as u64;
        self.records.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }
}

/// One id per event, or an error.
fn check_id_count(events: &[Event], ids: &[u64]) -> Result<(), EventError> {
    if ids.len() == events.len() {
        return Ok(());
    }
    Err(EventError::whole(
        "appended events",
        EventErrorKind::WrongType {
            expected: "one id per event",
            found: format!("{} ids for {} events", ids.len(), events.len()),
        },
    ))
}

/// Checks an event before it is stored.
fn check_event(event: &Event, index: usize, count: usize) -> Result<(), EventError> {
    check_event_values(event).map_err(|(field, kind)| {
        EventError::new(
            appended_name(index, count),
            None,
            Some(field.to_owned()),
            kind,
        )
    })
}

/// A batch of events checked and encoded by [`EventStore::prepare_group`], to be written
/// by [`EventStore::write_prepared`] and then applied by [`EventStore::apply_prepared`].
#[derive(Debug)]
pub struct PreparedBatch {
    /// The encoded records and commit record (empty when nothing is stored).
    records: Vec<u8>,
    /// The events to store, with their ids.
    kept: Vec<(Option<u64>, Event)>,
    /// What storing the batch will do.
    outcome: Appended,
    /// Written to the log by [`EventStore::write_prepared`].
    written: bool,
}

impl PreparedBatch {
    /// What applying the batch stores and skips.
    pub fn appended(&self) -> Appended {
        self.outcome
    }

    /// The events the batch stores (those not skipped).
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.kept.iter().map(|(_, e)| e)
    }
}

/// What [`EventStore::append`] and [`EventStore::append_identified`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    /// Events stored.
    pub stored: usize,
    /// Events skipped because their id was stored already (or repeated in the batch).
    pub duplicates: usize,
    /// Events skipped because their shopper was forgotten after they happened.
    pub forgotten: usize,
}

/// The key of a forgotten shopper: a hash, so the store keeps no forgotten id.
fn user_hash(user: &str) -> u64 {
    durable::fnv1a64(format!("forgotten\u{1f}{user}").as_bytes())
}

/// The error for a log whose generation is newer than the snapshot covers.
fn newer_log_error(log_path: &Path, generation: u64, snapshot: Option<u64>) -> EventError {
    let covered = snapshot.unwrap_or(0);
    let snapshot = match snapshot {
        Some(_) => format!("{SNAPSHOT_FILE} only covers generations below {covered}"),
        None => format!("{SNAPSHOT_FILE} is missing"),
    };
    corrupt(
        log_path,
        GENERATION_OFFSET as u64,
        format!(
            "the log has generation {generation}, so it follows a compaction \
             that wrote a newer snapshot, but {snapshot}"
        ),
    )
}

/// The name errors about an appended event carry: `appended event 3 of 10`.
pub(crate) fn appended_name(index: usize, count: usize) -> String {
    format!("appended event {} of {count}", index + 1)
}

/// A corruption error for `path` at `offset`.
fn corrupt(path: &Path, offset: u64, reason: String) -> EventError {
    EventError::new(
        path.display().to_string(),
        None,
        None,
        EventErrorKind::Corrupt { offset, reason },
    )
}

/// Maps an I/O error on `path` while doing `action`.
fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> EventError + 'a {
    move |source| {
        EventError::new(
            path.display().to_string(),
            None,
            None,
            EventErrorKind::Io { action, source },
        )
    }
}

/// The whole file, or `None` if it does not exist.
fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, EventError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "read")(e)),
    }
}

/// The generation in a store file's header and the file's length, or `None` when
/// the file is missing or shorter than a header (a damaged header is an error).
fn read_file_header(path: &Path, magic: &[u8; 8]) -> Result<Option<(u64, u64)>, EventError> {
    use std::io::Read;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let mut header = [0u8; HEADER_BYTES];
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let (generation, _) = check_header(&header, magic, path)?;
    Ok(Some((generation, len)))
}

/// Atomically replaces the log with an empty one of `generation` (see [`durable::atomic_write`]).
fn write_new_log(log_path: &Path, generation: u64) -> Result<(), EventError> {
    Ok(durable::atomic_write(
        log_path,
        &encode_header(&LOG_MAGIC, generation),
    )?)
}

/// Cuts a torn tail off the log and fsyncs it.
fn cut_log(path: &Path, len: u64) -> Result<(), EventError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for repair"))?;
    Ok(durable::truncate_synced(&f, path, len)?)
}

/// Opens the log for appending.
fn open_for_append(path: &Path) -> Result<File, EventError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path, "open for appending"))
}
