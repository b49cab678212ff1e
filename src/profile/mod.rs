//! Shoppers' events and the profiles built from them.
//!
//! * [`events`]: the event type and its JSONL reader.
//! * [`store`]: the embedded, crash-safe event store of an index.
//! * [`profiles`]: profiles and item popularity, computed as of a time so that
//!   evaluation never sees the future.

pub mod events;
pub mod profiles;
pub mod store;

pub use events::{Event, EventKind};
pub use profiles::{build_profile, ItemStats, Profile, ProfileConfig};
pub use store::{EventStore, LoadedFile, PreparedBatch};
