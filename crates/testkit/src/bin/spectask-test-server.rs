//! `spectask-test-server`: the real spectask server (store, engine and its worker, HTTP API) with
//! the scripted agent runtime in place of a real agent host. Test-only: integration tests spawn it
//! as a process so they can SIGKILL and restart a real server, while the runtime's dispatch log (a
//! file, synced per line) keeps every call each process made.
//!
//! Once listening it prints exactly one line to stdout, `listening on http://ADDR`, so a test can
//! learn the port it picked; logs go to stderr, and only when `TEST_LOG` is set. SIGTERM or Ctrl-C
//! stop it gracefully (running turns are handed back to the queue), like `spectask serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use spectask_engine::{Engine, PlannerProfile, PlannerRegistry};
use spectask_server::{ApiSettings, Server};
use spectask_store::{ConnectOptions, Store};
use spectask_testkit::{Script, ScriptedRuntime, fast_engine, fast_llm};

/// The script when none is given: every turn succeeds after three short chunks.
const DEFAULT_SCRIPT: &str = r#"{"default":{"kind":"succeed","chunks":3,"chunk_delay_ms":20}}"#;

/// A spectask server whose implementation agent is the scripted runtime (tests only).
#[derive(Debug, Parser)]
#[command(name = "spectask-test-server")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// The database (`sqlite://…` or `postgres://…`), migrated on start.
    #[arg(long)]
    database_url: String,
    /// The scripted runtime's behaviour, as the JSON of a `Script`.
    #[arg(long, default_value = DEFAULT_SCRIPT)]
    script: String,
    /// File to append every runtime call to, one JSON line each.
    #[arg(long)]
    dispatch_log: Option<PathBuf>,
    /// API root of a (fake) OpenAI server for a default planner.
    #[arg(long)]
    llm_base_url: Option<String>,
    /// Model name of the default planner (needs --llm-base-url).
    #[arg(long, requires = "llm_base_url")]
    llm_model: Option<String>,
    #[arg(long, default_value_t = 2000)]
    turn_lease_ms: u64,
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    #[arg(long, default_value_t = 4)]
    max_parallel_threads: usize,
    #[arg(long, default_value_t = 5000)]
    turn_timeout_ms: u64,
    #[arg(long, default_value_t = 2)]
    max_turn_retries: i32,
    /// Claims per turn before it fails (each interruption by a crash costs one).
    #[arg(long, default_value_t = 10)]
    max_turn_attempts: i32,
    #[arg(long, default_value = "test-server")]
    replica_id: String,
    /// File holding the claim owner of the previous process (read at start, then overwritten with
    /// this one's), so a restarted server re-runs what its predecessor was running at once, as
    /// `spectask serve` does with its data directory. Without it, those turns wait for their
    /// leases to expire.
    #[arg(long)]
    claim_record: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_logging();

    let script: Script = serde_json::from_str(&args.script).context("--script is not a Script")?;
    let mut runtime = ScriptedRuntime::new(script);
    if let Some(path) = &args.dispatch_log {
        runtime = runtime
            .with_dispatch_log(path)
            .with_context(|| format!("cannot open the dispatch log {}", path.display()))?;
    }
    let planners = match &args.llm_base_url {
        Some(base_url) => {
            let mut config = fast_llm(base_url);
            if let Some(model) = &args.llm_model {
                config.model.clone_from(model);
            }
            let planner = PlannerProfile::new("default", config, None)
                .context("invalid planner configuration")?;
            PlannerRegistry::new(Some(planner), [])
        }
        None => PlannerRegistry::default(),
    };
    let settings = spectask_engine::EngineSettings {
        turn_lease: Duration::from_millis(args.turn_lease_ms),
        poll_interval: Duration::from_millis(args.poll_ms),
        max_parallel_threads: args.max_parallel_threads,
        turn_timeout: Duration::from_millis(args.turn_timeout_ms),
        max_turn_retries: args.max_turn_retries,
        replica_id: args.replica_id.clone(),
        max_turn_attempts: args.max_turn_attempts,
        predecessor_owner: match &args.claim_record {
            Some(path) => std::fs::read_to_string(path)
                .ok()
                .map(|owner| owner.trim().to_owned()),
            None => None,
        },
        ..fast_engine()
    };

    let store = Store::connect(&args.database_url, ConnectOptions::default())
        .await
        .context("cannot open the database")?;
    let engine = Engine::with_runtime(store.clone(), planners, Arc::new(runtime), settings);
    if let Some(path) = &args.claim_record {
        std::fs::write(path, engine.owner())
            .with_context(|| format!("cannot write the claim record {}", path.display()))?;
    }
    let server = Server::bind(args.bind, engine, ApiSettings::default())
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = server.local_addr()?;
    {
        // The one line tests wait for; flushed at once because stdout is a pipe.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, database = store.kind(), "spectask test server listening");
    server
        .run(spectask_server::shutdown_signal())
        .await
        .context("server failed")?;
    store.close().await;
    tracing::info!("spectask test server stopped");
    Ok(())
}

/// Logs to stderr when `TEST_LOG` is set; stdout carries only the listening line.
fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=warn,hyper=info",
            ))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
