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
    },
    /// Remove everything stored about a shopper.
    Forget {
        /// The shopper's id.
        user: String,
        /// Index directory.
        #[arg(long, default_value = DEFAULT_INDEX)]
        index: PathBuf,
    },
}

pub fn run(c: EventsCommand) -> Result<()> {
    match c {
        EventsCommand::Import {
            file,
            index,
            skip_invalid,
        } => {
            let engine = EngineBuilder::new(&index).keyword_only(true).build()?;
            let opts = EventReadOptions {
                skip_invalid,
                ..EventReadOptions::default()
            };
            let t = Instant::now();
            let s = engine.import_events(&file, &opts)?;
            for p in &s.problems {
                eprintln!("  skipped: {p}");
            }
            println!(
                "imported {} events from {} in {:.1}s{}; the store holds {}",
                s.imported,
                file.display(),
                t.elapsed().as_secs_f64(),
                if s.skipped > 0 {
                    format!(", skipped {} invalid lines", s.skipped)
                } else {
                    String::new()
                },
                engine.event_count()?
            );
        }
        EventsCommand::Forget { user, index } => {
            let engine = EngineBuilder::new(&index).keyword_only(true).build()?;
            let n = engine.forget(&user)?;
            println!("forgot {user}: {n} events removed");
        }
    }
    Ok(())
}
