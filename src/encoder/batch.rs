//! Micro-batching of concurrent single-text encodes (what a server's query path
//! does): texts that arrive while the encoder is busy wait in a queue, and the next
//! free caller runs all of them as one batch (one forward pass, padded to the
//! longest). Nothing waits for a timer: a lone query runs at once, exactly as
//! [`Encoder::embed`] would; under load, batches form by themselves and a forward
//! pass costs far less per text than one per text (text-embeddings-inference batches
//! its queue the same way).
//!
//! At most `lanes` batches run at a time (by default one per core); a caller whose
//! text is in a batch another caller runs sleeps on a condition variable until the
//! result is there.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Encoder;
use crate::error::{Error, Result};

/// Largest batch one forward pass takes from the queue.
pub const MAX_QUERY_BATCH: usize = 32;

/// Shares forward passes between concurrent callers (see the module docs).
#[derive(Debug)]
pub struct QueryBatcher {
    state: Mutex<State>,
    ready: Condvar,
    lanes: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Texts waiting for a batch: (job id, text).
    queue: Vec<(u64, String)>,
    /// Results not yet picked up by their callers.
    done: HashMap<u64, std::result::Result<Vec<f32>, String>>,
    /// Batches running.
    running: usize,
    next_id: u64,
    /// Statistics: texts encoded and forward passes run.
    texts: u64,
    batches: u64,
}

impl QueryBatcher {
    /// A batcher running at most `lanes` batches at a time (at least one).
    pub fn new(lanes: usize) -> Self {
        QueryBatcher {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            lanes: lanes.max(1),
        }
    }

    /// Embeds `text` with `encoder`, in a batch with whatever other texts are waiting.
    pub fn embed(&self, encoder: &Encoder, text: &str) -> Result<Vec<f32>> {
        let mut state = self.lock()?;
        let id = state.next_id;
        state.next_id += 1;
        state.queue.push((id, text.to_string()));
        loop {
            if let Some(result) = state.done.remove(&id) {
                return result.map_err(Error::Encoder);
            }
            if state.running < self.lanes && !state.queue.is_empty() {
                let take = state.queue.len().min(MAX_QUERY_BATCH);
                let jobs: Vec<(u64, String)> = state.queue.drain(..take).collect();
                state.running += 1;
                drop(state);
                let texts: Vec<&str> = jobs.iter().map(|(_, t)| t.as_str()).collect();
                let out = encoder.embed_batch(&texts);
                state = self.lock()?;
                state.running -= 1;
                state.texts += jobs.len() as u64;
                state.batches += 1;
                match out {
                    Ok(vectors) if vectors.len() == jobs.len() => {
                        for ((job, _), v) in jobs.iter().zip(vectors) {
                            state.done.insert(*job, Ok(v));
                        }
                    }
                    Ok(vectors) => {
                        let msg = format!("{} vectors for {} texts", vectors.len(), jobs.len());
                        for (job, _) in &jobs {
                            state.done.insert(*job, Err(msg.clone()));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for (job, _) in &jobs {
                            state.done.insert(*job, Err(msg.clone()));
                        }
                    }
                }
                self.ready.notify_all();
                continue;
            }
            state = self.ready.wait(state).map_err(|_| Error::Poisoned {
                what: "query batcher",
            })?;
        }
    }

    /// Texts encoded and forward passes run so far (texts / passes is the mean
    /// batch size).
    pub fn stats(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.texts, s.batches))
            .unwrap_or((0, 0))
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::Poisoned {
            what: "query batcher",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::EncoderOptions;

    #[test]
    fn concurrent_callers_get_their_own_vectors_and_share_passes() {
        let encoder = Encoder::load(&EncoderOptions::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/tiny-bert"
        )))
        .unwrap();
        let batcher = QueryBatcher::new(1);
        let texts: Vec<String> = (0..64).map(|i| format!("query number {i} drill")).collect();
        std::thread::scope(|s| {
            for chunk in texts.chunks(8) {
                let (batcher, encoder) = (&batcher, &encoder);
                s.spawn(move || {
                    for t in chunk {
                        let got = batcher.embed(encoder, t).unwrap();
                        let alone = encoder.embed(t).unwrap();
                        let cos: f32 = got.iter().zip(&alone).map(|(a, b)| a * b).sum();
                        assert!(cos > 0.999, "{t}: cosine {cos}");
                    }
                });
            }
        });
        let (n, passes) = batcher.stats();
        assert_eq!(n, 64);
        // Eight callers and one lane: texts queue while a pass runs.
        assert!(passes < 64, "{passes} passes for 64 texts");
    }
}
