//! `helpdesk`: the whole desk in one process on embedded storage, for development and small
//! installs, plus the knowledge-base tools.

mod config;
mod eval;
mod serve;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use helpdesk_core::adapters::TantivyIndex;
use helpdesk_core::knowledge::parse_articles;
use helpdesk_core::ports::KnowledgeIndex;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "helpdesk",
    version,
    about = "A customer-service back end: webchat, WhatsApp and Telegram in, answers from a knowledge base, tickets for the rest."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function and route in one process.
    Serve {
        /// Where to listen: an address and port, or a host name and port
        /// (`localhost:3000`); `0.0.0.0:3000` for every interface.
        #[arg(long, default_value = "127.0.0.1:3000", value_parser = socket_addr)]
        addr: SocketAddr,
        /// Where the database and the knowledge index live.
        #[arg(long, env = "HELPDESK_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Print the admin token `serve` made in this data directory (when HELPDESK_ADMIN_TOKEN
    /// is not set, it is printed only at the first start).
    AdminToken {
        #[arg(long, env = "HELPDESK_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Knowledge-base tools.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Load or update articles from a JSON array or JSON Lines file.
    Import {
        file: PathBuf,
        #[arg(long, env = "HELPDESK_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Answer a CSV of labelled queries (`text,expected`) the way auto-reply would, and
    /// report accuracy, auto-reply rate and precision, hand-off recall and latency.
    Eval {
        /// The knowledge base: a JSON array or JSON Lines file of articles.
        #[arg(long)]
        kb: PathBuf,
        /// `text,expected` rows; an empty `expected` means the query should be handed off.
        #[arg(long)]
        queries: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `--addr`: an address, or a host name resolved to its first address.
fn socket_addr(value: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = value
        .to_socket_addrs()
        .map_err(|e| format!("{value:?} is not an address and port (127.0.0.1:3000) nor a host name and port (localhost:3000): {e}"))?
        .collect();
    // IPv4 first: `localhost` is often `::1` before `127.0.0.1`, and a desk listening on
    // `::1` alone refuses what is sent to 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{value:?} names no address"))
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HELPDESK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; none in a file, journald or a container's log.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    // The error and its causes, one line; never a backtrace (RUST_BACKTRACE is for panics).
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve { addr, data_dir } => serve::run(addr, data_dir).await,
            Command::AdminToken { data_dir } => admin_token(&data_dir),
            Command::Kb {
                command: KbCommand::Import { file, data_dir },
            } => import(&file, &data_dir).await,
            Command::Kb {
                command: KbCommand::Eval { kb, queries, json },
            } => eval::run(&kb, &queries, json, config::auto_reply_threshold()?).await,
        }
    })
}

/// The token the desk accepts as the admin's: `HELPDESK_ADMIN_TOKEN` when it is set (the
/// stored one is then refused), else the one `serve` made and stored.
fn admin_token(data_dir: &std::path::Path) -> Result<()> {
    if let Some(token) = config::admin_token()? {
        eprintln!("HELPDESK_ADMIN_TOKEN is set, so the desk takes that token, not a stored one");
        println!("{token}");
        return Ok(());
    }
    match serve::stored_admin_token(data_dir)? {
        Some(token) => {
            println!("{token}");
            Ok(())
        }
        None => anyhow::bail!(
            "{} holds no admin token yet: `helpdesk serve` makes one at its first start",
            data_dir.display()
        ),
    }
}

async fn import(file: &PathBuf, data_dir: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let articles =
        parse_articles(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
    serve::private_data_dir(data_dir)?;
    let index =
        TantivyIndex::open(&serve::index_dir(data_dir)).map_err(|e| anyhow::anyhow!(e.message))?;
    let created = index
        .upsert(&articles)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let articles_n = |n: usize| match n {
        1 => "1 article".to_string(),
        n => format!("{n} articles"),
    };
    println!(
        "imported {} ({} new, {} updated); the knowledge base now has {}",
        articles_n(articles.len()),
        created,
        articles.len() - created,
        articles_n(index.len())
    );
    Ok(())
}
