//! The embedded adapters of the local program: one SQLite file for the stores, the queues
//! and the ticket change feed, and a tantivy index for the knowledge base.

mod sqlite;
mod tantivy_index;
mod worker;

pub use sqlite::{DeadLetter, SqliteStore};
pub use tantivy_index::TantivyIndex;
pub use worker::{run_worker, WorkerConfig, CHANGE_FEED};
