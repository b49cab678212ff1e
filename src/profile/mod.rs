//! Shoppers' events and the profiles built from them.
//!
//! * [`events`]: the event type and its JSONL reader.
//! * [`store`]: the embedded, crash-safe event store of an index.

pub mod events;
pub mod store;

pub use events::{Event, EventKind};
pub use store::EventStore;
