//! The sentence encoder on AWS, against the emulator and the real Lambda binaries: article
//! question vectors are made where articles are written (the agent API's upsert), kept in
//! the articles table, and read back by a function starting cold, which then embeds only the
//! customer's message. Without the model file the semantic checks say SKIPPED and the
//! lexical ones still run.

mod aws_harness;

use aws_harness::dynamo_proxy::{DynamoProxy, OnUpdate};
use aws_harness::*;
use aws_sdk_dynamodb::types::AttributeValue;
use helpdesk_core::adapters::TantivyIndex;
use helpdesk_core::aws::{stored_of, DynamoKnowledge};
use helpdesk_core::knowledge::semantic::{encoder, Vectors};
use helpdesk_core::knowledge::stored_vectors;
use helpdesk_core::knowledge::{parse_articles, Article};
use helpdesk_core::ports::KnowledgeIndex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");

/// The sample knowledge base's English articles: a Chinese message shares no word with them.
fn english_kb() -> Vec<Article> {
    parse_articles(SAMPLE_KB)
        .unwrap()
        .into_iter()
        .filter(|a| a.locale.as_deref() == Some("en"))
        .collect()
}

async fn item(stack: &Stack, id: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    aws_sdk_dynamodb::Client::new(&stack.config)
        .get_item()
        .table_name(&stack.env["ARTICLES_TABLE"])
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default()
}

/// Writes `articles` through the agent API of the tickets function, as a supervisor does.
async fn put_through_the_api(stack: &Stack, env: &HashMap<String, String>, articles: &[Article]) {
    let mut tickets = Runtime::start("tickets", env).await;
    for a in articles {
        let event = http_event(
            "PUT",
            &format!("/kb/articles/{}", a.id),
            &[],
            Some(serde_json::to_value(a).unwrap()),
            Some(("alice", "supervisor")),
        );
        let (status, body) = http_answer(&tickets.invoke(event).await.expect("an answer"));
        assert_eq!(status, 201, "{}: {body}", a.id);
    }
    tickets.stop().await;
    let _ = stack;
}

#[tokio::test]
async fn a_cold_function_reads_the_stored_vectors_and_embeds_only_the_query() {
    let stack = Stack::new().await;
    let articles = english_kb();
    let Some(model) = encoder() else {
        // Lexical: the API writes no vectors, and search works as before.
        let mut env = stack.env.clone();
        env.insert("HELPDESK_MODEL".into(), "off".into());
        put_through_the_api(&stack, &env, &articles).await;
        let stored = item(&stack, &articles[0].id).await;
        assert!(stored.contains_key("body") && !stored.contains_key("vectors"));
        helpdesk_embed::say_skipped(
            "vectors stored by the API and read by a cold function (the lexical part ran)",
        );
        return;
    };
    let mut env = stack.env.clone();
    env.insert(
        "HELPDESK_MODEL".into(),
        helpdesk_embed_path().to_string_lossy().into_owned(),
    );
    put_through_the_api(&stack, &env, &articles).await;

    // Each item keeps its questions' and title's vectors, with the model's and the texts'
    // fingerprints.
    let mut all = std::collections::HashSet::new();
    for a in &articles {
        let stored = stored_of(&item(&stack, &a.id).await).expect("vectors beside the article");
        let n = stored_vectors::texts(a).len();
        assert_eq!(stored.f16.len(), n * 384 * 2, "{}", a.id);
        assert_eq!(Some(stored.model.as_str()), stored_vectors::model_id());
        assert_eq!(
            stored.texts,
            stored_vectors::texts_hash(&stored_vectors::texts(a))
        );
        assert_eq!(stored_vectors::read(a, &stored).map(|v| v.len()), Some(n));
        all.extend(stored_vectors::texts(a));
    }
    let texts = all.len();

    // A function starting cold: its vectors are empty, the table fills them.
    let vectors = Arc::new(Vectors::in_memory(model));
    let kb = DynamoKnowledge::with_vectors(
        &stack.config,
        stack.env["ARTICLES_TABLE"].clone(),
        Some(vectors.clone()),
    );
    let query = "我想退款，钱怎么退回来？";
    let hits = kb.search(query, 3).await.unwrap();
    // Only the query was embedded (kept apart, not among the texts), no article question.
    assert_eq!(vectors.kept(), texts);
    assert_eq!(hits[0].article_id, "refund-policy-en", "{hits:?}");

    // The same answer as the semantic ranking embedding everything itself.
    let local = TantivyIndex::in_memory_with(Some(Arc::new(Vectors::in_memory(model)))).unwrap();
    local.upsert(&articles).await.unwrap();
    let expected = local.search(query, 3).await.unwrap();
    assert_eq!(hits[0].article_id, expected[0].article_id);
    assert!(
        (hits[0].confidence - expected[0].confidence).abs() < 1e-3,
        "{} vs {}",
        hits[0].confidence,
        expected[0].confidence
    );

    // Stale vectors (another model's) are not used: that article's texts are embedded again,
    // and the answer stays.
    let stale = &articles[1];
    aws_sdk_dynamodb::Client::new(&stack.config)
        .update_item()
        .table_name(&stack.env["ARTICLES_TABLE"])
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(stale.id.clone()),
        )
        .update_expression("SET vectors_model = :m")
        .expression_attribute_values(
            ":m",
            aws_sdk_dynamodb::types::AttributeValue::S("another-model:0".into()),
        )
        .send()
        .await
        .unwrap();
    let vectors = Arc::new(Vectors::in_memory(model));
    let kb = DynamoKnowledge::with_vectors(
        &stack.config,
        stack.env["ARTICLES_TABLE"].clone(),
        Some(vectors.clone()),
    );
    let again = kb.search(query, 3).await.unwrap();
    assert_eq!(again[0].article_id, "refund-policy-en");
    assert_eq!(
        vectors.kept(),
        texts,
        "the stale article's texts, embedded again, and only those"
    );
    // The search that embedded them wrote them back.
    let fresh = stored_of(&item(&stack, &stale.id).await).unwrap();
    assert_eq!(Some(fresh.model.as_str()), stored_vectors::model_id());
}

/// The log lines of what runs on this thread while it is kept (a `#[tokio::test]` runs its
/// tasks on the test's thread).
struct Logs {
    text: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn keep() -> Logs {
        let text = Arc::new(std::sync::Mutex::new(Vec::new()));
        let buffer = LogBuffer(text.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || buffer.clone())
            .finish();
        Logs {
            text,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines logged since the last call.
    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.text.lock().unwrap())).into_owned()
    }
}

/// The lines of `logs` that say `what`.
fn lines_with<'a>(logs: &'a str, what: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(what)).collect()
}

fn articles_table(stack: &Stack) -> String {
    stack.env["ARTICLES_TABLE"].clone()
}

/// Makes `id`'s stored vectors another model's, as a new model file finds them.
async fn set_another_model(stack: &Stack, id: &str) {
    aws_sdk_dynamodb::Client::new(&stack.config)
        .update_item()
        .table_name(articles_table(stack))
        .key("id", AttributeValue::S(id.to_string()))
        .update_expression("SET vectors_model = :m")
        .expression_attribute_values(":m", AttributeValue::S("another-model:0".into()))
        .send()
        .await
        .unwrap();
}

/// Removes `id`'s stored vectors, as a write without the model leaves it.
async fn remove_vectors(stack: &Stack, id: &str) {
    aws_sdk_dynamodb::Client::new(&stack.config)
        .update_item()
        .table_name(articles_table(stack))
        .key("id", AttributeValue::S(id.to_string()))
        .update_expression("REMOVE vectors, vectors_model, vectors_texts")
        .send()
        .await
        .unwrap();
}

/// The English sample articles, written with current vectors by a function with the model.
async fn written_with_the_model(
    stack: &Stack,
    model: &'static helpdesk_embed::Model,
) -> Vec<Article> {
    let articles = english_kb();
    DynamoKnowledge::with_vectors(
        &stack.config,
        articles_table(stack),
        Some(Arc::new(Vectors::in_memory(model))),
    )
    .upsert(&articles)
    .await
    .unwrap();
    articles
}

/// A function starting cold with the model, reaching the table through `proxy`.
fn cold_reader(
    proxy: &DynamoProxy,
    stack: &Stack,
    model: &'static helpdesk_embed::Model,
) -> DynamoKnowledge {
    cold_reader_with(proxy, stack, Arc::new(Vectors::in_memory(model)))
}

/// The same, with `vectors` (empty at a cold start), which the test then reads.
fn cold_reader_with(proxy: &DynamoProxy, stack: &Stack, vectors: Arc<Vectors>) -> DynamoKnowledge {
    DynamoKnowledge::with_vectors(&proxy.config, articles_table(stack), Some(vectors))
}

/// A Chinese refund question through `kb`: the English refund article comes first.
async fn finds_the_refund_policy(kb: &DynamoKnowledge) {
    let hits = kb.search("我想退款，钱怎么退回来？", 3).await.unwrap();
    assert_eq!(hits[0].article_id, "refund-policy-en", "{hits:?}");
}

/// Asserts `a`'s item holds `a` and current vectors of its texts.
async fn assert_current(stack: &Stack, a: &Article) {
    let item = item(stack, &a.id).await;
    assert_eq!(
        item.get("body").and_then(|b| b.as_s().ok()),
        Some(&serde_json::to_string(a).unwrap()),
        "{}",
        a.id
    );
    let stored = stored_of(&item).unwrap_or_else(|| panic!("{}: no vectors", a.id));
    assert_eq!(
        Some(stored.model.as_str()),
        stored_vectors::model_id(),
        "{}",
        a.id
    );
    assert_eq!(
        stored_vectors::read(a, &stored).map(|v| v.len()),
        Some(stored_vectors::texts(a).len()),
        "{}",
        a.id
    );
}

/// A new model file (one article's vectors another model's) and an article written
/// without the model: one search embeds their texts and writes their vectors back, those
/// two only, and a function starting cold then finds nothing stale and writes nothing.
#[tokio::test]
async fn one_search_writes_stale_vectors_back_and_the_next_cold_start_finds_them_current() {
    let stack = Stack::new().await;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("stale vectors in the articles table written back");
        return;
    };
    let articles = written_with_the_model(&stack, model).await;
    set_another_model(&stack, &articles[1].id).await;
    remove_vectors(&stack, &articles[2].id).await;
    let proxy = DynamoProxy::start(&stack.config).await;
    let logs = Logs::keep();

    let cold = cold_reader(&proxy, &stack, model);
    finds_the_refund_policy(&cold).await;
    assert_eq!(
        proxy.count("UpdateItem"),
        2,
        "the two stale articles, and only those"
    );
    for a in &articles {
        assert_current(&stack, a).await;
    }
    let first = logs.take();
    let found = lines_with(&first, "articles without current question vectors");
    assert!(found.len() == 1 && found[0].contains("stale=2"), "{first}");
    let written = lines_with(&first, "stale question vectors written back");
    assert!(
        written.len() == 1 && written[0].contains("written=2") && written[0].contains("raced=0"),
        "{first}"
    );

    // The next function to start cold: every article current, nothing written.
    finds_the_refund_policy(&cold_reader(&proxy, &stack, model)).await;
    assert_eq!(proxy.count("Scan"), 2);
    assert_eq!(proxy.count("UpdateItem"), 2, "nothing more written");
    let second = logs.take();
    assert!(
        lines_with(&second, "articles without current question vectors").is_empty()
            && lines_with(&second, "written back").is_empty(),
        "{second}"
    );
}

/// Listing the articles (the console's knowledge page) needs no vectors: it reads none
/// into the function's vectors, stale or current, and writes none back; a search after it
/// reads the current ones and writes back the stale one.
#[tokio::test]
async fn a_listing_reads_no_vectors_and_writes_none_back() {
    let stack = Stack::new().await;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("a listing of the articles table reads no vectors");
        return;
    };
    let articles = written_with_the_model(&stack, model).await;
    set_another_model(&stack, &articles[0].id).await;
    let proxy = DynamoProxy::start(&stack.config).await;
    let vectors = Arc::new(Vectors::in_memory(model));
    let kb = cold_reader_with(&proxy, &stack, vectors.clone());
    let listed = kb.list().await.unwrap();
    assert_eq!(listed.len(), articles.len());
    assert_eq!(vectors.kept(), 0, "no vector read by a listing");
    assert_eq!(proxy.count("UpdateItem"), 0, "nothing written by a listing");

    finds_the_refund_policy(&kb).await;
    assert!(vectors.kept() > stored_vectors::texts(&articles[0]).len());
    assert_eq!(proxy.count("UpdateItem"), 1, "the stale article's vectors");
    assert_current(&stack, &articles[0]).await;
}

/// An article edited, and another removed, after the search read them stale and before its
/// write-back: the edit keeps its body and the vectors its writer made, the removed article
/// stays removed, and the search answers.
#[tokio::test]
async fn an_article_written_between_the_read_and_the_write_back_keeps_its_writers_vectors() {
    let stack = Stack::new().await;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("a write-back that loses to an edit");
        return;
    };
    let articles = written_with_the_model(&stack, model).await;
    set_another_model(&stack, &articles[1].id).await;
    set_another_model(&stack, &articles[2].id).await;
    let mut edited = articles[1].clone();
    edited.questions.push("我忘了密码，登录不了怎么办？".into());
    let removed = articles[2].id.clone();

    let proxy = DynamoProxy::start(&stack.config).await;
    let (config, table, edit) = (stack.config.clone(), articles_table(&stack), edited.clone());
    proxy
        .before_update(move || async move {
            let editor = DynamoKnowledge::with_vectors(
                &config,
                table,
                Some(Arc::new(Vectors::in_memory(model))),
            );
            editor.upsert(&[edit]).await.unwrap();
            assert!(editor.delete(&removed).await.unwrap());
        })
        .await;
    let logs = Logs::keep();
    let cold = cold_reader(&proxy, &stack, model);
    finds_the_refund_policy(&cold).await;

    assert_eq!(proxy.count("UpdateItem"), 2);
    assert_current(&stack, &edited).await;
    assert_eq!(
        stored_of(&item(&stack, &edited.id).await).map(|s| s.texts),
        Some(stored_vectors::texts_hash(&stored_vectors::texts(&edited)))
    );
    assert!(
        item(&stack, &articles[2].id).await.is_empty(),
        "the removed article stays removed"
    );
    let text = logs.take();
    let written = lines_with(&text, "stale question vectors written back");
    assert!(
        written.len() == 1 && written[0].contains("written=0") && written[0].contains("raced=2"),
        "{text}"
    );
}

/// DynamoDB throttles every write-back: the search answers, the article stays stale, and
/// the next build writes it.
#[tokio::test]
async fn a_failed_write_back_does_not_fail_the_search_and_the_next_build_writes_it() {
    let stack = Stack::new().await;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("a failed write-back of stale vectors");
        return;
    };
    let articles = written_with_the_model(&stack, model).await;
    set_another_model(&stack, &articles[1].id).await;
    let proxy = DynamoProxy::start(&stack.config).await;
    proxy.on_update(OnUpdate::Throttle).await;
    let logs = Logs::keep();
    let cold = cold_reader(&proxy, &stack, model);
    finds_the_refund_policy(&cold).await;
    assert!(proxy.count("UpdateItem") >= 1);
    let stale = stored_of(&item(&stack, &articles[1].id).await).unwrap();
    assert_eq!(stale.model, "another-model:0");
    let text = logs.take();
    let warned = lines_with(&text, "stale question vectors written back, some not");
    assert!(
        warned.len() == 1
            && warned[0].contains("WARN")
            && warned[0].contains("failed=1")
            && warned[0].contains("ThrottlingException"),
        "{text}"
    );

    proxy.on_update(OnUpdate::Forward).await;
    let next = cold_reader(&proxy, &stack, model);
    next.search("我想退款，钱怎么退回来？", 3).await.unwrap();
    for a in &articles {
        assert_current(&stack, a).await;
    }
}

/// Without the model (this runs either way) stale vectors are left exactly as they are.
#[tokio::test]
async fn without_a_model_stale_vectors_are_not_written() {
    let stack = Stack::new().await;
    let articles = english_kb();
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.config);
    let another = stored_vectors::Stored {
        model: "another-model:0".into(),
        texts: "0".repeat(32),
        f16: vec![0; 384 * 2],
    };
    for (n, a) in articles.iter().enumerate() {
        let mut put = dynamo
            .put_item()
            .table_name(articles_table(&stack))
            .item("id", AttributeValue::S(a.id.clone()))
            .item("body", AttributeValue::S(serde_json::to_string(a).unwrap()));
        if n % 2 == 0 {
            for (name, value) in helpdesk_core::aws::vector_attributes(&another) {
                put = put.item(name, value);
            }
        }
        put.send().await.unwrap();
    }
    let mut before = Vec::new();
    for a in &articles {
        before.push(item(&stack, &a.id).await);
    }
    let proxy = DynamoProxy::start(&stack.config).await;
    let lexical = DynamoKnowledge::with_vectors(&proxy.config, articles_table(&stack), None);
    let hits = lexical.search("How do I get a refund?", 3).await.unwrap();
    assert_eq!(hits[0].article_id, "refund-policy-en", "{hits:?}");
    assert_eq!(proxy.count("Scan"), 1);
    assert_eq!(proxy.count("UpdateItem"), 0);
    for (a, was) in articles.iter().zip(&before) {
        assert_eq!(&item(&stack, &a.id).await, was, "{}", a.id);
    }
}

#[tokio::test]
async fn without_a_model_nothing_is_stored_and_search_is_lexical() {
    let stack = Stack::new().await;
    let kb =
        DynamoKnowledge::with_vectors(&stack.config, stack.env["ARTICLES_TABLE"].clone(), None);
    let articles = parse_articles(SAMPLE_KB).unwrap();
    kb.upsert(&articles).await.unwrap();
    let stored = item(&stack, "reset-password-zh").await;
    assert!(stored.contains_key("body"));
    assert!(stored_of(&stored).is_none());
    let hits = kb.search("我忘记密码了，怎么重置？", 3).await.unwrap();
    assert_eq!(hits[0].article_id, "reset-password-zh", "{hits:?}");
    let listed: Vec<Value> = kb
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(listed.len(), articles.len());
}

fn helpdesk_embed_path() -> std::path::PathBuf {
    helpdesk_embed::model_path().path
}

#[tokio::test]
async fn the_indexer_carries_the_tables_vectors_to_opensearch_and_search_is_hybrid() {
    use aws_harness::fake_opensearch::FakeOpenSearch;
    let stack = Stack::new().await;
    let domain = FakeOpenSearch::start().await;
    let Some(_) = encoder() else {
        helpdesk_embed::say_skipped("the indexer's vectors in OpenSearch and the hybrid search");
        return;
    };
    let mut env = stack.env.clone();
    env.insert("OPENSEARCH_URL".into(), domain.url.clone());
    env.insert("OPENSEARCH_INDEX".into(), "kb".into());
    env.insert(
        "HELPDESK_MODEL".into(),
        helpdesk_embed_path().to_string_lossy().into_owned(),
    );
    let articles = english_kb();
    put_through_the_api(&stack, &env, &articles).await;

    // The stream carries each article with its vectors (binary, base64 in the event).
    let stream = stack.articles_stream_event().await;
    let records = stream["Records"].as_array().unwrap();
    assert_eq!(records.len(), articles.len());
    assert!(records
        .iter()
        .all(|r| r["dynamodb"]["NewImage"]["vectors"]["B"].is_string()));
    let mut indexer = Runtime::start("kb-indexer", &env).await;
    let answer = indexer.invoke(stream).await.unwrap();
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]));
    indexer.stop().await;

    // Each document: the article, its packed question vectors exactly as the table keeps
    // them, and (kept out of `_source`, in the k-NN field) its mean question vector.
    let docs = domain.docs("kb");
    let apart = domain.excluded("kb");
    assert_eq!(docs.len(), articles.len());
    for a in &articles {
        let table = stored_of(&item(&stack, &a.id).await).unwrap();
        let doc = &docs[&a.id];
        assert_eq!(doc["question_vectors"]["model"], table.model.as_str());
        assert_eq!(doc["question_vectors"]["texts"], table.texts.as_str());
        assert_eq!(
            doc["question_vectors"]["f16"],
            aws_harness::base64_of(&table.f16).as_str()
        );
        assert!(doc.get("vector").is_none(), "the mean stays out of _source");
        let mean: Vec<f32> = serde_json::from_value(apart[&a.id]["vector"].clone()).unwrap();
        assert_eq!(mean.len(), 384);
        let norm: f32 = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{}: {norm}", a.id);
        let article: Article = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(&article, a);
    }
    let mapping: Value =
        serde_json::from_str(include_str!("../infra/opensearch/knowledge-index.json")).unwrap();
    assert_eq!(domain.domain.lock().unwrap().indexes["kb"].0, mapping);

    // A Chinese message finds the English article through the agent API: the candidates
    // come from the lexical query and the knn clause on the message's vector.
    let mut tickets = Runtime::start("tickets", &env).await;
    let url = reqwest::Url::parse_with_params("http://api/kb/search", [("q", "我想退款")]).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let event = http_event("GET", &path, &[], None, Some(("alice", "supervisor")));
    let (status, body) = http_answer(&tickets.invoke(event).await.expect("an answer"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["article_id"], "refund-policy-en", "{body}");
    let knn = domain.domain.lock().unwrap().knn_searches.clone();
    assert_eq!(knn.len(), 1, "{knn:?}");
    assert_eq!(
        knn[0]["vector"]["vector"].as_array().map(Vec::len),
        Some(384)
    );
    assert_eq!(knn[0]["vector"]["k"], 20);
    tickets.stop().await;
}

/// With OpenSearch: documents whose question vectors are another model's, or missing, are
/// written back by the search that listed them (packed vectors and the `knn_vector` mean),
/// each on the condition of the version listed; one the indexer rewrote in between keeps
/// the indexer's write; and the next function to start cold writes nothing. A listing before
/// the search reads no vector and writes none.
#[tokio::test]
async fn stale_opensearch_vectors_are_written_back_by_one_search_unless_written_since() {
    use aws_harness::fake_opensearch::FakeOpenSearch;
    use helpdesk_core::aws::OpenSearchKnowledge;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("stale OpenSearch vectors written back by a search");
        return;
    };
    let fake = FakeOpenSearch::start().await;
    let config = helpdesk_core::aws::config_loader()
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let knowledge = |vectors: Arc<Vectors>| {
        OpenSearchKnowledge::new(&config, &fake.url, "kb")
            .unwrap()
            .with_vectors(Some(vectors))
    };
    let articles = english_kb();
    let made = Arc::new(Vectors::in_memory(model));
    knowledge(made.clone()).upsert(&articles).await.unwrap();

    // A new model file finds the second article's vectors another model's; the third was
    // written without a model; the fourth too, and the indexer rewrites it (with current
    // vectors) after the listing, before the write-back.
    let before_search = {
        let mut d = fake.domain.lock().unwrap();
        let docs = d.indexes["kb"].1.clone();
        let indexer_doc = {
            let mut doc = docs[&articles[3].id].clone();
            doc["vector"] = d.excluded["kb"][&articles[3].id]["vector"].clone();
            doc
        };
        let mut another = docs[&articles[1].id].clone();
        another["question_vectors"]["model"] = "another-model:0".into();
        d.index_doc("kb", &articles[1].id, another);
        for a in &articles[2..4] {
            d.index_doc("kb", &a.id, serde_json::to_value(a).unwrap());
        }
        let id = articles[3].id.clone();
        d.before_bulk = Some(Box::new(move |d| {
            d.index_doc("kb", &id, indexer_doc);
        }));
        d.seq_no
    };
    let bulks = |fake: &FakeOpenSearch| {
        let d = fake.domain.lock().unwrap();
        d.requests
            .iter()
            .filter(|r| r.starts_with("POST /_bulk"))
            .count()
    };
    assert_eq!(bulks(&fake), 1, "the first write");

    // Listing the articles (the console's knowledge page) needs no vectors: a function
    // listing them reads none, stale or current, and writes none back.
    let lister = Arc::new(Vectors::in_memory(model));
    let listed = knowledge(lister.clone()).list().await.unwrap();
    assert_eq!(listed.len(), articles.len());
    assert_eq!(lister.kept(), 0, "no vector read by a listing");
    assert_eq!(bulks(&fake), 1, "nothing written by a listing");

    let hits = knowledge(Arc::new(Vectors::in_memory(model)))
        .search("我想退款", 3)
        .await
        .unwrap();
    assert!(hits[0].article_id.starts_with("refund-policy"), "{hits:?}");
    assert_eq!(bulks(&fake), 2, "one write-back");
    let docs = fake.docs("kb");
    let apart = fake.excluded("kb");
    for a in &articles {
        let doc = &docs[&a.id];
        let listed = helpdesk_core::aws::article_vectors(&serde_json::json!({
            "vectors": {"B": doc["question_vectors"]["f16"]},
            "vectors_model": {"S": doc["question_vectors"]["model"]},
            "vectors_texts": {"S": doc["question_vectors"]["texts"]},
        }))
        .unwrap_or_else(|| panic!("{}: no question vectors", a.id));
        assert_eq!(
            stored_vectors::read(a, &listed).map(|v| v.len()),
            Some(stored_vectors::texts(a).len()),
            "{}: current vectors",
            a.id
        );
        let mean: Vec<f32> = serde_json::from_value(apart[&a.id]["vector"].clone()).unwrap();
        let expected = stored_vectors::mean(a, &made);
        assert!(
            helpdesk_core::knowledge::semantic::cosine(&mean, &expected) > 0.9999,
            "{}: the knn_vector is this model's mean",
            a.id
        );
        let article: Article = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(&article, a);
    }
    {
        // The indexer's write (the next sequence number), then the write-back of the second
        // and third articles only: the fourth's, conditioned on the version listed, lost.
        let d = fake.domain.lock().unwrap();
        assert_eq!(d.seq_no_of("kb", &articles[3].id), Some(before_search + 1));
        assert_eq!(d.seq_no, before_search + 3);
    }

    // A function starting cold: every document current, nothing written.
    knowledge(Arc::new(Vectors::in_memory(model)))
        .search("我想退款", 3)
        .await
        .unwrap();
    assert_eq!(bulks(&fake), 2);
}

/// A message of 5,000 Chinese characters: its vector joins the lexical query (capped to its
/// first terms), and the domain takes the search rather than refusing it as too large.
#[tokio::test]
async fn a_five_thousand_character_message_is_searched_whole_by_meaning() {
    use aws_harness::fake_opensearch::FakeOpenSearch;
    use helpdesk_core::aws::OpenSearchKnowledge;
    let Some(model) = encoder() else {
        helpdesk_embed::say_skipped("a 5,000-character message searched by meaning");
        return;
    };
    let fake = FakeOpenSearch::start().await;
    let config = helpdesk_core::aws::config_loader()
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let knowledge = OpenSearchKnowledge::new(&config, &fake.url, "kb")
        .unwrap()
        .with_vectors(Some(Arc::new(Vectors::in_memory(model))));
    knowledge
        .upsert(&parse_articles(SAMPLE_KB).unwrap())
        .await
        .unwrap();
    let text: String = "我上个月买的东西到现在还没有收到而且客服电话一直打不通请尽快帮我处理"
        .repeat(150)
        .chars()
        .take(5000)
        .collect();
    let hits = knowledge.search(&text, 3).await.unwrap();
    // Candidates came back and were ranked (which one answers is the ranking's business).
    assert_eq!(hits.len(), 3, "{hits:?}");
    let d = fake.domain.lock().unwrap();
    assert_eq!(d.refused_as_too_large, 0);
    assert_eq!(d.knn_searches.len(), 1);
}

/// An article near the API's 256 KiB limit with 256 questions: its vectors (192 KiB) do not
/// all fit beside it in one DynamoDB item (400 KB), so the item keeps as many as fit, the
/// write succeeds (it used to fail DynamoDB's size check, a 500), and a cold function reads
/// the article, embedding the texts past the stored ones.
#[tokio::test]
async fn a_large_article_keeps_the_vectors_that_fit_in_its_item() {
    let stack = Stack::new().await;
    let questions: Vec<String> = (0..255)
        .map(|i| format!("第{i}号产品的保修条款是什么？How long is product {i} under warranty?"))
        .collect();
    let article = Article {
        id: "warranty-terms".into(),
        title: "保修条款 Warranty terms".into(),
        questions,
        // About 215 KB as JSON, 3 bytes a character: three answers of 20,000 characters,
        // the most an answer has, and tags (which are not embedded).
        answer: "保修期内免费维修。".repeat(2_222),
        answers: [
            ("zh".to_string(), "保修期内免费维修。".repeat(2_222)),
            ("en".to_string(), "保修期内免费维修。".repeat(2_222)),
        ]
        .into(),
        tags: (0..40)
            .map(|i| format!("保修{i}{}", "条款".repeat(40)))
            .collect(),
        ..english_kb()[0].clone()
    };
    article.validate().expect("an article within the limits");
    let body = serde_json::to_string(&article).unwrap().len();
    assert!((190_000..250_000).contains(&body), "{body}");
    let mut env = stack.env.clone();
    let Some(model) = encoder() else {
        env.insert("HELPDESK_MODEL".into(), "off".into());
        put_through_the_api(&stack, &env, std::slice::from_ref(&article)).await;
        assert!(!item(&stack, &article.id).await.contains_key("vectors"));
        helpdesk_embed::say_skipped("the vectors a large article's item has room for");
        return;
    };
    env.insert(
        "HELPDESK_MODEL".into(),
        helpdesk_embed_path().to_string_lossy().into_owned(),
    );
    put_through_the_api(&stack, &env, std::slice::from_ref(&article)).await;

    let stored = stored_of(&item(&stack, &article.id).await).expect("vectors beside the article");
    let kept = stored.f16.len() / stored_vectors::BYTES_PER_TEXT;
    assert!(
        kept > 100 && kept < stored_vectors::texts(&article).len(),
        "kept {kept}"
    );
    assert!(body + stored.f16.len() < 400_000);
    assert_eq!(
        stored_vectors::read(&article, &stored).map(|v| v.len()),
        Some(kept)
    );

    // A cold function takes the stored ones and embeds the rest (and the query) itself.
    let vectors = Arc::new(Vectors::in_memory(model));
    let kb =
        DynamoKnowledge::with_vectors(&stack.config, articles_table(&stack), Some(vectors.clone()));
    let hits = kb.search("第7号产品保修多久？", 3).await.unwrap();
    assert_eq!(hits[0].article_id, article.id, "{hits:?}");
    assert_eq!(vectors.kept(), stored_vectors::texts(&article).len());
}
