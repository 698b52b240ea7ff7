//! Measures how fast agent output flows through spectask: `--threads` work sessions of one
//! SpecTask each run a turn in which our scripted ACP agent floods `--updates` message chunks;
//! spectask relays them from the agent process into the stored interactions and, as
//! `interaction.updated` events, to a live SSE subscriber. Everything runs on loopback: the
//! server in this process (fresh SQLite), a fake planner, and the test agent as a real process.
//!
//! cargo build --release -p spectask-acp-test-agent -p spectask-acp-bench
//! target/release/spectask-acp-bench --threads 8 --updates 20000

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use spectask_engine::PlannerRegistry;
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_testkit::{FakeOpenAi, TestApp, TestDatabase, TestOptions, fast_engine, fast_planner};

#[derive(Debug, Parser)]
struct Args {
    /// Work sessions (threads) flooding at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Message chunks each thread's agent sends in its turn.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    updates: u32,
    /// The test agent binary (default: next to this executable).
    #[arg(long)]
    agent: Option<PathBuf>,
}

fn plan(threads: u32) -> String {
    let tasks: String = (1..=threads)
        .map(|n| format!("- [ ] {n}. Flood {n}\n"))
        .collect();
    format!(
        "# Requirements: Bench\n\n1.1 WHEN flooded THE SYSTEM SHALL keep up.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Bench\n\nFast.\n\n# Implementation Plan: Bench\n\n{tasks}"
    )
}

async fn wait_for(app: &TestApp, id: &str, status: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if app.get(&format!("/api/v1/spec-tasks/{id}")).await.body["status"] == status {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("task never reached {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let agent = match args.agent {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("spectask-acp-test-agent"),
    };
    anyhow::ensure!(
        agent.is_file(),
        "test agent not found at {} (build spectask-acp-test-agent)",
        agent.display()
    );
    let workspace = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let script = json!({"steps": [{"kind": "flood", "updates": args.updates}]});
    let profile = AcpProfile::new("flood", agent.to_string_lossy(), Vec::<String>::new())
        .with_env("SPECTASK_TEST_AGENT_SCRIPT", script.to_string())
        .with_env("SPECTASK_TEST_AGENT_STATE", state.path().to_string_lossy());
    let runtime = AcpRuntime::new(vec![profile], Some("flood".to_owned()));
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply(&plan(args.threads));
    let mut engine = fast_engine();
    engine.max_parallel_threads = args.threads as usize;
    let options = TestOptions {
        planners: PlannerRegistry::new(Some(fast_planner("default", &fake.base_url())), []),
        engine,
        runtime: Some(Arc::new(runtime)),
        ..TestOptions::default()
    };
    let app = TestApp::spawn_with_options(TestDatabase::sqlite().await, options).await;

    let task = app
        .post(
            "/api/v1/spec-tasks/from-prompt",
            &json!({"prompt": "flood", "project_path": workspace.path()}),
        )
        .await;
    let id = task.body["id"].as_str().context("no task id")?.to_owned();
    wait_for(&app, &id, "spec_review", Duration::from_secs(30)).await?;

    // A live subscriber from now on, counting relayed updates (each update is one "{i}\n").
    let relayed = Arc::new(AtomicU64::new(0));
    let response = app
        .client
        .get(app.url(&format!("/api/v1/events/stream?spec_task_id={id}")))
        .send()
        .await?;
    let subscriber = {
        let relayed = relayed.clone();
        tokio::spawn(async move {
            let mut buffer = String::new();
            let mut stream = response.bytes_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let message: String = buffer.drain(..end + 2).collect();
                    if !message.contains("event: interaction.updated") {
                        continue;
                    }
                    for line in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if let Ok(event) = serde_json::from_str::<Value>(line)
                            && let Some(delta) = event["payload"]["delta"].as_str()
                        {
                            relayed
                                .fetch_add(delta.matches('\n').count() as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };

    let started = Instant::now();
    app.post(
        &format!("/api/v1/spec-tasks/{id}/approve-specs"),
        &json!({"approved": true}),
    )
    .await;
    wait_for(&app, &id, "implementation_review", Duration::from_secs(600)).await?;
    let stored_at = started.elapsed();
    let expected = u64::from(args.threads) * u64::from(args.updates);
    let deadline = Instant::now() + Duration::from_secs(30);
    while relayed.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relayed_at = started.elapsed();
    subscriber.abort();

    let sessions = app
        .get(&format!("/api/v1/spec-tasks/{id}/work-sessions"))
        .await
        .body;
    let mut stored = 0u64;
    for ws in sessions["work_sessions"]
        .as_array()
        .context("no work sessions")?
    {
        let detail = app
            .get(&format!(
                "/api/v1/work-sessions/{}",
                ws["id"].as_str().unwrap_or_default()
            ))
            .await
            .body;
        stored += detail["helix_session"]["interactions"][0]["response_message"]
            .as_str()
            .unwrap_or_default()
            .matches('\n')
            .count() as u64;
    }
    let relayed = relayed.load(Ordering::Relaxed);
    println!(
        "{} threads x {} updates = {expected} updates",
        args.threads, args.updates
    );
    println!(
        "stored   {stored:>9} updates in {:>7.2} s  {:>9.0} updates/s (approval to implementation_review)",
        stored_at.as_secs_f64(),
        stored as f64 / stored_at.as_secs_f64()
    );
    println!(
        "relayed  {relayed:>9} updates in {:>7.2} s  {:>9.0} updates/s (to one live SSE subscriber)",
        relayed_at.as_secs_f64(),
        relayed as f64 / relayed_at.as_secs_f64()
    );
    anyhow::ensure!(
        stored == expected && relayed == expected,
        "updates were lost: stored {stored}, relayed {relayed}, expected {expected}"
    );
    Ok(())
}
