//! `shelfrank events import|forget`: the index's event store.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;

use shelfrank::profile::events::EventReadOptions;
use shelfrank::EngineBuilder;

use super::DEFAULT_INDEX;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Load events (JSONL: user, item, kind, ts, quantity?, query?, position?).
    Import {
        /// Events file.
        file: PathBuf,
        /// Index directory.
        #[arg(long, default_value = DEFAULT_INDEX)]
        index: PathBuf,
        /// Skip invalid lines (counted and reported).
        #[arg(long)]
        skip_invalid: bool,
        /// If another process is writing the index, wait for it instead of failing.
        #[arg(long)]
        wait: bool,
    },
    /// Remove everything stored about a shopper.
    Forget {
        /// The shopper's id.
        user: String,
        /// Index directory.
        #[arg(long, default_value = DEFAULT_INDEX)]
        index: PathBuf,
        /// If another process is writing the index, wait for it instead of failing.
        #[arg(long)]
        wait: bool,
    },
}

pub fn run(c: EventsCommand) -> Result<()> {
    match c {
        EventsCommand::Import {
            file,
            index,
            skip_invalid,
            wait,
        } => {
            let engine = EngineBuilder::new(&index)
                .keyword_only(true)
                .wait_for_lock(wait)
                .build()?;
            let opts = EventReadOptions {
                skip_invalid,
                ..EventReadOptions::default()
            };
            let t = Instant::now();
            let s = engine.import_events(&file, &opts)?;
            for p in &s.problems {
                eprintln!("  skipped: {p}");
            }
            let mut notes = String::new();
            if s.skipped > 0 {
                notes.push_str(&format!(", skipped {} invalid lines", s.skipped));
            }
            if s.duplicates > 0 {
                notes.push_str(&format!(
                    ", {} already stored (imported before)",
                    s.duplicates
                ));
            }
            if s.forgotten > 0 {
                notes.push_str(&format!(", {} of forgotten shoppers left out", s.forgotten));
            }
            outln!(
                "imported {} events from {} in {:.1}s{notes}; the store holds {}",
                s.imported,
                file.display(),
                t.elapsed().as_secs_f64(),
                engine.event_count()?
            );
        }
        EventsCommand::Forget { user, index, wait } => {
            let engine = EngineBuilder::new(&index)
                .keyword_only(true)
                .wait_for_lock(wait)
                .build()?;
            let n = engine.forget(&user)?;
            outln!("forgot {user}: {n} events removed");
        }
    }
    Ok(())
}
