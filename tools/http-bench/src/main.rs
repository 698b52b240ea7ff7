//! Measures create (`POST /spec-tasks/from-prompt`) and get (`GET /spec-tasks/{id}`) throughput
//! and latency over real HTTP. By default it starts a server in this process on a fresh SQLite
//! file in a temporary directory; `--url` targets a running server instead. Loopback only: every
//! request count and duration is bounded.
//!
//! cargo run --release -p spectask-http-bench -- --requests 5000 --concurrency 32

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::stream::{self, StreamExt};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Requests per phase.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    requests: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Base URL of a running server (loopback); default: an in-process server on temporary SQLite.
    #[arg(long)]
    url: Option<String>,
    /// Database URL for the in-process server (default: SQLite in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

struct Phase {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn report(&self) {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
        println!(
            "{:<7} {:>7} req  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.name,
            sorted.len(),
            sorted.len() as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            sorted[sorted.len() - 1].as_secs_f64() * 1e3,
        );
    }
}

async fn run_phase<F, Fut>(
    name: &'static str,
    requests: u32,
    concurrency: u32,
    make: F,
) -> Result<Phase>
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
    Ok(Phase {
        name,
        elapsed,
        latencies,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _tmp;
    let base = match &args.url {
        Some(url) => {
            if !(url.starts_with("http://127.")
                || url.starts_with("http://localhost")
                || url.starts_with("http://[::1]"))
            {
                bail!("only loopback servers may be benchmarked");
            }
            url.trim_end_matches('/').to_owned()
        }
        None => {
            let dir = tempfile::tempdir()?;
            let db = match &args.database_url {
                Some(url) => url.clone(),
                None => format!("sqlite://{}", dir.path().join("bench.db").display()),
            };
            _tmp = dir;
            let store =
                spectask_store::Store::connect(&db, spectask_store::ConnectOptions::default())
                    .await?;
            let engine =
                spectask_engine::Engine::new(store, Default::default(), Default::default());
            let server =
                spectask_server::Server::bind("127.0.0.1:0".parse()?, engine, Default::default())
                    .await?;
            let addr = server.local_addr()?;
            tokio::spawn(server.run(std::future::pending()));
            format!("http://{addr}")
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()?;
    println!(
        "target {base}, {} requests per phase, concurrency {}",
        args.requests, args.concurrency
    );

    let ids = std::sync::Mutex::new(Vec::with_capacity(args.requests as usize));
    let create = run_phase("create", args.requests, args.concurrency, |i| {
        let client = client.clone();
        let url = format!("{base}/api/v1/spec-tasks/from-prompt");
        let ids = &ids;
        async move {
            let response = client
                .post(url)
                .json(&json!({"prompt": format!("Benchmark task {i}: add an endpoint and its tests"), "priority": "high"}))
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::CREATED {
                bail!("create answered {}", response.status());
            }
            let body: serde_json::Value = response.json().await?;
            let id = body["id"].as_str().context("no id")?.to_owned();
            ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(id);
            Ok(())
        }
    })
    .await?;
    let ids = ids.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let get = run_phase("get", args.requests, args.concurrency, |i| {
        let client = client.clone();
        let url = format!("{base}/api/v1/spec-tasks/{}", ids[i as usize % ids.len()]);
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
    create.report();
    get.report();
    Ok(())
}
