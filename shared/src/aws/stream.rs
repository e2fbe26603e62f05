//! The tables' DynamoDB streams, decoded: the tickets table's into ticket changes, the
//! articles table's into article changes for the search indexer. Each image carries the
//! ticket or article as JSON in its `body` attribute, the same document the store reads.

use crate::domain::Ticket;
use crate::knowledge::sync::ArticleChange;
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
    match body(image) {
        None => Ok(None),
        Some(json) => serde_json::from_str(json).map(Some).map_err(|e| {
            Error::unprocessable(
                "invalid_record",
                format!("a ticket image that does not decode: {e}"),
            )
        }),
    }
}

/// The change in one record of the articles table's stream (new and old images): the
/// article as it now is, or its removal. `None` for a record that names no article.
pub fn article_change(new_image: &Value, old_image: &Value) -> Result<Option<ArticleChange>> {
    if let Some(json) = body(new_image) {
        return serde_json::from_str(json)
            .map(|a| Some(ArticleChange::Upsert(a)))
            .map_err(|e| {
                Error::unprocessable(
                    "invalid_record",
                    format!("an article image that does not decode: {e}"),
                )
            });
    }
    Ok(old_image
        .get("id")
        .and_then(|b| b.get("S"))
        .and_then(Value::as_str)
        .map(|id| ArticleChange::Delete(id.to_string())))
}

/// The question vectors an article's new image carries ([`super::vector_attributes`]), as a
/// stream record gives them (binary as base64), when it has them all.
pub fn article_vectors(new_image: &Value) -> Option<crate::knowledge::stored_vectors::Stored> {
    use base64::Engine;
    let s = |name: &str| {
        new_image
            .get(name)
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let b = new_image.get("vectors")?.get("B")?.as_str()?;
    Some(crate::knowledge::stored_vectors::Stored {
        f16: base64::engine::general_purpose::STANDARD.decode(b).ok()?,
        model: s("vectors_model")?,
        texts: s("vectors_texts")?,
    })
}

fn body(image: &Value) -> Option<&str> {
    image
        .get("body")
        .and_then(|b| b.get("S"))
        .and_then(Value::as_str)
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

    #[test]
    fn decodes_article_writes_and_removals() {
        let a = crate::knowledge::Article {
            id: "退款".into(),
            title: "退款政策".into(),
            questions: vec!["怎么申请退款".into()],
            answer: "七天内可退".into(),
            locale: Some("zh".into()),
            tags: vec![],
            answers: Default::default(),
        };
        let image = json!({"id": {"S": a.id}, "body": {"S": serde_json::to_string(&a).unwrap()}});
        assert_eq!(
            article_change(&image, &json!({})).unwrap(),
            Some(ArticleChange::Upsert(a.clone()))
        );
        // A removal has no new image; the old one names the article.
        assert_eq!(
            article_change(&json!({}), &image).unwrap(),
            Some(ArticleChange::Delete("退款".into()))
        );
        assert_eq!(
            article_change(&Value::Null, &json!({"id": {"S": "退款"}})).unwrap(),
            Some(ArticleChange::Delete("退款".into()))
        );
        assert_eq!(article_change(&json!({}), &json!({})).unwrap(), None);
        // Vectors ride along as base64, as Lambda's stream events carry binary.
        let with = json!({"vectors": {"B": "AAE8AA=="}, "vectors_model": {"S": "m"}, "vectors_texts": {"S": "t"}});
        let stored = article_vectors(&with).unwrap();
        assert_eq!(stored.f16, [0, 1, 0x3c, 0]);
        assert_eq!((stored.model.as_str(), stored.texts.as_str()), ("m", "t"));
        assert!(article_vectors(&image).is_none());
        assert!(article_vectors(&json!({"vectors": {"B": "not base64!"}, "vectors_model": {"S": "m"}, "vectors_texts": {"S": "t"}})).is_none());
        let bad = json!({"body": {"S": "{\"id\": 1}"}});
        assert_eq!(
            article_change(&bad, &json!({})).unwrap_err().kind.status(),
            422
        );
    }
}
