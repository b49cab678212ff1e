//! Byte flips and truncations in the files shelfrank reads back (the event log and
//! snapshot, the CTR head's weights and card) and random bytes in catalog lines:
//! never a panic, and never a silently different answer. A damaged file is either
//! refused with an error naming it, or (for damage a crash can leave: the end of the
//! log) read as what was committed before it, and said so.

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use proptest::prelude::*;

use shelfrank::catalog::{read_catalog_from, Format, ReadOptions};
use shelfrank::profile::{Event, EventKind, EventStore};
use shelfrank::rank::CtrHead;

fn event(n: usize) -> Event {
    let mut e = Event::new(
        format!("u{}", n % 5),
        format!("p{:03}", 1 + n % 40),
        EventKind::ALL[n % 4],
        1_600_000_000 + n as i64,
    );
    e.query = Some(format!("query {n}"));
    e.quantity = (n % 4 == 3).then_some(1.0 + n as f64);
    e
}

/// Every event of a store, in a canonical order.
fn events_of(store: &EventStore) -> Vec<String> {
    let mut all: Vec<String> = store.iter().map(|e| format!("{e:?}")).collect();
    all.sort();
    all
}

/// A store directory with a snapshot (two batches compacted) and a log of three
/// more batches; returns the directory and its events.
fn sample_store() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = EventStore::open(dir.path()).unwrap();
    let events: Vec<Event> = (0..40).map(event).collect();
    store.append(&events[..10]).unwrap();
    store.append(&events[10..20]).unwrap();
    store.compact().unwrap();
    store.append(&events[20..25]).unwrap();
    store
        .append_identified(&events[25..35], &(25..35).collect::<Vec<u64>>())
        .unwrap();
    store.append(&events[35..]).unwrap();
    let all = events_of(&store);
    (dir, all)
}

fn flip(path: &Path, offset_frac: f64, xor: u8, truncate: bool) {
    let mut bytes = fs::read(path).unwrap();
    if bytes.is_empty() {
        return;
    }
    let at = ((bytes.len() - 1) as f64 * offset_frac) as usize;
    if truncate {
        bytes.truncate(at);
    } else {
        bytes[at] ^= xor;
    }
    fs::write(path, bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn damaged_event_files_never_panic_or_change_answers_silently(
        snapshot in any::<bool>(),
        offset_frac in 0.0f64..1.0,
        xor in 1u8..=255,
        truncate in any::<bool>(),
    ) {
        let (dir, original) = sample_store();
        let file = dir.path().join(if snapshot { "snapshot.bin" } else { "log.bin" });
        flip(&file, offset_frac, xor, truncate);
        let before = fs::read(&file).unwrap();

        let read = catch_unwind(AssertUnwindSafe(|| EventStore::open_read_only(dir.path())));
        let read = read.expect("open_read_only panicked");
        // A reader never changes a file.
        prop_assert_eq!(&fs::read(&file).unwrap(), &before);
        if let Ok(store) = &read {
            let got = events_of(store);
            // Identical, or (damage at the end of the log) only whole batches missing.
            prop_assert!(got == original || (!snapshot && got.len() < original.len()
                && got.iter().all(|e| original.contains(e))));
        }

        let write = catch_unwind(AssertUnwindSafe(|| EventStore::open(dir.path())));
        match write.expect("open panicked") {
            Ok(store) => {
                let got = events_of(&store);
                // A log cut exactly at a batch boundary looks like a shorter log: no
                // checksum can tell (fsynced batches do not vanish in a crash, so only
                // outside damage does this). Then only whole batches may be missing.
                let cut_at_boundary = truncate && !snapshot && store.recovered_bytes() == 0;
                prop_assert!(
                    got == original
                        || ((store.recovered_bytes() > 0 || cut_at_boundary)
                            && got.len() < original.len()
                            && got.iter().all(|e| original.contains(e))),
                    "a damaged store opened with other events and did not say so: {} of {} events, {} bytes cut, file now {} bytes",
                    got.len(), original.len(), store.recovered_bytes(), before.len()
                );
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.contains(".bin"), "{}", text);
            }
        }
    }

    #[test]
    fn random_catalog_lines_never_panic(
        line in proptest::collection::vec(any::<u8>(), 0..200),
        format in 0usize..3,
    ) {
        let (format, header): (Format, &[u8]) = match format {
            0 => (Format::Jsonl, b"{\"id\": \"p1\", \"title\": \"Drill\"}\n"),
            1 => (Format::Csv, b"id,title,price\np1,Drill,3.5\n"),
            _ => (Format::Tsv, b"id\ttitle\tprice\np1\tDrill\t3.5\n"),
        };
        let opts = ReadOptions {
            format: Some(format),
            skip_invalid: true,
            ..ReadOptions::default()
        };
        let mut input = header.to_vec();
        input.extend_from_slice(&line);
        let result = catch_unwind(AssertUnwindSafe(|| {
            read_catalog_from(&input[..], "catalog", &opts)
        }));
        let catalog = result.expect("the catalog reader panicked");
        // The good first line is always read; the random one is a product or skipped.
        let catalog = catalog.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(catalog.products.iter().any(|p| p.id == "p1"));
        prop_assert!(catalog.products.len() + catalog.skipped >= 1);
    }
}

#[test]
fn damaged_head_files_never_panic_or_score_differently() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let rank = index.join("rank");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args(["train", "--index"])
        .arg(&index)
        .args([
            "--tasks",
            "fixtures/personal_queries.tsv",
            "--events",
            "fixtures/events.jsonl",
            "--epochs",
            "3",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = CtrHead::load(&rank).unwrap();
    let d = head.feature_names().len();
    let rows: Vec<Vec<f32>> = (0..5)
        .map(|r| (0..d).map(|i| ((r * 7 + i) % 11) as f32 / 3.0).collect())
        .collect();
    let want = head.predict(&rows).unwrap();
    let weights = std::fs::read_dir(&rank)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".safetensors"))
        .unwrap();
    for file in ["ctr_head.json", weights.as_str()] {
        let path = rank.join(file);
        let original = fs::read(&path).unwrap();
        let len = original.len();
        let mut offsets: Vec<usize> = (0..len).step_by((len / 97).max(1)).collect();
        offsets.extend([len - 1, len / 2]);
        for at in offsets {
            for damage in 0..2 {
                let mut bytes = original.clone();
                if damage == 0 {
                    bytes[at] ^= 0x5a;
                } else {
                    bytes.truncate(at);
                }
                fs::write(&path, &bytes).unwrap();
                let loaded = catch_unwind(AssertUnwindSafe(|| CtrHead::load(&rank)))
                    .unwrap_or_else(|_| panic!("{file} byte {at}: load panicked"));
                match loaded {
                    Ok(h) => assert_eq!(
                        h.predict(&rows).unwrap(),
                        want,
                        "{file} byte {at}: a damaged head loaded and scores differently"
                    ),
                    Err(e) => assert!(e.to_string().contains("ctr_head"), "{file} byte {at}: {e}"),
                }
            }
        }
        fs::write(&path, &original).unwrap();
    }
}
