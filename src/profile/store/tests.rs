//! Tests of the event store: durability, crash recovery, corruption.

use super::*;
use crate::profile::events::EventKind;

fn ev(user: &str, item: &str, ts: i64) -> Event {
    Event::new(user, item, EventKind::Click, ts)
}

/// A few events of three users, with every optional field somewhere, out of time order.
fn sample() -> Vec<Event> {
    let mut rich = Event::new("u1", "i9", EventKind::Purchase, 50);
    rich.quantity = Some(2.5);
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
    bytes.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
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
    bytes.extend_from_slice(&durable::crc32(&payload).to_le_bytes());
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
            bincode::serde::encode_to_vec(StoredEventRef::from(&event), record_config()).unwrap();
        let direct = bincode::serde::encode_to_vec(&event, record_config()).unwrap();
        assert_eq!(stored, direct);
        match decode_record(&stored, FORMAT_V1).unwrap() {
            Decoded::Event(None, decoded) => assert_eq!(decoded, event),
            _ => panic!("a format-1 record is one event without an id"),
        }
    }
}

#[test]
fn open_creates_nested_directories_and_clears_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b");
    drop(EventStore::open(&path).unwrap());
    let leftover = durable::temp_path(&path.join(SNAPSHOT_FILE));
    fs::write(&leftover, b"half-written").unwrap();
    let store = EventStore::open(&path).unwrap();
    assert!(store.is_empty());
    assert!(!leftover.exists());
}

#[test]
fn a_retried_batch_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    let events = sample();
    let ids: Vec<u64> = (0..events.len() as u64).collect();
    let first = store.append_identified(&events, &ids).unwrap();
    assert_eq!((first.stored, first.duplicates), (events.len(), 0));
    drop(store);
    let mut store = EventStore::open(dir.path()).unwrap();
    let again = store.append_identified(&events, &ids).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, events.len()));
    // The ids survive a compaction too.
    store.compact().unwrap();
    drop(store);
    let mut store = EventStore::open(dir.path()).unwrap();
    assert_eq!(store.append_identified(&events, &ids).unwrap().stored, 0);
    assert_eq!(store.len(), events.len());
}

#[test]
fn a_forgotten_shopper_does_not_come_back_with_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    store.append(&sample()).unwrap();
    store.forget("u1").unwrap();
    drop(store);
    let mut store = EventStore::open(dir.path()).unwrap();
    // An import that read its file before the forget: that event is skipped, counted.
    let late = store
        .append_identified(&[ev("u1", "old", 30), ev("u2", "new", 31)], &[1, 2])
        .unwrap();
    assert_eq!((late.stored, late.forgotten), (1, 1));
    assert!(store.user_events("u1").is_empty());
    // A recorded event of theirs from before the forget: refused, nothing stored.
    let err = store
        .append(&[ev("u2", "fine", 32), ev("u1", "old", 33)])
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("user"));
    assert!(
        matches!(err.kind, EventErrorKind::ForgottenUser { .. }),
        "{err}"
    );
    assert!(store.user_events("u2").iter().all(|e| e.item != "fine"));
    // The shopper comes back later: recorded.
    let now = crate::profile::events::now_unix() + 10;
    store.append(&[ev("u1", "back", now)]).unwrap();
    assert_eq!(items(&store, "u1"), ["back"]);
}

#[test]
fn a_batch_cut_short_is_not_read_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    store.append(&sample()[..2]).unwrap();
    let committed = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    store.append(&sample()[2..]).unwrap();
    drop(store);
    // Cut the second batch just before its commit record: its events are all whole.
    let log = dir.path().join(LOG_FILE);
    let bytes = fs::read(&log).unwrap();
    let mut pos = committed as usize;
    let mut last_start = pos;
    while pos < bytes.len() {
        last_start = pos;
        pos += RECORD_HEADER_BYTES + u32_at(&bytes, pos) as usize;
    }
    fs::write(&log, &bytes[..last_start]).unwrap();
    let reader = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.len(), 2);
    // The reader changed nothing; the writer cuts the uncommitted batch.
    assert_eq!(fs::metadata(&log).unwrap().len(), last_start as u64);
    let store = EventStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(fs::metadata(&log).unwrap().len(), committed);
}

#[test]
fn a_read_only_store_creates_nothing_and_takes_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("events");
    let mut store = EventStore::open_read_only(&missing).unwrap();
    assert!(store.is_empty() && !missing.exists());
    assert!(store.append(&sample()).is_err());
    assert!(store.forget("u1").is_err());
}

#[test]
fn a_format_1_store_is_rewritten_in_format_2_before_the_first_append() {
    // An empty log of format 1, as every engine open of the first format created.
    let dir = tempfile::tempdir().unwrap();
    let mut v1 = LOG_MAGIC.to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&0u64.to_le_bytes());
    let crc = durable::crc32(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.path().join(LOG_FILE), &v1).unwrap();
    // Readers read it as it is.
    assert!(EventStore::open_read_only(dir.path()).unwrap().is_empty());
    let mut store = EventStore::open(dir.path()).unwrap();
    store.append(&sample()).unwrap();
    drop(store);
    for file in [LOG_FILE, SNAPSHOT_FILE] {
        let bytes = fs::read(dir.path().join(file)).unwrap();
        assert_eq!(u32_at(&bytes, 8), FORMAT_VERSION, "{file}");
    }
    assert_eq!(EventStore::open(dir.path()).unwrap().len(), sample().len());
    assert_eq!(
        EventStore::open_read_only(dir.path()).unwrap().len(),
        sample().len()
    );
}

// ---- group commit: prepare, one write for several batches, apply ----

/// Writes `batches` as one group (one write, one fsync) and applies the prepared ones;
/// returns each batch's outcome.
fn append_group(
    store: &mut EventStore,
    batches: &[(&[Event], Option<&[u64]>)],
) -> Vec<Result<Appended, EventError>> {
    let prepared = store.prepare_group(batches);
    let mut ok = Vec::new();
    let mut results: Vec<Option<Result<Appended, EventError>>> = Vec::new();
    for p in prepared {
        match p {
            Ok(b) => {
                ok.push(b);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    store.write_prepared(&mut ok).unwrap();
    let mut applied = ok.into_iter().map(|b| store.apply_prepared(b));
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| applied.next().unwrap()))
        .collect()
}

#[test]
fn a_group_is_one_fsync_and_a_bad_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    store.append(&[ev("gone", "x", 1)]).unwrap();
    store.forget("gone").unwrap();
    let syncs = store.log_syncs();
    let good1 = [ev("u1", "a", 10), ev("u1", "b", 11)];
    let bad_field = [ev("u2", "c", 12), ev("", "d", 13)];
    let forgotten = [ev("u3", "e", 14), ev("gone", "f", 15)];
    let good2 = [ev("u4", "g", 16)];
    let results = append_group(
        &mut store,
        &[
            (&good1, None),
            (&bad_field, None),
            (&forgotten, None),
            (&good2, None),
        ],
    );
    assert_eq!(results[0].as_ref().unwrap().stored, 2);
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(
        (e.source_name.as_str(), e.field()),
        ("appended event 2 of 2", Some("user"))
    );
    assert!(matches!(
        results[2].as_ref().unwrap_err().kind,
        EventErrorKind::ForgottenUser { .. }
    ));
    assert_eq!(results[3].as_ref().unwrap().stored, 1);
    assert_eq!(
        store.log_syncs(),
        syncs + 1,
        "one write and fsync for the group"
    );
    assert_eq!(store.len(), 3);
    drop(store);
    let store = EventStore::open(dir.path()).unwrap();
    assert_eq!(items(&store, "u1"), ["a", "b"]);
    assert_eq!(items(&store, "u4"), ["g"]);
    assert!(store.user_events("u2").is_empty() && store.user_events("u3").is_empty());
    assert_eq!(store.log_records(), 3);
}

#[test]
fn ids_stored_by_an_earlier_batch_of_the_group_count_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    let a = [ev("u1", "a", 1), ev("u1", "b", 2)];
    let b = [ev("u1", "a", 1), ev("u2", "c", 3)];
    let results = append_group(&mut store, &[(&a, Some(&[1, 2])), (&b, Some(&[1, 3]))]);
    let b_outcome = results[1].as_ref().unwrap();
    assert_eq!((b_outcome.stored, b_outcome.duplicates), (1, 1));
    assert_eq!(store.len(), 3);
    drop(store);
    assert_eq!(EventStore::open(dir.path()).unwrap().len(), 3);
}

#[test]
fn a_prepared_batch_is_applied_only_after_it_was_written_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    let events = [ev("u1", "a", 1)];
    let batch = store
        .prepare_group(&[(&events, None)])
        .pop()
        .unwrap()
        .unwrap();
    assert!(store.apply_prepared(batch).is_err());
    assert!(store.is_empty());
    let mut batches = store
        .prepare_group(&[(&events, None)])
        .pop()
        .map(|b| vec![b.unwrap()])
        .unwrap();
    store.write_prepared(&mut batches).unwrap();
    assert!(store.write_prepared(&mut batches).is_err(), "written twice");
    store.apply_prepared(batches.pop().unwrap()).unwrap();
    assert_eq!(store.len(), 1);
    drop(store);
    assert_eq!(EventStore::open(dir.path()).unwrap().len(), 1);
}

/// A crash during a group's write leaves a prefix of its bytes: at every possible cut,
/// each batch of the group is in the reopened store entirely or not at all, and the
/// batches present are the first ones.
#[test]
fn a_group_cut_anywhere_keeps_each_batch_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    store.append(&[ev("u0", "before", 1)]).unwrap();
    let start = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() as usize;
    let batches: Vec<Vec<Event>> = (0..3)
        .map(|b| {
            (0..=b)
                .map(|i| ev(&format!("u{}", b + 1), &format!("i{i}"), 10 + i))
                .collect()
        })
        .collect();
    let group: Vec<(&[Event], Option<&[u64]>)> =
        batches.iter().map(|b| (b.as_slice(), None)).collect();
    let syncs = store.log_syncs();
    append_group(&mut store, &group);
    assert_eq!(store.log_syncs(), syncs + 1);
    drop(store);
    let full = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for cut in start..=full.len() {
        let copy = tempfile::tempdir().unwrap();
        fs::write(copy.path().join(LOG_FILE), &full[..cut]).unwrap();
        let reader = EventStore::open_read_only(copy.path()).unwrap();
        let store = EventStore::open(copy.path()).unwrap();
        for s in [&reader, &store] {
            assert_eq!(s.user_events("u0").len(), 1, "cut {cut}");
            let whole: Vec<bool> = (0..3)
                .map(|b| {
                    let n = s.user_events(&format!("u{}", b + 1)).len();
                    assert!(n == 0 || n == b + 1, "cut {cut}: batch {b} has {n} events");
                    n > 0
                })
                .collect();
            assert!(
                whole.windows(2).all(|w| w[0] || !w[1]),
                "cut {cut}: {whole:?}"
            );
            seen.insert(whole.iter().filter(|&&w| w).count());
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
}
