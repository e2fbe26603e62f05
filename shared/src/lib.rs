//! Helpdesk's core: the domain of a customer-service desk, with no I/O, and the ports through
//! which the functions reach storage, queues, the knowledge index and the channels.
//!
//! A customer message flows intake → router → auto-reply → dispatch; the types it travels as
//! live in [`domain`]. The rules that decide what happens to it (classification, priority,
//! the ticket state machine, escalation, survey tokens, reply texts) live here too, so that the
//! local program and the Lambda functions share one behaviour. Adapters sit behind features:
//! `local` (SQLite, tantivy, in-process queues) and, later, the AWS ones.

pub mod assignment;
pub mod channels;
pub mod domain;
pub mod error;
pub mod flow;
pub mod format;
pub mod jobs;
pub mod json;
pub mod knowledge;
pub mod ports;
pub mod rate;
pub mod report;
pub mod rules;
pub mod survey_token;
pub mod text;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod survey_page;

#[cfg(feature = "search")]
pub mod adapters;

pub use error::{Error, ErrorKind, Result};

#[cfg(feature = "aws")]
pub mod aws;
