//! The event store's on-disk format (see the [parent module](super) for the layout):
//! file headers, log records, the snapshot, and scanning a log for its good prefix.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize};

use super::{appended_name, corrupt, io_err, FORMAT_VERSION, MAX_RECORD_BYTES};

/// The first format version, still read: no event ids, no batches (every record
/// stands alone), no list of forgotten shoppers in the snapshot.
pub(super) const FORMAT_V1: u32 = 1;
use crate::profile::events::{Event, EventError, EventErrorKind, EventKind};
use crate::store::durable;

/// Magic bytes at the start of the log.
pub(super) const LOG_MAGIC: [u8; 8] = *b"SRLOG\0\0\0";
/// Magic bytes at the start of the snapshot.
pub(super) const SNAPSHOT_MAGIC: [u8; 8] = *b"SRSNAP\0\0";
/// Where the generation sits in the file header.
pub(super) const GENERATION_OFFSET: usize = 12;
/// Where the header's own CRC sits (it covers the bytes before it).
pub(super) const HEADER_CRC_OFFSET: usize = 20;
/// Length of the file header: magic, version, generation, header CRC.
pub(super) const HEADER_BYTES: usize = 24;
/// Length of a record's header: payload length and payload CRC.
pub(super) const RECORD_HEADER_BYTES: usize = 8;
/// Length of the snapshot's payload length and payload CRC.
pub(super) const SNAPSHOT_PREFIX_BYTES: usize = 12;

/// bincode configuration of a record: the standard one, with the record size cap.
pub(super) fn record_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// The stored form of an event, for writing (borrows the event). Must match [`StoredEvent`].
#[derive(Serialize)]
pub(super) struct StoredEventRef<'a> {
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

/// The stored form of an event, for reading. Must match [`StoredEventRef`]. The
/// strings borrow from the file's bytes, so bincode checks each claimed length
/// against the bytes there are before anything is allocated (a damaged length
/// cannot ask for a terabyte).
#[derive(Deserialize)]
pub(super) struct StoredEvent<'a> {
    #[serde(borrow)]
    user: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    item: std::borrow::Cow<'a, str>,
    kind: u8,
    ts: i64,
    quantity: Option<f64>,
    #[serde(borrow)]
    query: Option<std::borrow::Cow<'a, str>>,
    position: Option<u32>,
}

impl StoredEvent<'_> {
    fn into_event(self) -> Result<Event, String> {
        let kind = match self.kind {
            0 => EventKind::View,
            1 => EventKind::Click,
            2 => EventKind::Cart,
            3 => EventKind::Purchase,
            other => return Err(format!("unknown event kind code {other}")),
        };
        Ok(Event {
            user: self.user.into_owned(),
            item: self.item.into_owned(),
            kind,
            ts: self.ts,
            quantity: self.quantity,
            query: self.query.map(std::borrow::Cow::into_owned),
            position: self.position,
        })
    }
}

/// The on-disk code of an event kind (part of the format).
pub(super) fn kind_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::View => 0,
        EventKind::Click => 1,
        EventKind::Cart => 2,
        EventKind::Purchase => 3,
    }
}

/// A log record of format 2, for writing: an event (with its id, when it has one),
/// or the commit of the events written since the previous commit.
#[derive(Serialize)]
pub(super) enum RecordRef<'a> {
    /// One event of a batch.
    Event(Option<u64>, StoredEventRef<'a>),
    /// The end of a batch: the number of events it holds.
    Commit(u32),
}

/// A log record of format 2, for reading. Must match [`RecordRef`].
#[derive(Deserialize)]
enum Record<'a> {
    Event(Option<u64>, #[serde(borrow)] StoredEvent<'a>),
    Commit(u32),
}

/// The snapshot's payload of format 2, for writing: every stored event id, the
/// forgotten shoppers (hash of the id and when), then the events.
#[derive(Serialize)]
pub(super) struct SnapshotRef<'a> {
    pub(super) ids: Vec<u64>,
    pub(super) forgotten: Vec<(u64, i64)>,
    pub(super) events: SnapshotEvents<'a>,
}

/// The snapshot's payload of format 2, for reading. Must match [`SnapshotRef`].
#[derive(Deserialize)]
struct Snapshot<'a> {
    ids: Vec<u64>,
    forgotten: Vec<(u64, i64)>,
    #[serde(borrow)]
    events: Vec<StoredEvent<'a>>,
}

/// What a snapshot holds.
pub(super) struct SnapshotContent {
    pub(super) generation: u64,
    pub(super) version: u32,
    pub(super) ids: Vec<u64>,
    pub(super) forgotten: Vec<(u64, i64)>,
    pub(super) events: Vec<Event>,
}

/// All events except one user's, serialized as one sequence without copying them.
pub(super) struct SnapshotEvents<'a> {
    pub(super) by_user: &'a BTreeMap<String, Vec<Event>>,
    pub(super) skip_user: Option<&'a str>,
    pub(super) len: usize,
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

/// Appends the log record of the commit of `count` events to `out`.
pub(super) fn encode_commit(count: usize, out: &mut Vec<u8>) {
    let payload = bincode::serde::encode_to_vec(
        RecordRef::Commit(u32::try_from(count).unwrap_or(u32::MAX)),
        record_config(),
    )
    .unwrap_or_default();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Appends one log record for `event` (with its id) to `out`.
pub(super) fn encode_record(
    event: &Event,
    id: Option<u64>,
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
    let record = RecordRef::Event(id, StoredEventRef::from(event));
    let payload = bincode::serde::encode_to_vec(record, record_config())
        .map_err(|_| too_large(event.user.len() + event.item.len()))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_RECORD_BYTES)
        .ok_or_else(|| too_large(payload.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What one log record holds.
pub(super) enum Decoded {
    /// An event and its id.
    Event(Option<u64>, Event),
    /// The commit of the events since the previous commit.
    Commit(u32),
}

/// Decodes one record payload of a log of format `version`.
pub(super) fn decode_record(payload: &[u8], version: u32) -> Result<Decoded, String> {
    let no_event = |e| format!("the record does not decode as an event: {e}");
    let (decoded, used) = if version == FORMAT_V1 {
        let (stored, used): (StoredEvent, usize) =
            bincode::serde::borrow_decode_from_slice(payload, record_config()).map_err(no_event)?;
        (Decoded::Event(None, stored.into_event()?), used)
    } else {
        let (record, used): (Record, usize) =
            bincode::serde::borrow_decode_from_slice(payload, record_config()).map_err(no_event)?;
        let decoded = match record {
            Record::Event(id, stored) => Decoded::Event(id, stored.into_event()?),
            Record::Commit(n) => Decoded::Commit(n),
        };
        (decoded, used)
    };
    if used != payload.len() {
        return Err(format!(
            "the record has {} bytes after its content",
            payload.len() - used
        ));
    }
    Ok(decoded)
}

/// A file header: magic, format version, generation, CRC of those.
pub(super) fn encode_header(magic: &[u8; 8], generation: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(magic);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&generation.to_le_bytes());
    let crc = durable::crc32(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a file's header and returns its generation and format version.
pub(super) fn check_header(
    bytes: &[u8],
    magic: &[u8; 8],
    path: &Path,
) -> Result<(u64, u32), EventError> {
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
    if version != FORMAT_VERSION && version != FORMAT_V1 {
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
    if durable::crc32(&bytes[..HEADER_CRC_OFFSET]) != u32_at(bytes, HEADER_CRC_OFFSET) {
        return Err(corrupt(path, 0, "header checksum mismatch".into()));
    }
    Ok((u64_at(bytes, GENERATION_OFFSET), version))
}

/// Encodes a snapshot file.
pub(super) fn encode_snapshot(
    snapshot: &SnapshotRef<'_>,
    generation: u64,
    path: &Path,
) -> Result<Vec<u8>, EventError> {
    let payload =
        bincode::serde::encode_to_vec(snapshot, bincode::config::standard()).map_err(|e| {
            io_err(path, "encode the snapshot")(io::Error::other(format!("bincode: {e}")))
        })?;
    let mut bytes = encode_header(&SNAPSHOT_MAGIC, generation);
    bytes.reserve(SNAPSHOT_PREFIX_BYTES + payload.len());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Decodes a snapshot file.
pub(super) fn decode_snapshot(bytes: &[u8], path: &Path) -> Result<SnapshotContent, EventError> {
    let (generation, version) = check_header(bytes, &SNAPSHOT_MAGIC, path)?;
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
    if durable::crc32(payload) != u32_at(bytes, HEADER_BYTES + 8) {
        return Err(corrupt(
            path,
            start as u64,
            "payload checksum mismatch".into(),
        ));
    }
    let undecodable = |e| {
        corrupt(
            path,
            start as u64,
            format!("the payload does not decode as events: {e}"),
        )
    };
    let config = bincode::config::standard();
    let (snapshot, used) = if version == FORMAT_V1 {
        let (events, used): (Vec<StoredEvent>, usize) =
            bincode::serde::borrow_decode_from_slice(payload, config).map_err(undecodable)?;
        let snapshot = Snapshot {
            ids: Vec::new(),
            forgotten: Vec::new(),
            events,
        };
        (snapshot, used)
    } else {
        bincode::serde::borrow_decode_from_slice::<Snapshot, _>(payload, config)
            .map_err(undecodable)?
    };
    if used != payload.len() {
        return Err(corrupt(
            path,
            (start + used) as u64,
            "bytes after the events".into(),
        ));
    }
    let events = snapshot
        .events
        .into_iter()
        .map(StoredEvent::into_event)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| corrupt(path, start as u64, reason))?;
    Ok(SnapshotContent {
        generation,
        version,
        ids: snapshot.ids,
        forgotten: snapshot.forgotten,
        events,
    })
}

/// What reading the log found: the events of its committed batches (with their ids)
/// and where the committed data ends. Events after the last commit (an append cut
/// short by a crash) are not in it.
pub(super) struct LogScan {
    pub(super) events: Vec<(Option<u64>, Event)>,
    pub(super) records: usize,
    pub(super) good_end: usize,
}

/// Why a record could not be read.
pub(super) enum BadRecord {
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

/// Reads the record at `pos`: what it holds and the offset after it.
pub(super) fn read_record(
    bytes: &[u8],
    pos: usize,
    version: u32,
) -> Result<(Decoded, usize), BadRecord> {
    let payload = record_payload(bytes, pos)?;
    let decoded = decode_record(payload, version).map_err(BadRecord::Undecodable)?;
    Ok((decoded, pos + RECORD_HEADER_BYTES + payload.len()))
}

/// The checksummed payload of the record at `pos`.
pub(super) fn record_payload(bytes: &[u8], pos: usize) -> Result<&[u8], BadRecord> {
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
    if durable::crc32(payload) != u32_at(bytes, pos + 4) {
        return Err(BadRecord::Checksum);
    }
    Ok(payload)
}

/// Reads every record of a log of format `version` (after its header). A bad record
/// with nothing good after it is a torn tail, ending the good data; one followed by a
/// good record is corruption. In format 2 only committed batches count; in format 1
/// every record stands alone.
pub(super) fn scan_log(bytes: &[u8], path: &Path, version: u32) -> Result<LogScan, EventError> {
    let mut events = Vec::new();
    let mut pending = Vec::new();
    let mut records = 0;
    let mut pos = HEADER_BYTES;
    let mut good_end = pos;
    while pos < bytes.len() {
        match read_record(bytes, pos, version) {
            Ok((Decoded::Event(id, event), next)) => {
                pending.push((id, event));
                pos = next;
                if version == FORMAT_V1 {
                    events.append(&mut pending);
                    records += 1;
                    good_end = pos;
                }
            }
            Ok((Decoded::Commit(n), next)) => {
                if n as usize != pending.len() {
                    return Err(corrupt(
                        path,
                        pos as u64,
                        format!(
                            "a commit of {n} events after {} events (its checksum matches, so this is no torn write)",
                            pending.len()
                        ),
                    ));
                }
                records += pending.len();
                events.append(&mut pending);
                pos = next;
                good_end = pos;
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
        records,
        good_end,
    })
}

/// Whether the bytes from `pos` to the end are what a crash during an append can leave:
/// nothing in them is a complete record with a matching checksum (or they are all zeros, as
/// some file systems leave after a power loss).
pub(super) fn is_torn_tail(bytes: &[u8], pos: usize) -> bool {
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
pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `at` (the caller has checked the length).
pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}
