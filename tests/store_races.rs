//! Event-store and publish cases found by an adversarial review: a recorded event
//! must never be acknowledged without being stored, and cleanup must finish what a
//! crash interrupted.

mod common;

use shelfrank::{EngineBuilder, Event, EventKind};

/// `Engine::record` says the event "is durable (fsynced) when this returns". An event
/// of a forgotten shopper dated before the forget is not stored, so `record` must
/// say so with an error naming the field, not return `Ok`.
#[test]
fn recording_an_event_of_a_forgotten_shopper_is_refused_not_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let index = common::build_index(tmp.path(), "idx");
    let engine = EngineBuilder::new(&index)
        .keyword_only(true)
        .build()
        .unwrap();
    engine
        .record(Event::new("u1", "p001", EventKind::Click, 1_600_000_000))
        .unwrap();
    engine.forget("u1").unwrap();
    let before = engine.event_count().unwrap();
    let acknowledged = engine.record(Event::new("u1", "p002", EventKind::Click, 1_600_000_001));
    let after = engine.event_count().unwrap();
    let err = acknowledged.expect_err("an event of a forgotten shopper was acknowledged");
    assert!(err.to_string().contains("forgotten"), "{err}");
    assert!(err.is_user_error());
    assert_eq!(after, before);
}

/// Converting an index from before generations: the first publish's cleanup removes
/// the old build files from the index root, manifest first. A crash right after the
/// manifest went (`gc-manifest-removed`) leaves `products.bin`, `vectors.f32`,
/// `hnsw/` and `text/` in the root without a manifest; a later cleanup must remove
/// them too. Plays the crash's end state by hand.
#[test]
fn legacy_build_files_left_by_a_crash_in_cleanup_are_removed_later() {
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
