//! Review findings that need no failpoints.

use std::path::{Path, PathBuf};
use std::process::Command;

use shelfrank::{EngineBuilder, Event, EventKind};

fn build_index(tmp: &Path) -> PathBuf {
    let index = tmp.join("idx");
    let out = Command::new(env!("CARGO_BIN_EXE_shelfrank"))
        .args([
            "build",
            "--catalog",
            "fixtures/catalog.jsonl",
            "--index",
            index.to_str().unwrap(),
            "--model",
            "fixtures/tiny-bert",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    index
}

/// `Engine::record` says the event "is durable (fsynced) when this returns". For a
/// forgotten shopper's event dated before the forget, `record` returns `Ok(())` but
/// the store drops it (`Appended::forgotten`, which `record_many` ignores); the
/// caller cannot tell. The engine's item statistics count it anyway.
#[test]
fn review_record_acknowledges_an_event_it_did_not_store() {
    let tmp = tempfile::tempdir().unwrap();
    let index = build_index(tmp.path());
    let engine = EngineBuilder::new(&index).keyword_only(true).build().unwrap();
    engine
        .record(Event::new("u1", "p001", EventKind::Click, 1_600_000_000))
        .unwrap();
    engine.forget("u1").unwrap();
    let before = engine.event_count().unwrap();
    let acknowledged = engine.record(Event::new("u1", "p002", EventKind::Click, 1_600_000_001));
    let after = engine.event_count().unwrap();
    assert!(
        acknowledged.is_err() || after == before + 1,
        "record returned Ok but stored nothing ({before} -> {after} events)"
    );
}

/// A build's staging directory is claimed by locking `.staging-PID-N.lock`, but
/// `NewGeneration::begin` creates that file first and locks it after. A publish's
/// garbage collection that runs in between finds the claim unlocked, deletes it,
/// and the build carries on with a staging directory that has no claim file; the
/// next publish then deletes that staging directory under the running build. This
/// test plays the two steps of `begin` by hand around a real publish.
#[test]
fn review_a_gc_between_claim_creation_and_lock_loses_a_running_build() {
    use shelfrank::store::{NewGeneration, WriterLock};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("idx");
    let publish = |content: &[u8]| {
        let g = NewGeneration::begin(&root).unwrap();
        std::fs::write(g.path().join("manifest.json"), content).unwrap();
        let lock = WriterLock::acquire(&root, false).unwrap();
        g.publish(&lock).unwrap();
    };
    publish(b"one");
    // Build B, step 1 of begin: create the claim file (not locked yet).
    let claim_path = root.join(".staging-4000000-0.lock");
    let claim = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&claim_path)
        .unwrap();
    // Another build publishes in between.
    publish(b"two");
    // Build B, step 2: lock the claim, create the staging directory, write.
    claim.lock().unwrap();
    let staging = root.join(".staging-4000000-0");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("products.bin"), b"half a build").unwrap();
    assert!(!claim_path.exists(), "the claim file was removed under build B");
    // A third build publishes while B (holding its lock) is still writing.
    publish(b"three");
    assert!(
        staging.join("products.bin").exists(),
        "a running build's staging directory was deleted"
    );
}

/// Converting an index from before generations: the first publish's garbage
/// collection removes the old build files from the index root, manifest first. A
/// crash right after the manifest went (`gc-manifest-removed`) leaves
/// `products.bin`, `vectors.f32`, `hnsw/` and `text/` in the root with no manifest;
/// later collections only look for them when `manifest.json` is there, so they stay
/// for good (the old index's whole size). Plays the crash's end state by hand.
#[test]
fn review_legacy_build_files_left_by_a_crash_in_gc_are_never_removed() {
    use shelfrank::store::{NewGeneration, WriterLock};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("idx");
    std::fs::create_dir_all(root.join("hnsw")).unwrap();
    std::fs::create_dir_all(root.join("text")).unwrap();
    std::fs::write(root.join("products.bin"), b"old").unwrap();
    std::fs::write(root.join("vectors.f32"), vec![0u8; 4096]).unwrap();
    // A published generation, and the legacy manifest already unlinked by the crash.
    for content in [b"one".as_slice(), b"two"] {
        let g = NewGeneration::begin(&root).unwrap();
        std::fs::write(g.path().join("manifest.json"), content).unwrap();
        let lock = WriterLock::acquire(&root, false).unwrap();
        g.publish(&lock).unwrap();
    }
    assert!(
        !root.join("vectors.f32").exists() && !root.join("products.bin").exists(),
        "the old index's build files stay in the root after two publishes"
    );
}
