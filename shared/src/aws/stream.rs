//! The tickets table's DynamoDB stream, decoded into ticket changes. Each image carries the
//! ticket as JSON in its `body` attribute, the same document the store reads.

use crate::domain::Ticket;
use crate::ports::TicketChange;
use crate::{Error, Result};
use serde_json::Value;

/// The change in one stream record, given its `NewImage` and `OldImage` in DynamoDB JSON
/// (`{"body": {"S": "..."}, ...}`). `None` for a record with no new image (a removal).
pub fn ticket_change(new_image: &Value, old_image: &Value) -> Result<Option<TicketChange>> {
    let Some(new) = ticket_of(new_image)? else {
        return Ok(None);
    };
    Ok(Some(TicketChange {
        old: ticket_of(old_image)?,
        new,
    }))
}

fn ticket_of(image: &Value) -> Result<Option<Ticket>> {
    match image
        .get("body")
        .and_then(|b| b.get("S"))
        .and_then(Value::as_str)
    {
        None => Ok(None),
        Some(json) => serde_json::from_str(json).map(Some).map_err(|e| {
            Error::unprocessable(
                "invalid_record",
                format!("a ticket image that does not decode: {e}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use serde_json::json;

    #[test]
    fn decodes_images_and_removals() {
        let t = Ticket::open(
            NewTicket {
                customer_id: "c".into(),
                channel: Channel::Telegram,
                subject: None,
                description: "退款".into(),
                priority: Priority::Normal,
                skill: Skill::Billing,
            },
            now(),
        );
        let image = json!({"id": {"S": t.id}, "body": {"S": serde_json::to_string(&t).unwrap()}});
        let change = ticket_change(&image, &json!({})).unwrap().unwrap();
        assert_eq!(change.new, t);
        assert_eq!(change.old, None);
        assert!(ticket_change(&json!({}), &image).unwrap().is_none());
        let bad = json!({"body": {"S": "{"}});
        assert_eq!(
            ticket_change(&bad, &json!({})).unwrap_err().kind.status(),
            422
        );
    }
}
