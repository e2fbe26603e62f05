//! The embedded adapters of the local program (the tantivy index also serves the AWS
//! functions that search): one SQLite file for the stores, the queues
//! and the ticket change feed, and a tantivy index for the knowledge base.

#[cfg(feature = "local")]
mod sqlite;
mod tantivy_index;
#[cfg(feature = "local")]
mod worker;

#[cfg(feature = "local")]
pub use sqlite::{DeadLetter, SqliteStore};
pub use tantivy_index::TantivyIndex;
#[cfg(feature = "local")]
pub use worker::{run_worker, WorkerConfig, CHANGE_FEED};
