//! `capacity`: how many threads one server holds at once. For each level N, a fresh server runs N
//! work sessions at the same time (N / `--threads-per-task` SpecTasks, so as many agent
//! processes, each hosting that many ACP sessions), every one a turn in which our test agent
//! sends `--rate` stamped updates a second for `--turn-secs`. Each update carries its send time,
//! so the subscriber reads off the delay from agent to stored row (the `interaction.updated`
//! event's `created_at`, stamped in the writing transaction) and to itself.
//!
//! A level *keeps up* when nothing is lost (every update stored and relayed), all N threads
//! stream at the same time, and the p99 delay from agent to subscriber stays within
//! `--max-p99-ms`. The server runs with production settings (100 ms output batches, 30 s
//! leases), except the limits, which are raised to the level.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use futures::StreamExt;
use serde_json::json;
use spectask_engine::EngineSettings;

use crate::harness::{Bench, Common, Received, children, rss_kib};

#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// Threads (work sessions) running at once, one level per run of a fresh server.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 64, 128, 256])]
    levels: Vec<u32>,
    /// Work sessions per SpecTask (per agent process).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads_per_task: u32,
    /// How long each thread's turn streams.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    turn_secs: u64,
    /// Updates each thread sends per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
    /// The p99 agent-to-subscriber delay a level may have and still keep up.
    #[arg(long, default_value_t = 1000)]
    max_p99_ms: u64,
    #[command(flatten)]
    common: Common,
}

/// What one level measured.
struct Level {
    threads: u32,
    /// What went wrong beyond the figures: the stream stopped short, a turn failed and ran again.
    problem: Option<String>,
    expected: u64,
    stored: u64,
    relayed: u64,
    /// Most threads streaming at the same instant (from each turn's first and last stamp).
    peak_streaming: usize,
    /// Approval to the last task in `implementation_review`.
    elapsed: Duration,
    /// Approval to the first update of the last thread to start.
    all_started: Duration,
    /// Updates the subscriber received per second while every thread was streaming (from the
    /// last thread's first update to the first thread's last one); `None` when they never all
    /// streamed at once.
    steady_rate: Option<f64>,
    stored_ms: Percentiles,
    relayed_ms: Percentiles,
    server_rss_mib: f64,
    agents_rss_mib: f64,
    agents: usize,
    /// Where starting the threads went, from the turns' own times.
    dispatch: Option<String>,
}

impl Level {
    fn keeps_up(&self, max_p99_ms: u64) -> Result<(), String> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        if self.stored != self.expected || self.relayed != self.expected {
            return Err(format!(
                "lost updates: stored {}, relayed {}, expected {}",
                self.stored, self.relayed, self.expected
            ));
        }
        if self.peak_streaming < self.threads as usize {
            return Err(format!(
                "only {} of {} threads streamed at once",
                self.peak_streaming, self.threads
            ));
        }
        if self.relayed_ms.p99 > max_p99_ms as f64 {
            return Err(format!(
                "p99 agent-to-subscriber {:.0} ms > {max_p99_ms} ms",
                self.relayed_ms.p99
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

pub(crate) fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The greatest number of `[start, end]` intervals that overlap at one instant.
fn peak_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // At equal times starts come first: touching intervals count as overlapping.
    edges.sort_by_key(|&(at, delta)| (at, -delta));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    usize::try_from(peak).unwrap_or(0)
}

pub async fn run(args: CapacityArgs) -> Result<()> {
    let agent = args.common.agent()?;
    println!(
        "capacity on {}: {} updates/s per thread for {} s, {} threads per task (agent process); \
         keeps up = nothing lost, all threads streaming at once, p99 agent-to-subscriber <= {} ms",
        args.common.database_kind(),
        args.rate,
        args.turn_secs,
        args.threads_per_task,
        args.max_p99_ms
    );
    println!(
        "{:>7} {:>6} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}  verdict",
        "threads",
        "peak",
        "turns/s",
        "all-on s",
        "offered/s",
        "steady/s",
        "lost",
        "store p50",
        "store p99",
        "sub p50",
        "sub p99",
        "srv MiB",
        "agts MiB"
    );
    let mut holds = None;
    for &threads in &args.levels {
        let level = measure(&args, &agent, threads).await?;
        let verdict = level.keeps_up(args.max_p99_ms);
        println!(
            "{:>7} {:>6} {:>9.2} {:>9.1} {:>9} {:>10} {:>8} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9.0} {:>9.0}  {}",
            level.threads,
            level.peak_streaming,
            f64::from(level.threads) / level.elapsed.as_secs_f64(),
            level.all_started.as_secs_f64(),
            u64::from(threads) * u64::from(args.rate),
            level
                .steady_rate
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
            level.expected - level.relayed.min(level.stored),
            level.stored_ms.p50,
            level.stored_ms.p99,
            level.relayed_ms.p50,
            level.relayed_ms.p99,
            level.server_rss_mib,
            level.agents_rss_mib,
            match &verdict {
                Ok(()) => "keeps up".to_owned(),
                Err(why) => format!("falls behind: {why}"),
            }
        );
        println!(
            "        (max delay: store {:.0} ms, subscriber {:.0} ms; {} agent processes; {:.1} s approval to review)",
            level.stored_ms.max,
            level.relayed_ms.max,
            level.agents,
            level.elapsed.as_secs_f64()
        );
        if let Some(dispatch) = &level.dispatch {
            println!("        (starting the threads: {dispatch})");
        }
        match verdict {
            Ok(()) => holds = Some(threads),
            Err(_) => break,
        }
    }
    match holds {
        Some(threads) => println!("holds {threads} concurrent threads by the criterion above"),
        None => println!("no level kept up"),
    }
    Ok(())
}

async fn measure(args: &CapacityArgs, agent: &std::path::Path, threads: u32) -> Result<Level> {
    let count = u64::from(args.rate) * args.turn_secs;
    let script = json!({"steps": [{
        "kind": "stamped",
        "count": count,
        "interval_ms": 1000 / u64::from(args.rate),
    }]});
    let sizes: Vec<u32> = (0..threads.div_ceil(args.threads_per_task))
        .map(|i| (threads - i * args.threads_per_task).min(args.threads_per_task))
        .collect();
    let engine = EngineSettings {
        replica_id: format!("bench-{}", std::process::id()),
        max_parallel_threads: args.threads_per_task as usize,
        max_active_instances: sizes.len(),
        max_concurrent_turns: sizes.len().max(4),
        turn_timeout: Duration::from_secs(120),
        ..EngineSettings::default()
    };
    let bench = Bench::start(&args.common, agent, &script, engine).await?;
    let mut ids = Vec::new();
    for &size in &sizes {
        ids.push(bench.planned_task(size).await?);
    }

    let mut subscriber = bench.subscribe().await?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut server, mut agents, mut processes) = (0u64, 0u64, 0usize);
            while sampling.load(Ordering::Relaxed) {
                server = server.max(rss_kib(std::process::id()).unwrap_or(0));
                let kids = children();
                processes = processes.max(kids.len());
                agents = agents.max(kids.iter().filter_map(|&pid| rss_kib(pid)).sum());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (server, agents, processes)
        })
    };
    let approved_at = SystemTime::now();
    let started = Instant::now();
    // The level's tasks are approved together, as many users would: approved one after another,
    // the last approval waited behind every earlier task's streaming threads.
    futures::stream::iter(ids.iter().map(|id| bench.approve(id)))
        .buffer_unordered(16)
        .collect::<Vec<Result<()>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    for id in &ids {
        bench
            .wait_for(id, "implementation_review", Some(&subscriber))
            .await?;
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (server_kib, agents_kib, agents) = sampler.await?;

    let expected = u64::from(threads) * count;
    let mut updates: Vec<Received> = Vec::new();
    let mut relayed = 0u64;
    let mut problem = None;
    // Every update is stored by now; the rest are on their way to the subscriber. One that
    // stops bringing them leaves this level short (counted as lost), with the reason shown.
    while relayed < expected {
        match subscriber
            .next(&format!(
                "the last of {expected} updates ({relayed} relayed)"
            ))
            .await
        {
            Ok(update) => {
                relayed += update.delta.matches('@').count() as u64;
                updates.push(update);
            }
            Err(err) => {
                problem = Some(format!("{err:#}"));
                break;
            }
        }
    }
    subscriber.stop();

    let mut stored = 0u64;
    for id in &ids {
        match bench.stored_responses(id).await {
            Ok(responses) => {
                stored += responses
                    .iter()
                    .map(|r| r.matches('@').count() as u64)
                    .sum::<u64>();
            }
            // A turn that failed and ran again: this level did not keep up.
            Err(err) => problem = problem.or(Some(format!("{err:#}"))),
        }
        // Approving stops the task's agent process, so the next level starts clean.
        if let Err(err) = bench
            .post_json(
                &format!("/api/v1/spec-tasks/{id}/approve-implementation"),
                &json!({}),
            )
            .await
        {
            println!("        (approving the implementation of {id} failed: {err:#})");
        }
    }

    let (mut to_store, mut to_subscriber) = (Vec::new(), Vec::new());
    let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for update in &updates {
        let received_at = micros(update.at);
        let written_at = update.written_at;
        let turn = update.turn_id.clone();
        let delta = update.delta.as_str();
        for sent in delta
            .lines()
            .filter_map(|line| line.strip_prefix('@')?.parse::<i64>().ok())
        {
            to_subscriber.push((received_at - sent) as f64 / 1000.0);
            if let Some(written_at) = written_at {
                to_store.push((written_at - sent) as f64 / 1000.0);
            }
            let span = spans.entry(turn.clone()).or_insert((sent, sent));
            span.0 = span.0.min(sent);
            span.1 = span.1.max(sent);
        }
    }
    let dispatch = dispatch_phases(&bench, &ids, &spans, micros(approved_at)).await;
    let spans: Vec<(i64, i64)> = spans.into_values().collect();
    let last_start = spans.iter().map(|s| s.0).max().unwrap_or(0);
    let first_end = spans.iter().map(|s| s.1).min().unwrap_or(0);
    let steady_rate = (spans.len() == threads as usize && first_end > last_start).then(|| {
        let in_window: usize = updates
            .iter()
            .filter(|u| (last_start..=first_end).contains(&micros(u.at)))
            .map(|u| u.delta.matches('@').count())
            .sum();
        in_window as f64 / ((first_end - last_start) as f64 / 1e6)
    });
    // The server stops once its turns have ended: all had, so this is quick unless one hangs.
    let stall = bench.stall();
    tokio::time::timeout(stall, bench.app.stop())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the server of level {threads} did not stop within {} s (a turn still running?)",
                stall.as_secs()
            )
        })?;
    Ok(Level {
        threads,
        problem,
        expected,
        stored,
        relayed,
        peak_streaming: peak_overlap(&spans),
        elapsed,
        all_started: Duration::from_micros(
            u64::try_from(last_start - micros(approved_at)).unwrap_or(0),
        ),
        steady_rate,
        stored_ms: percentiles(to_store),
        relayed_ms: percentiles(to_subscriber),
        server_rss_mib: server_kib as f64 / 1024.0,
        agents_rss_mib: agents_kib as f64 / 1024.0,
        agents,
        dispatch,
    })
}

/// How long the threads took to start, by phase, from each turn's stored times and its first
/// update: approval to queued (the orchestrator dispatched its work session), queued to claimed
/// (a worker took it), claimed to first update (agent instance, thread set-up, prompt). Each as
/// p50 / max in seconds.
async fn dispatch_phases(
    bench: &Bench,
    ids: &[String],
    first_updates: &BTreeMap<String, (i64, i64)>,
    approved_at: i64,
) -> Option<String> {
    let (mut queued, mut claimed, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        let task = spectask_domain::SpecTaskId::parse(id).ok()?;
        for turn in bench.app.store.list_turns(&task).await.ok()? {
            let (Some(started), Some((first_update, _))) =
                (turn.started_at, first_updates.get(turn.id.as_str()))
            else {
                continue;
            };
            let created = turn.created_at.timestamp_micros();
            let started = started.timestamp_micros();
            queued.push((created - approved_at) as f64 / 1e6);
            claimed.push((started - created) as f64 / 1e6);
            first.push((first_update - started) as f64 / 1e6);
        }
    }
    if queued.is_empty() {
        return None;
    }
    let show = |values: Vec<f64>| {
        let p = percentiles(values);
        format!("{:.1} / {:.1} s", p.p50, p.max)
    };
    Some(format!(
        "approval to queued {}, queued to claimed {}, claimed to first update {} (p50 / max)",
        show(queued),
        show(claimed),
        show(first)
    ))
}

#[cfg(test)]
mod tests {
    use super::{peak_overlap, percentiles};

    #[test]
    fn peak_overlap_counts_intervals_open_at_once() {
        assert_eq!(peak_overlap(&[]), 0);
        assert_eq!(peak_overlap(&[(0, 10), (5, 15), (20, 30)]), 2);
        assert_eq!(peak_overlap(&[(0, 10), (10, 20)]), 2);
        assert_eq!(peak_overlap(&[(0, 1), (2, 3), (4, 5)]), 1);
    }

    #[test]
    fn percentiles_pick_ranks() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
    }
}
