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
//! [`EventStore::append`] writes its records to the end of the log and calls `fsync`
//! (`File::sync_data`) before it returns `Ok`: once acknowledged, an event is on disk. A crash
//! in the middle of an append can leave a torn tail, an incomplete last record or one whose
//! checksum does not match; [`EventStore::open`] cuts it off (the events of that unacknowledged
//! append may be kept in part, always a prefix of the batch) and reports how many bytes it cut
//! in [`EventStore::recovered_bytes`]. Damage anywhere else, such as a bad record followed by
//! good ones, is not what a crash leaves: opening fails with an error naming the file and the
//! byte offset, and nothing on disk is changed. So is a snapshot without its log, or a log
//! whose generation says that a newer snapshot than the one present was written.
//!
//! [`EventStore::compact`] and [`EventStore::forget`] rewrite the snapshot the atomic way
//! (a temporary file in the same directory, fsync, rename, fsync of the directory) and then
//! replace the log with an empty one the same way. Each log carries a generation number and
//! the snapshot records the first generation it does not contain, so a crash between the two
//! renames cannot replay old log records on top of the new snapshot (and cannot bring back the
//! events of a forgotten user). Appends compact first when the log holds
//! [`COMPACT_AFTER_RECORDS`] records or more.
//!
//! One process owns a store at a time: there is no lock between processes, and two writers
//! would interleave their records. Within a process the engine wraps the store in a mutex.
//!
//! # On-disk format, version 1 ([`FORMAT_VERSION`])
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
//! payload. A payload is one event, bincode 2 with the standard configuration (varints),
//! through serde, with the fields in this order: `user` string, `item` string, `kind` `u8`
//! (0 view, 1 click, 2 cart, 3 purchase), `ts` `i64`, `quantity` `Option<f64>`, `query`
//! `Option<String>`, `position` `Option<u32>` (byte for byte what serde gives for [`Event`]).
//! Payloads are at most [`MAX_RECORD_BYTES`].
//!
//! The snapshot then holds one `u64` payload length, one `u32` CRC-32 of the payload, and the
//! payload: a bincode sequence of events in the same form, grouped by user (users in byte
//! order), each user's events in store order.
//!
//! The stored form is its own private type, so a change to [`Event`] does not silently change
//! the format: it fails to compile until the conversion is updated, which is the moment to
//! bump [`FORMAT_VERSION`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize};

use super::events::{Event, EventError, EventErrorKind, EventKind};

/// The version of the log and snapshot format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the log inside a store directory.
pub const LOG_FILE: &str = "log.bin";

/// File name of the snapshot inside a store directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The largest payload of one log record, 16 MiB. Real events are a few hundred bytes; the
/// cap keeps a damaged length field from asking for a huge allocation.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// When the log holds this many records, the next append compacts first. At a few hundred
/// bytes per event that is a log of tens of MB, replayed in well under a second on open,
/// while compactions (which rewrite every event) stay rare.
pub const COMPACT_AFTER_RECORDS: usize = 100_000;

/// Magic bytes at the start of the log.
const LOG_MAGIC: [u8; 8] = *b"SRLOG\0\0\0";
/// Magic bytes at the start of the snapshot.
const SNAPSHOT_MAGIC: [u8; 8] = *b"SRSNAP\0\0";
/// Where the generation sits in the file header.
const GENERATION_OFFSET: usize = 12;
/// Where the header's own CRC sits (it covers the bytes before it).
const HEADER_CRC_OFFSET: usize = 20;
/// Length of the file header: magic, version, generation, header CRC.
const HEADER_BYTES: usize = 24;
/// Length of a record's header: payload length and payload CRC.
const RECORD_HEADER_BYTES: usize = 8;
/// Length of the snapshot's payload length and payload CRC.
const SNAPSHOT_PREFIX_BYTES: usize = 12;
/// Suffix of the temporary files written before a rename.
const TMP_SUFFIX: &str = ".tmp";

/// bincode configuration of a record: the standard one, with the record size cap.
fn record_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// The stored form of an event, for writing (borrows the event). Must match [`StoredEvent`].
#[derive(Serialize)]
struct StoredEventRef<'a> {
    user: &'a str,
    item: &'a str,
    kind: u8,
    ts: i64,
    quantity: Option<f64>,
    query: Option<&'a str>,
    position: Option<u32>,
}

impl<'a> From<&'a Event> for StoredEventRef<'a> {
    fn from(e: &'a Event) -> Self {
        Self {
            user: &e.user,
            item: &e.item,
            kind: kind_code(e.kind),
            ts: e.ts,
            quantity: e.quantity,
            query: e.query.as_deref(),
            position: e.position,
        }
    }
}

/// The stored form of an event, for reading. Must match [`StoredEventRef`].
#[derive(Deserialize)]
struct StoredEvent {
    user: String,
    item: String,
    kind: u8,
    ts: i64,
    quantity: Option<f64>,
    query: Option<String>,
    position: Option<u32>,
}

impl StoredEvent {
    fn into_event(self) -> Result<Event, String> {
        let kind = match self.kind {
            0 => EventKind::View,
            1 => EventKind::Click,
            2 => EventKind::Cart,
            3 => EventKind::Purchase,
            other => return Err(format!("unknown event kind code {other}")),
        };
        Ok(Event {
            user: self.user,
            item: self.item,
            kind,
            ts: self.ts,
            quantity: self.quantity,
            query: self.query,
            position: self.position,
        })
    }
}

/// The on-disk code of an event kind (part of the format).
fn kind_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::View => 0,
        EventKind::Click => 1,
        EventKind::Cart => 2,
        EventKind::Purchase => 3,
    }
}

/// All events except one user's, serialized as one sequence without copying them.
struct SnapshotEvents<'a> {
    by_user: &'a BTreeMap<String, Vec<Event>>,
    skip_user: Option<&'a str>,
    len: usize,
}

impl SnapshotEvents<'_> {
    fn iter(&self) -> impl Iterator<Item = &Event> {
        self.by_user
            .iter()
            .filter(|(user, _)| Some(user.as_str()) != self.skip_user)
            .flat_map(|(_, events)| events)
    }
}

impl Serialize for SnapshotEvents<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for event in self.iter() {
            seq.serialize_element(&StoredEventRef::from(event))?;
        }
        seq.end()
    }
}

/// An embedded, append-only store of shopper events, durable on disk (or in memory only).
///
/// See the [module docs](self) for the guarantees and the file format.
pub struct EventStore {
    /// Each user's events, sorted by time (equal times in insertion order).
    by_user: BTreeMap<String, Vec<Event>>,
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
    /// The log, opened for appending.
    log: File,
    /// Length of the log's good data in bytes (its size, unless a write failed).
    log_len: u64,
    /// Records in the log.
    log_records: usize,
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
            sync_dir(&parent_dir(dir))?;
        }
        let log_path = dir.join(LOG_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        // Leftovers of an interrupted compaction: never renamed, so never part of the store.
        for path in [&log_path, &snapshot_path] {
            let _ = fs::remove_file(tmp_path(path));
        }

        let mut store = Self::open_in_memory();
        let snapshot_generation = match read_if_exists(&snapshot_path)? {
            Some(bytes) => {
                let (generation, events) = decode_snapshot(&bytes, &snapshot_path)?;
                for event in events {
                    store.insert(event);
                }
                Some(generation)
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
                write_new_log(dir, &log_path, 0)?;
                (0, HEADER_BYTES as u64, 0)
            }
            Some(bytes) => {
                let generation = check_header(&bytes, &LOG_MAGIC, &log_path)?;
                let covered = snapshot_generation.unwrap_or(0);
                if generation > covered {
                    let snapshot = match snapshot_generation {
                        Some(_) => {
                            format!("{SNAPSHOT_FILE} only covers generations below {covered}")
                        }
                        None => format!("{SNAPSHOT_FILE} is missing"),
                    };
                    return Err(corrupt(
                        &log_path,
                        GENERATION_OFFSET as u64,
                        format!(
                            "the log has generation {generation}, so it follows a compaction \
                             that wrote a newer snapshot, but {snapshot}"
                        ),
                    ));
                }
                if generation < covered {
                    // A crash came between the snapshot's rename and the log's reset: the
                    // snapshot already holds these records.
                    write_new_log(dir, &log_path, covered)?;
                    (covered, HEADER_BYTES as u64, 0)
                } else {
                    let scan = scan_log(&bytes, &log_path)?;
                    let records = scan.events.len();
                    for event in scan.events {
                        store.insert(event);
                    }
                    if scan.good_end < bytes.len() {
                        cut_log(&log_path, scan.good_end as u64)?;
                        store.recovered_bytes = (bytes.len() - scan.good_end) as u64;
                    }
                    (generation, scan.good_end as u64, records)
                }
            }
        };

        let log = open_for_append(&log_path)?;
        store.disk = Some(Disk {
            dir: dir.to_path_buf(),
            log_path,
            log,
            log_len,
            log_records,
            generation,
            unusable: None,
        });
        Ok(store)
    }

    /// An empty store that keeps its events in memory only: for tests and one-off jobs.
    pub fn open_in_memory() -> Self {
        Self {
            by_user: BTreeMap::new(),
            len: 0,
            disk: None,
            recovered_bytes: 0,
            compact_after: COMPACT_AFTER_RECORDS,
        }
    }

    /// Records `events`.
    ///
    /// Every event is checked first (non-empty `user` and `item`, finite `quantity`, an
    /// encoded size within [`MAX_RECORD_BYTES`]); if one fails, nothing is recorded. Then all
    /// records are written to the log and fsynced before this returns `Ok`: an acknowledged
    /// event survives a killed process or a power loss. If the log already holds
    /// [`COMPACT_AFTER_RECORDS`] records, the store is compacted first.
    ///
    /// After an `Err` from the disk, none of the events is in memory, and none is in the log
    /// (a partly written batch is cut off again) unless the store reports itself unusable.
    pub fn append(&mut self, events: &[Event]) -> Result<(), EventError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (i, event) in events.iter().enumerate() {
            check_event(event, i, events.len())?;
            encode_record(event, i, events.len(), &mut records)?;
        }
        if let Some(disk) = &self.disk {
            disk.check_usable()?;
            if disk.log_records >= self.compact_after {
                self.compact()?;
            }
        }
        if let Some(disk) = &mut self.disk {
            disk.write_records(&records, events.len())?;
        }
        for event in events {
            self.insert(event.clone());
        }
        Ok(())
    }

    /// Removes every event of `user`, durably, and returns how many were removed (0 for an
    /// unknown user, without touching the disk).
    ///
    /// Writes a new snapshot without them and empties the log (see the
    /// [module docs](self)), so the events are gone from the files too, not only hidden.
    pub fn forget(&mut self, user: &str) -> Result<usize, EventError> {
        let count = self.user_events(user).len();
        if count == 0 {
            return Ok(0);
        }
        self.rewrite(Some(user))?;
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
        self.disk.as_ref().map_or(0, |d| d.log_records)
    }

    /// The store's directory, or `None` for an in-memory store.
    pub fn dir(&self) -> Option<&Path> {
        self.disk.as_ref().map(|d| d.dir.as_path())
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
        disk.check_usable()?;
        let len = self
            .by_user
            .iter()
            .filter(|(user, _)| Some(user.as_str()) != skip_user)
            .map(|(_, events)| events.len())
            .sum();
        let events = SnapshotEvents {
            by_user: &self.by_user,
            skip_user,
            len,
        };
        let new_generation = disk.generation + 1;
        let snapshot_path = disk.dir.join(SNAPSHOT_FILE);
        let bytes = encode_snapshot(&events, new_generation, &snapshot_path)?;
        let tmp = tmp_path(&snapshot_path);
        if let Err(e) = write_synced(&tmp, &bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &snapshot_path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&snapshot_path, "rename the new snapshot into place")(e));
        }
        // The new snapshot is in place: from here memory must follow it, and a failure leaves
        // the open log handle out of step with the files.
        if let Some(user) = skip_user {
            self.remove_user(user);
        }
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        let reset = sync_dir(&disk.dir)
            .and_then(|()| write_new_log(&disk.dir, &disk.log_path, new_generation))
            .and_then(|()| open_for_append(&disk.log_path));
        match reset {
            Ok(log) => {
                disk.log = log;
                disk.log_len = HEADER_BYTES as u64;
                disk.log_records = 0;
                disk.generation = new_generation;
                Ok(())
            }
            Err(e) => {
                disk.unusable = Some(e.to_string());
                Err(e)
            }
        }
    }
}

impl Disk {
    /// `Err` once the store has had a failure it could not undo.
    fn check_usable(&self) -> Result<(), EventError> {
        match &self.unusable {
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
    fn write_records(&mut self, records: &[u8], count: usize) -> Result<(), EventError> {
        let written = self
            .log
            .write_all(records)
            .map_err(|e| ("write", e))
            .and_then(|()| self.log.sync_data().map_err(|e| ("fsync", e)));
        if let Err((action, e)) = written {
            let undo = self
                .log
                .set_len(self.log_len)
                .and_then(|()| self.log.sync_all());
            if let Err(undo_err) = undo {
                self.unusable = Some(format!(
                    "a failed append could not be cut from {}: {undo_err}",
                    self.log_path.display()
                ));
            }
            return Err(io_err(&self.log_path, action)(e));
        }
        self.log_len += records.len() as u64;
        self.log_records += count;
        Ok(())
    }
}

/// Checks an event before it is stored.
fn check_event(event: &Event, index: usize, count: usize) -> Result<(), EventError> {
    let bad = |field: &str, kind| {
        Err(EventError::new(
            appended_name(index, count),
            None,
            Some(field.to_owned()),
            kind,
        ))
    };
    if event.user.trim().is_empty() {
        return bad("user", EventErrorKind::EmptyField);
    }
    if event.item.trim().is_empty() {
        return bad("item", EventErrorKind::EmptyField);
    }
    match event.quantity {
        Some(q) if !q.is_finite() => bad("quantity", EventErrorKind::InvalidNumber { value: q }),
        _ => Ok(()),
    }
}

/// The name errors about an appended event carry: `appended event 3 of 10`.
fn appended_name(index: usize, count: usize) -> String {
    format!("appended event {} of {count}", index + 1)
}

/// Appends one log record for `event` to `out`.
fn encode_record(
    event: &Event,
    index: usize,
    count: usize,
    out: &mut Vec<u8>,
) -> Result<(), EventError> {
    let too_large = |bytes| {
        EventError::new(
            appended_name(index, count),
            None,
            None,
            EventErrorKind::TooLarge {
                bytes,
                max: MAX_RECORD_BYTES,
            },
        )
    };
    let payload = bincode::serde::encode_to_vec(StoredEventRef::from(event), record_config())
        .map_err(|_| too_large(event.user.len() + event.item.len()))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_RECORD_BYTES)
        .ok_or_else(|| too_large(payload.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes one record payload.
fn decode_event(payload: &[u8]) -> Result<Event, String> {
    let (stored, used): (StoredEvent, usize) =
        bincode::serde::decode_from_slice(payload, record_config())
            .map_err(|e| format!("the record does not decode as an event: {e}"))?;
    if used != payload.len() {
        return Err(format!(
            "the record has {} bytes after its event",
            payload.len() - used
        ));
    }
    stored.into_event()
}

/// A file header: magic, format version, generation, CRC of those.
fn encode_header(magic: &[u8; 8], generation: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(magic);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a file's header and returns its generation.
fn check_header(bytes: &[u8], magic: &[u8; 8], path: &Path) -> Result<u64, EventError> {
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(
            path,
            0,
            format!(
                "the file is {} bytes, shorter than its {HEADER_BYTES}-byte header",
                bytes.len()
            ),
        ));
    }
    if bytes[..8] != magic[..] {
        return Err(corrupt(
            path,
            0,
            "not a shelfrank event store file (wrong magic bytes)".into(),
        ));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(EventError::new(
            path.display().to_string(),
            None,
            None,
            EventErrorKind::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            },
        ));
    }
    if crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]) != u32_at(bytes, HEADER_CRC_OFFSET) {
        return Err(corrupt(path, 0, "header checksum mismatch".into()));
    }
    Ok(u64_at(bytes, GENERATION_OFFSET))
}

/// Encodes a snapshot file.
fn encode_snapshot(
    events: &SnapshotEvents<'_>,
    generation: u64,
    path: &Path,
) -> Result<Vec<u8>, EventError> {
    let payload =
        bincode::serde::encode_to_vec(events, bincode::config::standard()).map_err(|e| {
            io_err(path, "encode the snapshot")(io::Error::other(format!("bincode: {e}")))
        })?;
    let mut bytes = encode_header(&SNAPSHOT_MAGIC, generation);
    bytes.reserve(SNAPSHOT_PREFIX_BYTES + payload.len());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Decodes a snapshot file into its generation and events.
fn decode_snapshot(bytes: &[u8], path: &Path) -> Result<(u64, Vec<Event>), EventError> {
    let generation = check_header(bytes, &SNAPSHOT_MAGIC, path)?;
    let start = HEADER_BYTES + SNAPSHOT_PREFIX_BYTES;
    if bytes.len() < start {
        return Err(corrupt(
            path,
            HEADER_BYTES as u64,
            "the file ends before the payload length and checksum".into(),
        ));
    }
    let stated = u64_at(bytes, HEADER_BYTES);
    let actual = (bytes.len() - start) as u64;
    if stated != actual {
        return Err(corrupt(
            path,
            HEADER_BYTES as u64,
            format!("the payload length says {stated} bytes but the file holds {actual}"),
        ));
    }
    let payload = &bytes[start..];
    if crc32fast::hash(payload) != u32_at(bytes, HEADER_BYTES + 8) {
        return Err(corrupt(
            path,
            start as u64,
            "payload checksum mismatch".into(),
        ));
    }
    let (stored, used): (Vec<StoredEvent>, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard()).map_err(|e| {
            corrupt(
                path,
                start as u64,
                format!("the payload does not decode as events: {e}"),
            )
        })?;
    if used != payload.len() {
        return Err(corrupt(
            path,
            (start + used) as u64,
            "bytes after the events".into(),
        ));
    }
    let events = stored
        .into_iter()
        .map(StoredEvent::into_event)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| corrupt(path, start as u64, reason))?;
    Ok((generation, events))
}

/// What reading the log found: its good events and where the good data ends.
struct LogScan {
    events: Vec<Event>,
    good_end: usize,
}

/// Why a record could not be read.
enum BadRecord {
    /// Fewer bytes left than a record header.
    ShortHeader,
    /// A zero or over-the-cap payload length.
    BadLength(u32),
    /// The payload runs past the end of the file.
    ShortPayload,
    /// The payload's CRC does not match.
    Checksum,
    /// The CRC matches but the payload is no event: never a torn write.
    Undecodable(String),
}

impl BadRecord {
    fn describe(&self) -> String {
        match self {
            Self::ShortHeader => "an incomplete record header".into(),
            Self::BadLength(len) => format!(
                "a record length of {len} bytes (records hold 1 to {MAX_RECORD_BYTES} bytes)"
            ),
            Self::ShortPayload => "a record that runs past the end of the file".into(),
            Self::Checksum => "a record checksum mismatch".into(),
            Self::Undecodable(reason) => reason.clone(),
        }
    }
}

/// Reads the record at `pos`: its event and the offset after it.
fn read_record(bytes: &[u8], pos: usize) -> Result<(Event, usize), BadRecord> {
    let payload = record_payload(bytes, pos)?;
    let event = decode_event(payload).map_err(BadRecord::Undecodable)?;
    Ok((event, pos + RECORD_HEADER_BYTES + payload.len()))
}

/// The checksummed payload of the record at `pos`.
fn record_payload(bytes: &[u8], pos: usize) -> Result<&[u8], BadRecord> {
    if bytes.len() - pos < RECORD_HEADER_BYTES {
        return Err(BadRecord::ShortHeader);
    }
    let len = u32_at(bytes, pos);
    if len == 0 || len as usize > MAX_RECORD_BYTES {
        return Err(BadRecord::BadLength(len));
    }
    let start = pos + RECORD_HEADER_BYTES;
    let payload = bytes
        .get(start..start + len as usize)
        .ok_or(BadRecord::ShortPayload)?;
    if crc32fast::hash(payload) != u32_at(bytes, pos + 4) {
        return Err(BadRecord::Checksum);
    }
    Ok(payload)
}

/// Reads every record of a log (after its header). A bad record with nothing good after it is
/// a torn tail, ending the good data; one followed by a good record is corruption.
fn scan_log(bytes: &[u8], path: &Path) -> Result<LogScan, EventError> {
    let mut events = Vec::new();
    let mut pos = HEADER_BYTES;
    while pos < bytes.len() {
        match read_record(bytes, pos) {
            Ok((event, next)) => {
                events.push(event);
                pos = next;
            }
            Err(bad) => {
                let torn = !matches!(bad, BadRecord::Undecodable(_)) && is_torn_tail(bytes, pos);
                if torn {
                    break;
                }
                let mut reason = format!("{} ", bad.describe());
                reason.push_str(if matches!(bad, BadRecord::Undecodable(_)) {
                    "(its checksum matches, so this is no torn write)"
                } else {
                    "followed by a valid record, so this is no torn write"
                });
                return Err(corrupt(path, pos as u64, reason));
            }
        }
    }
    Ok(LogScan {
        events,
        good_end: pos,
    })
}

/// Whether the bytes from `pos` to the end are what a crash during an append can leave:
/// nothing in them is a complete record with a matching checksum (or they are all zeros, as
/// some file systems leave after a power loss).
fn is_torn_tail(bytes: &[u8], pos: usize) -> bool {
    let tail = &bytes[pos..];
    if tail.iter().all(|&b| b == 0) {
        return true;
    }
    // One interrupted record is at most this long; whatever precedes it in the same append
    // consists of complete records, which were read as good.
    if tail.len() > RECORD_HEADER_BYTES + MAX_RECORD_BYTES {
        return false;
    }
    !(pos + 1..bytes.len()).any(|at| record_payload(bytes, at).is_ok())
}

/// Reads a little-endian `u32` at `at` (the caller has checked the length).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `at` (the caller has checked the length).
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
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

/// The temporary file written before renaming onto `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Writes `bytes` to `path` (replacing it) and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), EventError> {
    let mut f = File::create(path).map_err(io_err(path, "create"))?;
    f.write_all(bytes).map_err(io_err(path, "write"))?;
    f.sync_all().map_err(io_err(path, "fsync"))
}

/// Atomically replaces the log with an empty one of `generation`: a temporary file, fsync,
/// rename, fsync of the directory.
fn write_new_log(dir: &Path, log_path: &Path, generation: u64) -> Result<(), EventError> {
    let tmp = tmp_path(log_path);
    write_synced(&tmp, &encode_header(&LOG_MAGIC, generation))?;
    fs::rename(&tmp, log_path).map_err(io_err(log_path, "rename the new log into place"))?;
    sync_dir(dir)
}

/// Cuts a torn tail off the log and fsyncs it.
fn cut_log(path: &Path, len: u64) -> Result<(), EventError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for repair"))?;
    f.set_len(len).map_err(io_err(path, "cut the torn tail"))?;
    f.sync_all().map_err(io_err(path, "fsync"))
}

/// Opens the log for appending.
fn open_for_append(path: &Path) -> Result<File, EventError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path, "open for appending"))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that the renames and creations inside it are durable. A no-op where
/// the platform cannot open directories.
fn sync_dir(dir: &Path) -> Result<(), EventError> {
    #[cfg(unix)]
    {
        let f = File::open(dir).map_err(io_err(dir, "open the directory"))?;
        f.sync_all().map_err(io_err(dir, "fsync the directory"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, item: &str, ts: i64) -> Event {
        Event::new(user, item, EventKind::Click, ts)
    }

    /// A few events of three users, with every optional field somewhere, out of time order.
    fn sample() -> Vec<Event> {
        let mut rich = Event::new("u1", "i9", EventKind::Purchase, 50);
        rich.quantity = Some(-2.5);
        rich.query = Some("angle bracket".into());
        rich.position = Some(7);
        vec![
            ev("u1", "a", 30),
            ev("u2", "b", 10),
            rich,
            ev("u1", "c", 10),
            ev("u3", "d", 5),
            ev("u1", "e", 30),
        ]
    }

    fn items(store: &EventStore, user: &str) -> Vec<String> {
        store
            .user_events(user)
            .iter()
            .map(|e| e.item.clone())
            .collect()
    }

    fn snapshot_of(store: &EventStore) -> Vec<Event> {
        store.iter().cloned().collect()
    }

    #[test]
    fn in_memory_orders_by_time_then_insertion() {
        let mut store = EventStore::open_in_memory();
        assert!(store.is_empty());
        store.append(&sample()).unwrap();
        store
            .append(&[ev("u1", "f", 30), ev("u1", "g", 0)])
            .unwrap();
        assert_eq!(store.len(), 8);
        assert_eq!(items(&store, "u1"), ["g", "c", "a", "e", "f", "i9"]);
        assert_eq!(store.users().collect::<Vec<_>>(), ["u1", "u2", "u3"]);
        assert!(store.user_events("nobody").is_empty());
        assert_eq!(store.iter().count(), 8);
        assert_eq!(store.forget("u1").unwrap(), 6);
        assert_eq!(store.len(), 2);
        store.compact().unwrap();
        assert_eq!(store.log_records(), 0);
        assert_eq!(store.dir(), None);
    }

    #[test]
    fn append_rejects_bad_events_whole_batch() {
        let mut store = EventStore::open_in_memory();
        let mut nan = ev("u", "i", 1);
        nan.quantity = Some(f64::NAN);
        for (bad, field) in [
            (ev(" ", "i", 1), "user"),
            (ev("u", "", 1), "item"),
            (nan, "quantity"),
        ] {
            let err = store.append(&[ev("u", "ok", 1), bad]).unwrap_err();
            assert_eq!(err.field(), Some(field));
            assert_eq!(err.source_name(), "appended event 2 of 2");
            assert!(err.is_caller_fault());
        }
        assert!(store.is_empty());
        let huge = ev("u", &"x".repeat(MAX_RECORD_BYTES + 1), 1);
        let err = store.append(&[huge]).unwrap_err();
        assert!(matches!(err.kind, EventErrorKind::TooLarge { .. }), "{err}");
    }

    #[test]
    fn append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let mut store = EventStore::open(&path).unwrap();
        assert_eq!(store.dir(), Some(path.as_path()));
        store.append(&sample()[..3]).unwrap();
        store.append(&sample()[3..]).unwrap();
        store.append(&[]).unwrap();
        assert_eq!(store.log_records(), 6);
        let before = snapshot_of(&store);
        drop(store);

        let store = EventStore::open(&path).unwrap();
        assert_eq!(snapshot_of(&store), before);
        assert_eq!(items(&store, "u1"), ["c", "a", "e", "i9"]);
        assert_eq!(store.user_events("u1")[3], sample()[2]);
        assert_eq!(store.recovered_bytes(), 0);
        assert_eq!(store.log_records(), 6);
    }

    #[test]
    fn compact_then_append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        store.append(&sample()).unwrap();
        store.compact().unwrap();
        assert_eq!(store.log_records(), 0);
        assert_eq!(
            fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            HEADER_BYTES as u64
        );
        store.append(&[ev("u1", "late", 30)]).unwrap();
        let before = snapshot_of(&store);
        drop(store);
        let mut store = EventStore::open(dir.path()).unwrap();
        assert_eq!(snapshot_of(&store), before);
        assert_eq!(items(&store, "u1"), ["c", "a", "e", "late", "i9"]);
        assert_eq!(store.log_records(), 1);
        // Compacting twice in a row and reopening changes nothing.
        store.compact().unwrap();
        store.compact().unwrap();
        drop(store);
        assert_eq!(snapshot_of(&EventStore::open(dir.path()).unwrap()), before);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn append_compacts_when_the_log_is_long() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        store.compact_after = 3;
        store.append(&sample()[..2]).unwrap();
        store.append(&sample()[2..4]).unwrap();
        assert_eq!(store.log_records(), 4);
        store.append(&sample()[4..]).unwrap();
        assert_eq!(store.log_records(), 2);
        assert!(dir.path().join(SNAPSHOT_FILE).exists());
        let before = snapshot_of(&store);
        drop(store);
        assert_eq!(snapshot_of(&EventStore::open(dir.path()).unwrap()), before);
    }

    #[test]
    fn forget_is_durable_and_spares_other_users() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        store.append(&sample()).unwrap();
        store.compact().unwrap();
        store
            .append(&[ev("u1", "x", 1), ev("u2", "y", 11)])
            .unwrap();
        assert_eq!(store.forget("u1").unwrap(), 5);
        assert_eq!(store.forget("u1").unwrap(), 0);
        assert_eq!(store.forget("nobody").unwrap(), 0);
        assert_eq!(store.len(), 3);
        assert_eq!(store.users().collect::<Vec<_>>(), ["u2", "u3"]);
        drop(store);

        let store = EventStore::open(dir.path()).unwrap();
        assert!(store.user_events("u1").is_empty());
        assert_eq!(items(&store, "u2"), ["b", "y"]);
        assert_eq!(items(&store, "u3"), ["d"]);
        assert_eq!(store.len(), 3);
        // The events are gone from the files, not only hidden.
        for file in [LOG_FILE, SNAPSHOT_FILE] {
            let bytes = fs::read(dir.path().join(file)).unwrap();
            assert!(!bytes.windows(2).any(|w| w == b"u1"), "{file}");
        }
    }

    #[test]
    fn crash_between_snapshot_and_log_reset_does_not_replay_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        store.append(&sample()).unwrap();
        let old_log = fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(store.forget("u2").unwrap(), 1);
        drop(store);
        // Put the pre-forget log back, as if the crash came before its reset.
        fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 5);
        assert!(store.user_events("u2").is_empty());
        assert_eq!(store.log_records(), 0);
    }

    /// A closed store directory holding `sample()` compacted into a snapshot.
    fn compacted_sample_store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        store.append(&sample()).unwrap();
        store.compact().unwrap();
        dir
    }

    #[test]
    fn log_without_its_snapshot_is_an_error() {
        let dir = compacted_sample_store();
        fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("snapshot.bin is missing"), "{err}");
        assert!(!err.is_caller_fault());
    }

    #[test]
    fn snapshot_without_its_log_is_an_error() {
        let dir = compacted_sample_store();
        fs::remove_file(dir.path().join(LOG_FILE)).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("log.bin is missing"), "{err}");
        assert!(dir.path().join(SNAPSHOT_FILE).exists());
    }

    /// Writes `sample()` one event per append and returns the log's path and record offsets.
    fn log_of_single_records(dir: &Path) -> (PathBuf, Vec<u64>) {
        let mut store = EventStore::open(dir).unwrap();
        let mut offsets = Vec::new();
        for e in sample() {
            offsets.push(fs::metadata(dir.join(LOG_FILE)).unwrap().len());
            store.append(&[e]).unwrap();
        }
        (dir.join(LOG_FILE), offsets)
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_survive() {
        for cut in [1, 3, 8, 9] {
            let dir = tempfile::tempdir().unwrap();
            let (log, offsets) = log_of_single_records(dir.path());
            let full = fs::metadata(&log).unwrap().len();
            let f = OpenOptions::new().write(true).open(&log).unwrap();
            f.set_len(full - cut).unwrap();
            drop(f);

            let mut store = EventStore::open(dir.path()).unwrap();
            let last_start = offsets[offsets.len() - 1];
            assert_eq!(
                store.recovered_bytes(),
                full - cut - last_start,
                "cut {cut}"
            );
            assert_eq!(store.len(), 5);
            assert!(!store.user_events("u1").iter().any(|e| e.item == "e"));
            assert_eq!(fs::metadata(&log).unwrap().len(), last_start);
            // The store keeps working, and a clean reopen reports nothing.
            store.append(&[ev("u1", "after", 99)]).unwrap();
            drop(store);
            let store = EventStore::open(dir.path()).unwrap();
            assert_eq!(store.recovered_bytes(), 0);
            assert_eq!(store.len(), 6);
        }
    }

    #[test]
    fn bad_checksum_in_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_of_single_records(dir.path());
        let mut bytes = fs::read(&log).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&log, &bytes).unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 5);
        assert!(store.recovered_bytes() > 0);
    }

    #[test]
    fn zero_filled_tail_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_of_single_records(dir.path());
        let mut bytes = fs::read(&log).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(&log, &bytes).unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        assert_eq!((store.len(), store.recovered_bytes()), (6, 4096));
    }

    #[test]
    fn flipped_byte_in_a_middle_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (log, offsets) = log_of_single_records(dir.path());
        let original = fs::read(&log).unwrap();
        let middle = offsets[offsets.len() / 2] as usize;
        // The length field, the checksum, and a payload byte of the middle record.
        for at in [middle, middle + 2, middle + 5, middle + 10] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x41;
            fs::write(&log, &bytes).unwrap();
            let err = EventStore::open(dir.path()).unwrap_err();
            assert!(
                matches!(err.kind, EventErrorKind::Corrupt { offset, .. } if offset == middle as u64),
                "byte {at}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("log.bin"), "{text}");
            assert!(
                text.contains(&format!("corrupt at byte {middle}")),
                "{text}"
            );
            assert!(!err.is_caller_fault());
            // Nothing was deleted.
            assert_eq!(fs::read(&log).unwrap(), bytes);
        }
    }

    #[test]
    fn damaged_log_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_of_single_records(dir.path());
        let original = fs::read(&log).unwrap();
        let mut bytes = original.clone();
        bytes[0] = b'X';
        fs::write(&log, &bytes).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("wrong magic bytes"), "{err}");

        let mut bytes = original.clone();
        bytes[8] = 9;
        fs::write(&log, &bytes).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(matches!(
            err.kind,
            EventErrorKind::UnsupportedVersion {
                found: 9,
                supported: FORMAT_VERSION
            }
        ));

        let mut bytes = original.clone();
        bytes[13] ^= 1;
        fs::write(&log, &bytes).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("header checksum"), "{err}");

        fs::write(&log, &original[..10]).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("shorter than"), "{err}");
    }

    #[test]
    fn garbage_snapshot_is_an_error() {
        let dir = compacted_sample_store();
        let snapshot = dir.path().join(SNAPSHOT_FILE);
        let original = fs::read(&snapshot).unwrap();

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"garbage, not a snapshot at all".to_vec(),
                "wrong magic bytes",
            ),
            (original[..original.len() - 1].to_vec(), "payload length"),
            (original[..20].to_vec(), "shorter than"),
            (
                {
                    let mut b = original.clone();
                    let mid = b.len() - 10;
                    b[mid] ^= 0x10;
                    b
                },
                "payload checksum mismatch",
            ),
            (
                {
                    let mut b = original.clone();
                    b.extend_from_slice(b"tail");
                    b
                },
                "payload length",
            ),
        ];
        for (bytes, want) in cases {
            fs::write(&snapshot, &bytes).unwrap();
            let err = EventStore::open(dir.path()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("snapshot.bin"), "{text}");
            assert!(text.contains(want), "want {want:?}: {text}");
            assert!(!err.is_caller_fault());
            assert_eq!(fs::read(&snapshot).unwrap(), bytes);
        }
    }

    #[test]
    fn snapshot_with_valid_checksum_but_bad_payload_is_an_error() {
        let dir = compacted_sample_store();
        let snapshot = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = encode_header(&SNAPSHOT_MAGIC, 1);
        let payload = [0xFFu8; 16];
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        fs::write(&snapshot, &bytes).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[test]
    fn record_with_valid_checksum_but_bad_payload_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_of_single_records(dir.path());
        let mut bytes = fs::read(&log).unwrap();
        let payload = [0xFFu8; 5];
        let at = bytes.len();
        bytes.extend_from_slice(&5u32.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        fs::write(&log, &bytes).unwrap();
        let err = EventStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err.kind, EventErrorKind::Corrupt { offset, .. } if offset == at as u64),
            "{err}"
        );
    }

    #[test]
    fn stored_form_is_serde_of_event() {
        for event in sample() {
            let stored =
                bincode::serde::encode_to_vec(StoredEventRef::from(&event), record_config())
                    .unwrap();
            let direct = bincode::serde::encode_to_vec(&event, record_config()).unwrap();
            assert_eq!(stored, direct);
            assert_eq!(decode_event(&stored).unwrap(), event);
        }
    }

    #[test]
    fn open_creates_nested_directories_and_clears_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b");
        drop(EventStore::open(&path).unwrap());
        fs::write(path.join("snapshot.bin.tmp"), b"half-written").unwrap();
        let store = EventStore::open(&path).unwrap();
        assert!(store.is_empty());
        assert!(!path.join("snapshot.bin.tmp").exists());
    }
}
