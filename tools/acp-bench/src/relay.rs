//! `relay`: how fast agent output flows through spectask. `--threads` work sessions of one
//! SpecTask each run a turn in which our scripted ACP agent floods `--updates` message chunks;
//! spectask relays them from the agent process into the stored interactions and, as
//! `interaction.updated` events, to a live SSE subscriber. With `--rate` the agents send stamped
//! updates on a schedule instead, and the delay from each update's send to its arrival at the
//! subscriber is measured. Each run also measures the raw pipe (`pipe_baseline`) as a baseline.

use std::time::{Duration, Instant};

use crate::capacity::micros;

use anyhow::{Context, Result};
use serde_json::json;
use spectask_testkit::fast_engine;

use crate::harness::{Bench, Common};

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Work sessions (threads) flooding at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Message chunks each thread's agent sends in its turn.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    updates: u32,
    /// Send updates on a schedule, this many a second in all (spread over the threads), each
    /// stamped with its send time, instead of flooding: measures the added latency.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    rate: Option<u32>,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: RelayArgs) -> Result<()> {
    let agent = args.common.agent()?;
    let script = match args.rate {
        Some(rate) => json!({"steps": [{
            "kind": "stamped",
            "count": args.updates,
            "interval_us": u64::from(args.threads) * 1_000_000 / u64::from(rate),
        }]}),
        None => json!({"steps": [{"kind": "flood", "updates": args.updates}]}),
    };
    let mut engine = fast_engine();
    engine.max_parallel_threads = args.threads as usize;
    // The bench measures relaying, not recovery. The test settings' 2 s lease and 5 s silence
    // limit are reached on a loaded machine: a turn whose updates wait in the agent's one stdout
    // pipe behind the other threads' floods gets none for seconds, is cancelled as silent and
    // runs again (its output then counted twice).
    engine.turn_lease = Duration::from_secs(30);
    engine.turn_timeout = Duration::from_secs(120);
    // Output batching as in production (the test settings space a turn's writes 20 ms apart).
    engine.flush_interval = spectask_engine::EngineSettings::default().flush_interval;
    let bench = Bench::start(&args.common, &agent, &script, engine).await?;
    let id = bench.planned_task(args.threads).await?;

    // A live subscriber from now on, counting relayed updates (each update is one "{i}\n").
    let mut subscriber = bench.subscribe().await?;
    let writes_before = bench.app.store.write_stats();
    let mut events = 0u64;
    let started = Instant::now();
    bench.approve(&id).await?;
    bench
        .wait_for(&id, "implementation_review", Some(&subscriber))
        .await?;
    let stored_at = started.elapsed();
    let expected = u64::from(args.threads) * u64::from(args.updates);
    let mut relayed = 0u64;
    // Milliseconds from each stamped update's send to its arrival here.
    let mut delays: Vec<f64> = Vec::new();
    // Milliseconds from each stamped update's send to the stamp of the transaction that stored it.
    let mut store_delays: Vec<f64> = Vec::new();
    // The task is in review, so every update is stored: the rest are on their way to the
    // subscriber, and a stream that stops bringing them fails the run.
    let mut short = None;
    while relayed < expected {
        match subscriber
            .next(&format!(
                "the last of {expected} updates ({relayed} relayed)"
            ))
            .await
        {
            Ok(update) => {
                events += 1;
                let delta = update.delta.as_str();
                relayed += delta.matches('\n').count() as u64;
                let received = micros(update.at);
                let written = update.written_at;
                for sent in delta
                    .lines()
                    .filter_map(|line| line.strip_prefix('@')?.parse::<i64>().ok())
                {
                    delays.push((received - sent) as f64 / 1000.0);
                    if let Some(written) = written {
                        store_delays.push((written - sent) as f64 / 1000.0);
                    }
                }
            }
            Err(err) => {
                short = Some(err);
                break;
            }
        }
    }
    let relayed_at = started.elapsed();
    let writes = bench.app.store.write_stats();
    subscriber.stop();

    let stored: u64 = bench
        .stored_responses(&id)
        .await
        .context("reading the stored responses")?
        .iter()
        .map(|response| response.matches('\n').count() as u64)
        .sum();
    println!(
        "{} threads x {} updates = {expected} updates ({})",
        args.threads,
        args.updates,
        args.common.database_kind()
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
    println!(
        "batching {events} interaction.updated events ({:.0} updates each); {} writes in {} commits",
        relayed as f64 / events.max(1) as f64,
        writes.writes - writes_before.writes,
        writes.commits - writes_before.commits
    );
    for (what, delays) in [("subscriber", &mut delays), ("store", &mut store_delays)] {
        if delays.is_empty() {
            continue;
        }
        delays.sort_by(f64::total_cmp);
        let at = |p: f64| delays[((delays.len() as f64 * p) as usize).min(delays.len() - 1)];
        println!(
            "latency  agent line to {what} at {} updates/s offered: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            args.rate.unwrap_or_default(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    let (lines, took) = crate::pipe_baseline::lines_per_second(expected)?;
    let pipe_rate = lines as f64 / took.as_secs_f64();
    println!(
        "raw pipe {lines:>9} lines   in {:>7.2} s  {pipe_rate:>9.0} lines/s (written, read and parsed; baseline)",
        took.as_secs_f64()
    );
    println!(
        "relayed = {:.3} x raw pipe",
        relayed as f64 / relayed_at.as_secs_f64() / pipe_rate
    );
    anyhow::ensure!(
        stored == expected && relayed == expected,
        "not every update was stored and relayed once: stored {stored}, relayed {relayed}, \
         expected {expected}{}",
        short.map_or_else(String::new, |why| format!(" ({why:#})"))
    );
    Ok(())
}
