//! `helpdesk serve`: the same handlers as the Lambda functions, wired to SQLite, tantivy and
//! in-process queues. Workers move messages between handlers the way SQS event source
//! mappings and the DynamoDB stream do on AWS.

use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use helpdesk_core::adapters::{run_worker, SqliteStore, TantivyIndex, WorkerConfig, CHANGE_FEED};
use helpdesk_core::assignment;
use helpdesk_core::http::{answering_misses, MAX_BODY_BYTES};
use helpdesk_core::jobs::decode;
use helpdesk_core::knowledge::parse_articles;
use helpdesk_core::ports::AgentStore;
use helpdesk_core::ports::{KnowledgeIndex, Queue, QueueName, Store};
use helpdesk_core::rules::Rules;
use helpdesk_core::survey_token::SurveySigner;
use helpdesk_core::Error;
use rand::RngCore;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");
/// The sample's questions and titles as the sentence encoder embeds them (made and checked
/// by `tests/kb_eval.rs`, `the_sample_knowledge_base_ships_its_vectors`).
const SAMPLE_KB_VECTORS: &[u8] = include_bytes!("../infra/sample-kb-vectors.bin");

pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("kb-index")
}

fn core_err(e: Error) -> anyhow::Error {
    anyhow!("{}", e.message)
}

/// A secret kept in the database, made on first start; `true` when it was made now.
fn stored_secret(store: &SqliteStore, key: &str) -> Result<(String, bool)> {
    if let Some(s) = store.meta(key).map_err(core_err)? {
        return Ok((s, false));
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    store.set_meta(key, &secret).map_err(core_err)?;
    Ok((secret, true))
}

/// A profile kept from an earlier start whose agent no token names any more (taken out of
/// `HELPDESK_AGENTS`, or the administrator's, made before it was refused) is set away:
/// nobody can sign in as them, so they take no new tickets. What they hold stays theirs,
/// for a supervisor to reassign; the profile comes back as it was once a token names them
/// again and they set themselves available.
async fn set_away_unless_configured(store: &SqliteStore, agents: &tickets::Agents) -> Result<()> {
    for mut profile in store.list_agents().await.map_err(core_err)? {
        let nobody = agents.is_unknown(&profile.id) || agents.is_admin(&profile.id);
        if nobody && profile.available {
            profile.available = false;
            store.put_agent(&profile).await.map_err(core_err)?;
            tracing::warn!(agent = %profile.id, "no HELPDESK_AGENTS entry names this agent: set away, takes no new tickets");
        }
    }
    Ok(())
}

/// The generated admin token of a data directory, for `helpdesk admin-token`.
pub fn stored_admin_token(data_dir: &Path) -> Result<Option<String>> {
    let path = data_dir.join("helpdesk.sqlite3");
    if !path.exists() {
        return Ok(None);
    }
    let store = SqliteStore::open(&path).map_err(core_err)?;
    store.meta(ADMIN_TOKEN_KEY).map_err(core_err)
}

const ADMIN_TOKEN_KEY: &str = "admin_token";

/// Makes the data directory when there is none, readable by its owner only: the database in
/// it holds the generated admin token and the survey secret. One that exists is left as it
/// is, with a warning when its group or others have any access to it.
pub fn private_data_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(dir) {
            if !meta.is_dir() {
                anyhow::bail!("the data directory {} is not a directory", dir.display());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    data_dir = %dir.display(),
                    mode = %format!("{mode:o}"),
                    "the data directory is open to other users of this machine, and its database holds the admin token and the survey secret; `chmod 700` it"
                );
            }
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))
    }
}

pub async fn run(addr: SocketAddr, data_dir: PathBuf) -> Result<()> {
    let config = Config::from_env(data_dir)?;
    // Checked before anything is opened or made: a start that stops here has printed no
    // admin token.
    let agents = tickets::Agents::parse_agents(config.agents.as_deref()).map_err(core_err)?;
    private_data_dir(&config.data_dir)?;
    let sqlite =
        Arc::new(SqliteStore::open(&config.data_dir.join("helpdesk.sqlite3")).map_err(core_err)?);
    // Said once: whether answers are matched by meaning (the model file) or by words only.
    let ranking = helpdesk_core::knowledge::semantic::start().map_err(core_err)?;
    tracing::info!("{}", helpdesk_core::knowledge::semantic::describe(ranking));
    let index = Arc::new(
        TantivyIndex::open(&index_dir(&config.data_dir)).map_err(|e| {
            anyhow!(
                "{} (is another helpdesk process using {}?)",
                e.message,
                config.data_dir.display()
            )
        })?,
    );
    if index.is_empty() && sqlite.meta("sample_kb_loaded").map_err(core_err)?.is_none() {
        let articles = parse_articles(SAMPLE_KB).map_err(core_err)?;
        // With the sentence encoder, the sample's questions come embedded: a first start
        // does not wait for them.
        index.seed_vectors(SAMPLE_KB_VECTORS);
        index.upsert(&articles).await.map_err(core_err)?;
        sqlite.set_meta("sample_kb_loaded", "1").map_err(core_err)?;
        tracing::info!(
            articles = articles.len(),
            "loaded the sample knowledge base"
        );
    }
    let rules = match &config.rules_file {
        None => Rules::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading HELPDESK_RULES file {}", path.display()))?;
            Rules::parse(&text).map_err(core_err)?
        }
    };
    // Bound before an admin token is made: an address in use stops the start first.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let admin_token = match &config.admin_token {
        Some(t) => t.clone(),
        None => {
            // Printed once, when it is made: a log or a terminal kept later shows no secret.
            let (t, made) = stored_secret(&sqlite, ADMIN_TOKEN_KEY)?;
            if made {
                println!("admin token (printed this once; set HELPDESK_ADMIN_TOKEN to choose your own): {t}");
            } else {
                println!(
                    "admin token: the one printed at the first start; `helpdesk admin-token --data-dir {}` shows it again",
                    config.data_dir.display()
                );
            }
            t
        }
    };
    let agents = agents.with_admin(&admin_token);
    // The configured agents get the default profile, so the desk assigns to them from the
    // start; a supervisor's changes to a profile are kept across restarts.
    for agent in agents.configured() {
        sqlite.ensure_agent(&agent.name).await.map_err(core_err)?;
    }
    set_away_unless_configured(sqlite.as_ref(), &agents).await?;
    let rules = Arc::new(rules);
    let survey_secret = match &config.survey_secret {
        Some(s) => s.clone(),
        None => stored_secret(&sqlite, "survey_secret")?.0,
    };
    let local = listener.local_addr()?;
    let public_url = match config.public_url.clone() {
        Some(url) => url,
        None => {
            let url = format!("http://{local}");
            if local.ip().is_unspecified() {
                tracing::warn!(
                    "survey links will name {url}, which no customer's browser can open: set \
                     HELPDESK_PUBLIC_URL to the address customers reach this desk at"
                );
            }
            url
        }
    };
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;

    let store: Arc<dyn Store> = sqlite.clone();
    let queue: Arc<dyn Queue> = sqlite.clone();
    let knowledge: Arc<dyn KnowledgeIndex> = index.clone();

    let intake = Arc::new(intake::Deps {
        store: store.clone(),
        queue: queue.clone(),
        whatsapp: config.channels.whatsapp.clone(),
        telegram: config.channels.telegram.clone(),
        survey_signer: Some(SurveySigner::new(survey_secret.clone())),
    });
    let router_deps = Arc::new(router::Deps {
        store: store.clone(),
        queue: queue.clone(),
        rules: (*rules).clone(),
    });
    let auto_reply = Arc::new(auto_reply::Deps {
        store: store.clone(),
        queue: queue.clone(),
        knowledge: knowledge.clone(),
        threshold: config.threshold,
    });
    let dispatch = Arc::new(
        dispatch::Deps::new(
            store.clone(),
            &config.channels,
            http.clone(),
            config.supervisor_webhook_url.clone(),
        )
        .with_agent_webhook(http.clone(), config.agent_webhook_url.clone()),
    );
    let survey = Arc::new(survey::Deps {
        store: store.clone(),
        queue: queue.clone(),
        rules: rules.clone(),
        signer: SurveySigner::new(survey_secret),
        public_url,
    });
    let tickets = Arc::new(tickets::Deps {
        store: store.clone(),
        queue: queue.clone(),
        knowledge,
        agents,
        threshold: config.threshold,
        auto_assign: rules.auto_assign(),
        close_resolved_after: rules.close_resolved_after(),
        zone: rules.hours().zone(),
    });
    if dispatch.supervisor.is_none() {
        tracing::warn!("SUPERVISOR_WEBHOOK_URL is not set: escalations will not notify anyone");
    }
    for line in config.channels.describe() {
        tracing::info!("{line}");
    }

    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    {
        let d = router_deps.clone();
        workers.push(spawn_worker(
            &sqlite,
            QueueName::Inbound.as_str(),
            &stopped,
            move |body| {
                let d = d.clone();
                async move { router::handle_job(&d, decode(&body)?).await }
            },
        ));
        let d = auto_reply.clone();
        workers.push(spawn_worker(
            &sqlite,
            QueueName::AutoReply.as_str(),
            &stopped,
            move |body| {
                let d = d.clone();
                async move { auto_reply::handle(&d, decode(&body)?).await }
            },
        ));
        let d = dispatch.clone();
        workers.push(spawn_worker(
            &sqlite,
            QueueName::Outbound.as_str(),
            &stopped,
            move |body| {
                let d = d.clone();
                async move { dispatch::handle(&d, decode(&body)?).await }
            },
        ));
        workers.push(spawn_sweeper(&sqlite, &stopped));
        let d = survey.clone();
        workers.push(spawn_worker(&sqlite, CHANGE_FEED, &stopped, move |body| {
            let d = d.clone();
            async move { survey::handle_change(&d, decode(&body)?).await }
        }));
        workers.push(spawn_clock(&store, &rules, config.sla_check, &stopped));
    }

    let app = answering_misses(
        Router::new()
            .route(
                "/healthz",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .merge(intake::router(intake))
            .merge(tickets::router(tickets))
            .merge(survey::router(survey))
            .merge(helpdesk_web::console(&config.console))
            .merge(helpdesk_web::widget()),
    )
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    println!("helpdesk listening on http://{local}");
    tracing::info!(%local, data_dir = %config.data_dir.display(), "serving");
    // The peer's address is what the webchat's per-address limit counts by.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving HTTP")?;
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn spawn_worker<F, Fut>(
    store: &Arc<SqliteStore>,
    queue: &'static str,
    stopped: &watch::Receiver<bool>,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = helpdesk_core::Result<()>> + Send + 'static,
{
    tokio::spawn(run_worker(
        store.clone(),
        queue,
        WorkerConfig::default(),
        stopped.clone(),
        handler,
    ))
}

/// The SLA clock and the waiting tickets' second chance, every `every` until stopped:
/// locally, what the `sla` function's schedule does on AWS.
fn spawn_clock(
    store: &Arc<dyn Store>,
    rules: &Arc<Rules>,
    every: std::time::Duration,
    stopped: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (store, rules) = (store.clone(), rules.clone());
    let mut stopped = stopped.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            match assignment::tick(store.as_ref(), &rules, helpdesk_core::domain::now()).await {
                Ok(t) if t.breached + t.assigned + t.closed > 0 => {
                    tracing::info!(
                        breached = t.breached,
                        assigned = t.assigned,
                        closed = t.closed,
                        "clock"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the SLA clock failed; next turn tries again"),
            }
        }
    })
}

/// How often the local program removes ended webchat sessions, claims and counters.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes what has ended, every [`SWEEP_EVERY`] until stopped: locally, what DynamoDB's TTL
/// does on AWS. It also queues again the messages a failed queue send left queued.
fn spawn_sweeper(
    sqlite: &Arc<SqliteStore>,
    stopped: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let sqlite = sqlite.clone();
    let mut stopped = stopped.clone();
    tokio::spawn(async move {
        loop {
            match sqlite.sweep_expired(helpdesk_core::domain::now().timestamp()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "ended webchat sessions removed"),
                Err(e) => tracing::warn!(error = %e, "sweeping ended sessions failed"),
            }
            let now = helpdesk_core::domain::now();
            let grace = helpdesk_core::flow::QUEUED_GRACE_SECS;
            match helpdesk_core::flow::sweep_queued(
                sqlite.as_ref(),
                sqlite.as_ref(),
                now,
                grace,
                100,
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::warn!(messages = n, "messages left queued were queued again"),
                Err(e) => tracing::warn!(error = %e, "sweeping queued messages failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
