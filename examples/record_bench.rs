//! Concurrent `record_many` calls, with and without group commit (issue #10).
//!
//! ```text
//! cargo run --example record_bench [-- THREADS CALLS RUNS]
//! ```
//!
//! THREADS threads (default 8) each make CALLS calls (default 200) of one event. Two
//! paths, alternating, RUNS times each (default 3), each run on a fresh index built
//! from the fixture catalog with the tiny model, in a temporary directory:
//!
//! * `engine`: `Engine::record_many` (group commit: concurrent calls share fsyncs);
//! * `mutex`: the path the engine took before, rebuilt from the public API: one
//!   `Mutex<EventStore>` held across the writer lock, the check for other writers and
//!   the append with its fsync, so every call is one fsync and readers wait for it.
//!
//! Prints each run's time, calls per second and fsyncs of the log, then the medians.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shelfrank::catalog::{read_catalog, ReadOptions};
use shelfrank::store::{IndexPaths, WriterLock};
use shelfrank::{Engine, Event, EventKind, EventStore, IndexBuilder};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn event(thread: usize, call: usize) -> Event {
    Event::new(
        format!("t{thread}"),
        format!("p{:03}", 1 + (thread * 7 + call) % 40),
        EventKind::Click,
        1_600_000_000 + call as i64,
    )
}

/// Runs `call(thread, i)` from `threads` threads, `calls` times each; returns seconds.
fn hammer(
    threads: usize,
    calls: usize,
    call: Arc<dyn Fn(usize, usize) -> Result<(), BoxError> + Send + Sync>,
) -> Result<f64, BoxError> {
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let call = Arc::clone(&call);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<(), BoxError> {
                barrier.wait();
                for i in 0..calls {
                    call(t, i)?;
                }
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().map_err(|_| "a thread panicked")??;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn build(dir: &Path, name: &str) -> Result<PathBuf, BoxError> {
    let catalog = read_catalog("fixtures/catalog.jsonl".as_ref(), &ReadOptions::default())?;
    let index = dir.join(name);
    IndexBuilder::new(&index, "fixtures/tiny-bert").build(&catalog.products)?;
    Ok(index)
}

/// Group commit through the engine: (seconds, fsyncs, groups).
fn engine_run(index: &Path, threads: usize, calls: usize) -> Result<(f64, u64, u64), BoxError> {
    let engine = Arc::new(Engine::open(index)?);
    engine.record(event(99, 0))?; // opens the store for writing
    let before = engine.commit_stats()?;
    let e = Arc::clone(&engine);
    let secs = hammer(
        threads,
        calls,
        Arc::new(move |t, i| Ok(e.record_many(&[event(t, i)])?)),
    )?;
    let after = engine.commit_stats()?;
    assert_eq!(engine.event_count()?, threads * calls + 1);
    Ok((
        secs,
        after.log_syncs - before.log_syncs,
        after.groups - before.groups,
    ))
}

/// The previous path: a mutex held across the writer lock and the append's fsync.
fn mutex_run(index: &Path, threads: usize, calls: usize) -> Result<(f64, u64, u64), BoxError> {
    let store = Arc::new(Mutex::new(EventStore::open(
        &IndexPaths::new(index).events_dir(),
    )?));
    let index = index.to_path_buf();
    let s = Arc::clone(&store);
    let secs = hammer(
        threads,
        calls,
        Arc::new(move |t, i| {
            let mut store = s.lock().map_err(|_| "poisoned")?;
            let _writer = WriterLock::acquire(&index, true)?;
            if store.changed_on_disk()? {
                return Err("another writer".into());
            }
            store.append(&[event(t, i)])?;
            Ok(())
        }),
    )?;
    let store = store.lock().map_err(|_| "poisoned")?;
    assert_eq!(store.len(), threads * calls);
    let syncs = store.log_syncs();
    Ok((secs, syncs, syncs))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), BoxError> {
    let arg = |n: usize, default: usize| -> usize {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (threads, calls, runs) = (arg(1, 8), arg(2, 200), arg(3, 3));
    let tmp = tempfile::tempdir_in(std::env::temp_dir())?;
    println!(
        "{threads} threads x {calls} calls of 1 event, {runs} runs per path, in {}",
        tmp.path().display()
    );
    println!("| path | run | seconds | calls/s | fsyncs | groups |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut rates = [Vec::new(), Vec::new()];
    let mut syncs = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for (p, name) in ["mutex", "engine"].into_iter().enumerate() {
            let index = build(tmp.path(), &format!("{name}-{run}"))?;
            let (secs, fsyncs, groups) = if p == 0 {
                mutex_run(&index, threads, calls)?
            } else {
                engine_run(&index, threads, calls)?
            };
            let rate = (threads * calls) as f64 / secs;
            println!("| {name} | {run} | {secs:.3} | {rate:.0} | {fsyncs} | {groups} |");
            rates[p].push(rate);
            syncs[p].push(fsyncs as f64);
        }
    }
    let (old, new) = (median(rates[0].clone()), median(rates[1].clone()));
    println!(
        "\nmedian calls/s: mutex {old:.0} ({:.0} fsyncs), engine {new:.0} ({:.0} fsyncs); ratio {:.2}x",
        median(syncs[0].clone()),
        median(syncs[1].clone()),
        new / old
    );
    Ok(())
}
