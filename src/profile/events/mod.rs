//! Shopper events (view, click, cart, purchase) and their JSONL reader.
//!
//! An [`Event`] says that a user did something with a catalog item at a time. Profiles are
//! built from them, and they are kept durably by [`EventStore`](super::store::EventStore).
//!
//! # JSONL input
//!
//! One JSON object per line; blank lines are skipped and unknown fields are ignored:
//!
//! ```text
//! {"user": "u17", "item": "100001", "kind": "purchase", "ts": "2011-10-02T10:32:00", "quantity": 2}
//! {"user": 17, "item": 100002, "kind": "click", "ts": 1317551520, "query": "angle bracket", "position": 3}
//! ```
//!
//! | field | accepted values |
//! | --- | --- |
//! | `user`, `item` | non-empty string without control characters, or an integer (turned into its decimal text); required |
//! | `kind` | `view`, `click`, `cart` or `purchase` (ASCII case ignored); required |
//! | `ts` | a timestamp string (see [`parse_timestamp`]) or an integer of Unix seconds, from 1970 to a day after now; required |
//! | `quantity` | a number above 0, or a numeric string (returns and cancellations are not modelled: leave them out) |
//! | `id` | the event's own id, a string or an integer: importing a line whose id is stored already does nothing |
//! | `query` | the search text that led to the event; blank means absent |
//! | `position` | 0-based rank of the item in the results shown, a non-negative integer below 2^32 |
//!
//! A line without `id` is identified by its content and by how many identical lines
//! precede it in the same file, so importing a file again after a failure or a timeout
//! stores nothing twice (see [`EventStore::append_identified`](super::store::EventStore::append_identified)).
//!
//! `null` means absent for the optional fields. The item must be in the index's catalog. Every
//! error names its place like `events.jsonl:12: field "ts": invalid timestamp "2011-13-45": ...`.
//!
//! # Time
//!
//! Timestamps are Unix seconds (`i64`, UTC). Zone-less times, such as the shop-local times of
//! the UCI Online Retail data, are read as if they were UTC: profiles only compare event times
//! with each other (recency, order), and for times from one shop treating them as UTC keeps
//! both their order and their distances.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lines::{json_error_message, read_lines, shorten, skip_bom};

/// What a user did with an item, from weakest to strongest signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The item was shown to the user (an impression) or its page was opened.
    View,
    /// The user clicked the item in a result list.
    Click,
    /// The user put the item in the cart.
    Cart,
    /// The user bought the item.
    Purchase,
}

impl EventKind {
    /// Every kind, in order of increasing signal strength.
    pub const ALL: [EventKind; 4] = [
        EventKind::View,
        EventKind::Click,
        EventKind::Cart,
        EventKind::Purchase,
    ];

    /// The kind's name as written in JSONL: `"view"`, `"click"`, `"cart"` or `"purchase"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::Cart => "cart",
            EventKind::Purchase => "purchase",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The allowed kinds, for error messages.
const KIND_LIST: &str = "view, click, cart, purchase";

/// The error of parsing an [`EventKind`] from text that names no kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind \"{found}\"; expected one of: {KIND_LIST}")]
pub struct ParseEventKindError {
    /// The text that was given (shortened if long).
    pub found: String,
}

impl FromStr for EventKind {
    type Err = ParseEventKindError;

    /// Parses `view`, `click`, `cart` or `purchase`, ignoring ASCII case and surrounding
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseEventKindError { found: shorten(s) })
    }
}

/// One thing a user did with a catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The user's id.
    pub user: String,
    /// The item's product id in the catalog.
    pub item: String,
    /// What the user did.
    pub kind: EventKind,
    /// When, in Unix seconds (UTC; zone-less input times are read as UTC).
    pub ts: i64,
    /// How many items, for cart and purchase events; negative for returns.
    pub quantity: Option<f64>,
    /// The search text that led to the event, when known.
    pub query: Option<String>,
    /// The 0-based rank at which the item was shown for `query`, when known.
    pub position: Option<u32>,
}

impl Event {
    /// An event with no quantity, query or position.
    pub fn new(user: impl Into<String>, item: impl Into<String>, kind: EventKind, ts: i64) -> Self {
        Self {
            user: user.into(),
            item: item.into(),
            kind,
            ts,
            quantity: None,
            query: None,
            position: None,
        }
    }
}

/// The timestamp forms [`parse_timestamp`] accepts, for its error message.
pub const TIMESTAMP_FORMATS: &str = "expected RFC 3339 (2011-10-02T10:32:00Z, \
     2011-10-02T10:32:00.5+01:00) or ISO 8601 without zone, read as UTC (2011-10-02T10:32:00, \
     2011-10-02 10:32:00, 2011-10-02T10:32, fractional seconds allowed, or a date 2011-10-02 \
     for midnight)";

/// Zone-less date-time layouts, tried in order. `%.f` also matches no fraction at all.
const NAIVE_LAYOUTS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// Parses a timestamp into Unix seconds (fractions of a second are dropped, rounding down).
///
/// Accepted, after trimming surrounding whitespace:
/// - RFC 3339 with a zone: `2011-10-02T10:32:00Z`, `2011-10-02T10:32:00+01:00`,
///   `2011-10-02T10:32:00.250Z`;
/// - ISO 8601 without a zone, read as UTC: `2011-10-02T10:32:00`, `2011-10-02 10:32:00`,
///   `2011-10-02T10:32`, `2011-10-02 10:32`, with optional fractional seconds;
/// - a bare date, `2011-10-02`, for midnight UTC.
///
/// Zone-less times are usually shop-local; they are only ever compared with each other, so
/// reading them all as UTC keeps their order and spacing.
///
/// The error is the message `invalid timestamp "...": expected ...` listing these forms.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp());
    }
    for layout in NAIVE_LAYOUTS {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, layout) {
            return Ok(dt.and_utc().timestamp());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp());
    }
    Err(format!(
        "invalid timestamp \"{}\": {TIMESTAMP_FORMATS}",
        shorten(s)
    ))
}

/// How far past the present an event's time may be (clock skew between machines).
pub const MAX_FUTURE_SECS: i64 = 86_400;

/// Checks the values of an event, wherever it comes from (a file line, or the
/// library's `record`): ids non-empty and free of control characters, a time from
/// 1970 up to [`MAX_FUTURE_SECS`] after now, a finite quantity above zero. On
/// failure, the field and what is wrong with it.
pub(crate) fn check_event_values(event: &Event) -> Result<(), (&'static str, EventErrorKind)> {
    for (field, id) in [("user", &event.user), ("item", &event.item)] {
        if id.trim().is_empty() {
            return Err((field, EventErrorKind::EmptyField));
        }
        if crate::catalog::id_control_char(id).is_some() {
            return Err((field, EventErrorKind::ControlCharacter));
        }
    }
    let latest = now_unix().saturating_add(MAX_FUTURE_SECS);
    if event.ts < 0 || event.ts > latest {
        return Err((
            "ts",
            EventErrorKind::TimestampOutOfRange {
                ts: event.ts,
                latest,
            },
        ));
    }
    match event.quantity {
        Some(q) if !q.is_finite() => Err(("quantity", EventErrorKind::InvalidNumber { value: q })),
        Some(q) if q <= 0.0 => Err(("quantity", EventErrorKind::NonPositiveQuantity { value: q })),
        _ => Ok(()),
    }
}

/// The id of an event read from a file: the hash of its `id` field when the line has
/// one, otherwise of its content and how many identical lines came before it in the
/// same file (`seen` counts them per content hash). So importing the same file twice
/// (a retry) stores each event once, and two identical lines of one file stay two
/// events.
pub(crate) fn event_id(given: Option<&str>, event: &Event, seen: &mut HashMap<u64, u32>) -> u64 {
    use crate::store::durable::fnv1a64;
    if let Some(id) = given {
        return fnv1a64(format!("id\u{1f}{id}").as_bytes());
    }
    let content = fnv1a64(
        format!(
            "content\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}",
            event.user,
            event.item,
            event.kind,
            event.ts,
            event.quantity.map(f64::to_bits),
            event.query,
            event.position
        )
        .as_bytes(),
    );
    let occurrence = seen.entry(content).or_insert(0);
    let mut key = content.to_le_bytes().to_vec();
    key.extend_from_slice(&occurrence.to_le_bytes());
    *occurrence += 1;
    fnv1a64(&key)
}

/// The current time, Unix seconds (0 if the clock is before 1970): the default
/// "as of" of a request, and the time stamped on builds and trained heads.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Formats Unix seconds as a zone-less UTC time, `2011-10-02T10:32:00`, which
/// [`parse_timestamp`] reads back to the same value.
///
/// Values outside the calendar range (more than about 262,000 years from now) are written as
/// the plain number.
pub fn format_timestamp(ts: i64) -> String {
    match DateTime::from_timestamp(ts, 0) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S").to_string(),
        None => ts.to_string(),
    }
}

/// The default for [`EventReadOptions::max_reported`]: enough reasons to see a pattern without
/// flooding a terminal (the same as for catalogs).
pub const DEFAULT_MAX_REPORTED: usize = 5;

/// How to read an events file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReadOptions {
    /// Skip bad lines (counting them in [`EventBatch::skipped`]) instead of failing on the
    /// first one. I/O errors always fail.
    pub skip_invalid: bool,
    /// How many skipped-line reasons to keep in [`EventBatch::problems`] (default
    /// [`DEFAULT_MAX_REPORTED`]).
    pub max_reported: usize,
}

impl Default for EventReadOptions {
    fn default() -> Self {
        Self {
            skip_invalid: false,
            max_reported: DEFAULT_MAX_REPORTED,
        }
    }
}

/// The events read from one file.
#[derive(Debug, Default)]
pub struct EventBatch {
    /// The valid events, in file order.
    pub events: Vec<Event>,
    /// Each event's id (see the module docs), in the same order.
    pub ids: Vec<u64>,
    /// How many bad lines were skipped (only with [`EventReadOptions::skip_invalid`]).
    pub skipped: usize,
    /// Why the first skipped lines were skipped, at most
    /// [`EventReadOptions::max_reported`] of them.
    pub problems: Vec<EventError>,
}

/// An error reading events or using the event store, with the place it was found.
///
/// Displays as `SOURCE[:LINE]: [field "FIELD": ]REASON[; hint: HINT]`, for example
/// `events.jsonl:12: field "kind": unknown event kind "buy"; expected one of: view, click, cart,
/// purchase`. For the store, the source is the store file concerned.
pub type EventError = crate::error::LocatedError<EventErrorKind>;

/// The kinds of [`EventError`]. Each variant's `Display` is the reason part of the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// Opening, reading, writing or syncing a file failed. Always fatal.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done: `"read"`, `"write"`, `"fsync"`, ...
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not valid JSON.
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// The parser's message, with the column of the problem.
        message: String,
    },
    /// A required field (`user`, `item`, `kind`, `ts`) is absent or null.
    #[error("is required but missing")]
    MissingField,
    /// A user or item id is empty (or only whitespace).
    #[error("must not be empty")]
    EmptyField,
    /// A value has the wrong JSON type or cannot be read as the field's type.
    #[error("expected {expected}, got {found}")]
    WrongType {
        /// What the field accepts, e.g. `"a string or an integer"`.
        expected: &'static str,
        /// The offending value as it appeared in the input (shortened if long).
        found: String,
    },
    /// The `kind` names no event kind.
    #[error("unknown event kind \"{found}\"; expected one of: {KIND_LIST}")]
    UnknownKind {
        /// The offending text (shortened if long).
        found: String,
    },
    /// The `ts` string is not a timestamp [`parse_timestamp`] accepts.
    #[error("invalid timestamp \"{found}\": {TIMESTAMP_FORMATS}")]
    InvalidTimestamp {
        /// The offending text (shortened if long).
        found: String,
    },
    /// A quantity is NaN or infinite.
    #[error("must be a finite number, got {value}")]
    InvalidNumber {
        /// The offending value.
        value: f64,
    },
    /// A quantity is zero or negative.
    #[error("must be a number > 0, got {value}")]
    NonPositiveQuantity {
        /// The offending value.
        value: f64,
    },
    /// A timestamp before 1970 or more than a day in the future.
    #[error("timestamp {ts} is out of range: events are dated from 1970 up to a day after now (Unix seconds {latest})")]
    TimestampOutOfRange {
        /// The timestamp, in Unix seconds.
        ts: i64,
        /// The latest accepted, in Unix seconds.
        latest: i64,
    },
    /// The event's shopper was forgotten after the event happened.
    #[error("the shopper was forgotten at {forgotten_at} (Unix seconds), after this event ({ts}); their earlier events are not stored again")]
    ForgottenUser {
        /// The event's time.
        ts: i64,
        /// When the shopper was forgotten.
        forgotten_at: i64,
    },
    /// An id holds a tab, a line break or another control character.
    #[error("contains a control character (tab, line break, ...), which would break TSV and TREC output")]
    ControlCharacter,
    /// The item is not a product of the index's catalog.
    #[error("unknown item id \"{item}\" (not in the index's catalog)")]
    UnknownItem {
        /// The item id (shortened if long).
        item: String,
    },
    /// The line is not valid UTF-8.
    #[error("invalid UTF-8 byte 0x{byte:02X} at byte {column} of the line")]
    InvalidUtf8 {
        /// The first byte that is not valid UTF-8.
        byte: u8,
        /// Its 1-based byte position within the line.
        column: usize,
    },
    /// An event given to the store encodes to a record over the size limit.
    #[error("the event encodes to {bytes} bytes, over the limit of {max} bytes per record")]
    TooLarge {
        /// The encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A store file is damaged: a bad record followed by good ones, a bad checksum in the
    /// snapshot, or bytes that do not decode. Nothing was changed on disk.
    #[error("corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The byte offset in the file where the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A store file was written by a newer (or unknown) version of the format.
    #[error("format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// An earlier write to the store failed in a way that leaves the open handle out of step
    /// with the files, so it takes no more writes.
    #[error("the store takes no more writes after an earlier failure ({reason})")]
    Unusable {
        /// The earlier failure.
        reason: String,
    },
}

impl crate::error::ErrorKind for EventErrorKind {
    /// `false` for I/O failures and damaged or unreadable store files (the system's fault),
    /// `true` when the input data or the caller is at fault.
    fn is_caller_fault(&self) -> bool {
        !matches!(
            self,
            EventErrorKind::Io { .. }
                | EventErrorKind::Corrupt { .. }
                | EventErrorKind::UnsupportedVersion { .. }
                | EventErrorKind::Unusable { .. }
        )
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::InvalidUtf8 { .. } => Some("event files must be UTF-8"),
            Self::InvalidTimestamp { .. } => Some("a JSON integer is read as Unix seconds"),
            Self::NonPositiveQuantity { .. } => Some(
                "returns and cancellations are not modelled: leave those lines out of the events",
            ),
            Self::UnknownItem { .. } => Some(
                "events must refer to products of the catalog the index was built from; \
                 skip such lines with skip_invalid",
            ),
            Self::Corrupt { .. } => Some(
                "the file was damaged outside a normal crash (disk error or an edit); it was \
                 left as it is: restore the store directory from a backup, or move it away to \
                 start an empty store",
            ),
            Self::UnsupportedVersion { .. } => {
                Some("open the store with the shelfrank version that wrote it")
            }
            Self::Unusable { .. } => Some("open the store again"),
            _ => None,
        }
    }
}

/// Reads an events JSONL file (see the [module docs](self) for the fields).
///
/// `known_item` says whether an item id is in the index's catalog; events for other items are
/// errors. Without [`EventReadOptions::skip_invalid`] the first bad line is the `Err`; with it,
/// bad lines are counted and the first few kept in [`EventBatch::problems`]. I/O errors are
/// always the `Err`.
pub fn read_events(
    path: &Path,
    opts: &EventReadOptions,
    known_item: &dyn Fn(&str) -> bool,
) -> Result<EventBatch, EventError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| {
        EventError::new(
            name.as_str(),
            None,
            None,
            EventErrorKind::Io {
                action: "open",
                source,
            },
        )
    })?;
    read_events_from(file, &name, opts, known_item)
}

/// Reads events JSONL from any reader; `source_name` is used in error messages. Otherwise the
/// same as [`read_events`].
pub fn read_events_from(
    reader: impl Read,
    source_name: &str,
    opts: &EventReadOptions,
    known_item: &dyn Fn(&str) -> bool,
) -> Result<EventBatch, EventError> {
    let io_error = |line: usize, source| {
        EventError::new(
            source_name,
            Some(line),
            None,
            EventErrorKind::Io {
                action: "read",
                source,
            },
        )
    };
    let reader = skip_bom(reader).map_err(|e| io_error(1, e))?;
    let mut batch = EventBatch::default();
    let mut seen = HashMap::new();
    read_lines(reader, io_error, |line, bytes| {
        let parsed = parse_line(bytes).and_then(|(event, given)| {
            if let Err((field, kind)) = check_event_values(&event) {
                return Err(RowError::field(field, kind));
            }
            if known_item(&event.item) {
                Ok((event, given))
            } else {
                Err(RowError::field(
                    "item",
                    EventErrorKind::UnknownItem {
                        item: shorten(&event.item),
                    },
                ))
            }
        });
        match parsed {
            Ok((event, given)) => {
                batch
                    .ids
                    .push(event_id(given.as_deref(), &event, &mut seen));
                batch.events.push(event);
            }
            Err(e) => {
                let err = EventError::new(source_name, Some(line), e.field, e.kind);
                if !opts.skip_invalid {
                    return Err(err);
                }
                batch.skipped += 1;
                if batch.problems.len() < opts.max_reported {
                    batch.problems.push(err);
                }
            }
        }
        Ok(())
    })?;
    Ok(batch)
}

/// A problem with one line, before the source and line number are attached.
struct RowError {
    field: Option<String>,
    kind: EventErrorKind,
}

impl RowError {
    fn line(kind: EventErrorKind) -> Self {
        Self { field: None, kind }
    }

    fn field(field: &str, kind: EventErrorKind) -> Self {
        Self {
            field: Some(field.to_owned()),
            kind,
        }
    }
}

/// Parses one non-blank line into an event and its `id` field, if it has one.
fn parse_line(bytes: &[u8]) -> Result<(Event, Option<String>), RowError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        RowError::line(EventErrorKind::InvalidUtf8 {
            byte: bytes.get(at).copied().unwrap_or(0),
            column: at + 1,
        })
    })?;
    let value: Value = serde_json::from_str(text).map_err(json_error)?;
    let Value::Object(mut obj) = value else {
        return Err(RowError::line(EventErrorKind::WrongType {
            expected: "a JSON object",
            found: excerpt(&value),
        }));
    };
    let given = match obj.remove("id") {
        None | Some(Value::Null) => None,
        value => Some(id_field("id", value)?),
    };
    let event = Event {
        user: id_field("user", obj.remove("user"))?,
        item: id_field("item", obj.remove("item"))?,
        kind: kind_field(obj.remove("kind"))?,
        ts: ts_field(obj.remove("ts"))?,
        quantity: quantity_field(obj.remove("quantity"))?,
        query: query_field(obj.remove("query"))?,
        position: position_field(obj.remove("position"))?,
    };
    Ok((event, given))
}

/// Turns a serde_json error into [`EventErrorKind::InvalidJson`], replacing its "at line 1
/// column N" (always line 1 here) with just the column.
fn json_error(e: serde_json::Error) -> RowError {
    RowError::line(EventErrorKind::InvalidJson {
        message: json_error_message(&e),
    })
}

/// A value's JSON text, shortened, for an error message.
fn excerpt(value: &Value) -> String {
    shorten(&value.to_string())
}

/// A wrong-type error for `field`.
fn wrong_type(field: &str, expected: &'static str, found: &Value) -> RowError {
    RowError::field(
        field,
        EventErrorKind::WrongType {
            expected,
            found: excerpt(found),
        },
    )
}

/// Takes a required field, treating `null` as missing.
fn required(field: &str, value: Option<Value>) -> Result<Value, RowError> {
    match value {
        None | Some(Value::Null) => Err(RowError::field(field, EventErrorKind::MissingField)),
        Some(v) => Ok(v),
    }
}

/// A user or item id: a non-empty string (trimmed), or an integer as decimal text.
fn id_field(field: &str, value: Option<Value>) -> Result<String, RowError> {
    match required(field, value)? {
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Err(RowError::field(field, EventErrorKind::EmptyField))
            } else if t.len() == s.len() {
                Ok(s)
            } else {
                Ok(t.to_owned())
            }
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(wrong_type(field, "a string or an integer", &other)),
    }
}

/// The event kind.
fn kind_field(value: Option<Value>) -> Result<EventKind, RowError> {
    match required("kind", value)? {
        Value::String(s) => s.parse().map_err(|e: ParseEventKindError| {
            RowError::field("kind", EventErrorKind::UnknownKind { found: e.found })
        }),
        other => Err(wrong_type("kind", "a string", &other)),
    }
}

/// The timestamp: a string [`parse_timestamp`] accepts, or an integer of Unix seconds.
fn ts_field(value: Option<Value>) -> Result<i64, RowError> {
    timestamp_value(required("ts", value)?).map_err(|kind| RowError::field("ts", kind))
}

/// A JSON timestamp as every log line takes it (events, impressions): a string
/// [`parse_timestamp`] accepts, or an integer of Unix seconds.
pub(crate) fn timestamp_value(value: Value) -> Result<i64, EventErrorKind> {
    const EXPECTED: &str = "a timestamp string or an integer (Unix seconds)";
    let wrong = |v: &Value| EventErrorKind::WrongType {
        expected: EXPECTED,
        found: excerpt(v),
    };
    match value {
        Value::String(s) => {
            parse_timestamp(&s).map_err(|_| EventErrorKind::InvalidTimestamp { found: shorten(&s) })
        }
        Value::Number(n) => n.as_i64().ok_or_else(|| wrong(&Value::Number(n.clone()))),
        other => Err(wrong(&other)),
    }
}

/// The quantity: a finite number or a numeric string; null and blank strings are absent.
fn quantity_field(value: Option<Value>) -> Result<Option<f64>, RowError> {
    const EXPECTED: &str = "a number";
    let q = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(q) => q,
            None => return Err(wrong_type("quantity", EXPECTED, &Value::Number(n))),
        },
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(q) => q,
            Err(_) => return Err(wrong_type("quantity", EXPECTED, &Value::String(s))),
        },
        Some(other) => return Err(wrong_type("quantity", EXPECTED, &other)),
    };
    if q.is_finite() {
        Ok(Some(q))
    } else {
        Err(RowError::field(
            "quantity",
            EventErrorKind::InvalidNumber { value: q },
        ))
    }
}

/// The query: a string; null and blank strings are absent.
fn query_field(value: Option<Value>) -> Result<Option<String>, RowError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
        Some(other) => Err(wrong_type("query", "a string", &other)),
    }
}

/// The position: a non-negative integer below 2^32 (or such an integer as a string); null
/// and blank strings are absent.
fn position_field(value: Option<Value>) -> Result<Option<u32>, RowError> {
    const EXPECTED: &str = "a non-negative integer below 2^32";
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => Ok(Some(p)),
            None => Err(wrong_type("position", EXPECTED, &Value::Number(n))),
        },
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match s.trim().parse::<u32>() {
            Ok(p) => Ok(Some(p)),
            Err(_) => Err(wrong_type("position", EXPECTED, &Value::String(s))),
        },
        Some(other) => Err(wrong_type("position", EXPECTED, &other)),
    }
}

#[cfg(test)]
mod tests;
