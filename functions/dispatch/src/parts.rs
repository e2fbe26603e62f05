//! The parts of a message too long for one provider message: each part is recorded once
//! the provider took it, so a retry after a later part failed sends only what is missing,
//! on every channel that splits.

use helpdesk_core::ports::{SendError, Store};

/// How long the record of a sent part is kept: longer than any redelivery of its job.
const PART_TTL_SECS: i64 = 8 * 24 * 3600;

/// The sent parts of one message. A message in one part keeps no record: the delivery's
/// own status is its record, and it costs no read.
pub(crate) struct Parts<'a> {
    store: &'a dyn Store,
    message_id: &'a str,
    split: bool,
}

impl<'a> Parts<'a> {
    pub(crate) fn new(store: &'a dyn Store, message_id: &'a str, count: usize) -> Self {
        Parts {
            store,
            message_id,
            split: count > 1,
        }
    }

    fn key(&self, part: usize) -> String {
        format!("part:{}:{part}", self.message_id)
    }

    /// The provider's id of part `part` (empty when it gave none), when it was sent
    /// already. A failed read sends nothing, and is tried again later.
    pub(crate) async fn sent(&self, part: usize) -> Result<Option<String>, SendError> {
        if !self.split {
            return Ok(None);
        }
        self.store
            .claimed(&self.key(part))
            .await
            .map_err(|e| SendError::Temporary {
                reason: format!("reading the parts sent: {e}"),
                retry_after_secs: None,
            })
    }

    /// Records that the provider took part `part`, trying in place: a record that keeps
    /// failing leaves the message failed for an agent to see (the provider has the part,
    /// and trying the message again would send it twice), never sent again.
    pub(crate) async fn record(
        &self,
        part: usize,
        provider_id: Option<&str>,
    ) -> Result<(), SendError> {
        if !self.split {
            return Ok(());
        }
        let key = self.key(part);
        let value = provider_id.unwrap_or_default();
        crate::in_place(self.message_id, || {
            self.store.claim(&key, value, PART_TTL_SECS)
        })
        .await
        .map(drop)
        .map_err(|e| SendError::Ambiguous {
            reason: format!("part {} was sent, and recording it failed: {e}", part + 1),
        })
    }
}
