//! Measures create (`POST /spec-tasks/from-prompt`) and get (`GET /spec-tasks/{id}`) throughput
//! and latency over real HTTP against a server in this process on a fresh database (SQLite in a
//! temporary directory, or a fresh database on the PostgreSQL server of `--postgres`), and in the
//! same run the database's own limits as baselines: rows of the created rows' size inserted in
//! batches of 1,000 per transaction, and point reads of them by key at the same concurrency.
//!
//! cargo run --release -p spectask-http-bench -- --requests 20000 --concurrency 16 --runs 3

mod baseline;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::stream::{self, StreamExt};
use serde_json::json;
use spectask_testkit::TestDatabase;

#[derive(Debug, Parser)]
struct Args {
    /// Requests per phase.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    requests: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// How many times to run everything, each on a fresh database.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Run on PostgreSQL instead of SQLite: the admin URL of a server on which a fresh database
    /// is created for each run (and dropped after it).
    #[arg(long)]
    postgres: Option<String>,
}

/// What one phase measured.
#[derive(Debug)]
pub struct Phase {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
        sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn line(&self, name: &str, unit: &str) -> String {
        format!(
            "{name:<16} {:>7} {unit:<4} {:>9.0} {unit}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            self.latencies.len(),
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
        )
    }
}

/// Runs `requests` calls of `make`, `concurrency` at a time, timing each.
pub async fn run_phase<F, Fut>(requests: u32, concurrency: u32, make: F) -> Result<Phase>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    let results: Vec<Result<Duration>> = stream::iter(0..requests)
        .map(|i| {
            let fut = make(i);
            async move {
                let t = Instant::now();
                fut.await?;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency as usize)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let latencies = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Phase { elapsed, latencies })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "{} requests per phase, concurrency {}, {} run(s), {}",
        args.requests,
        args.concurrency,
        args.runs,
        if args.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    for run in 1..=args.runs {
        println!("run {run}");
        one_run(&args).await?;
    }
    Ok(())
}

async fn one_run(args: &Args) -> Result<()> {
    let db = match &args.postgres {
        Some(url) => TestDatabase::postgres_on(url).await,
        None => TestDatabase::sqlite().await,
    };
    let store =
        spectask_store::Store::connect(db.url(), spectask_store::ConnectOptions::default()).await?;
    let engine =
        spectask_engine::Engine::new(store.clone(), Default::default(), Default::default());
    let server =
        spectask_server::Server::bind("127.0.0.1:0".parse()?, engine, Default::default()).await?;
    let base = format!("http://{}", server.local_addr()?);
    let serving = tokio::spawn(server.run(std::future::pending()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()?;

    let created = std::sync::Mutex::new(Vec::with_capacity(args.requests as usize));
    let writes_before = store.write_stats();
    let create = run_phase(args.requests, args.concurrency, |i| {
        let client = client.clone();
        let url = format!("{base}/api/v1/spec-tasks/from-prompt");
        let created = &created;
        async move {
            let response = client
                .post(url)
                .json(&json!({"prompt": format!("Benchmark task {i}: add an endpoint and its tests"), "priority": "high"}))
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::CREATED {
                bail!("create answered {}", response.status());
            }
            let body = response.bytes().await?;
            let task: serde_json::Value = serde_json::from_slice(&body)?;
            let id = task["id"].as_str().context("no id")?.to_owned();
            created
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push((id, body.len()));
            Ok(())
        }
    })
    .await?;
    let writes = store.write_stats();
    let created = created
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let get = run_phase(args.requests, args.concurrency, |i| {
        let client = client.clone();
        let url = format!(
            "{base}/api/v1/spec-tasks/{}",
            created[i as usize % created.len()].0
        );
        async move {
            let response = client.get(url).send().await?;
            if response.status() != reqwest::StatusCode::OK {
                bail!("get answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await?;
    serving.abort();
    store.close().await;

    // A create stores the task's row and its event; the baseline's rows carry as many bytes.
    let row_bytes = created.iter().map(|(_, len)| len).sum::<usize>() / created.len().max(1);
    let baseline = baseline::measure(&db, args.requests, args.concurrency, row_bytes).await?;

    let commits = writes.commits - writes_before.commits;
    let grouped = (writes.writes - writes_before.writes) as f64 / commits.max(1) as f64;
    println!("  {}", create.line("create", "req"));
    println!("  {}", get.line("get", "req"));
    println!("  {}", baseline.inserts.line("raw insert ×1000", "rows"));
    println!("  {}", baseline.reads.line("raw point read", "rows"));
    println!(
        "  create = {:.3} × raw batched inserts ({row_bytes} B rows); {grouped:.1} writes per commit",
        create.rate() / baseline.inserts.rate(),
    );
    println!(
        "  get    = {:.3} × raw point reads",
        get.rate() / baseline.reads.rate()
    );
    Ok(())
}
