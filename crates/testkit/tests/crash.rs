//! Crash safety of the whole workflow: a five-thread implementation (planned by a fake LLM,
//! implemented by the scripted runtime in the `spectask-test-server` process) is SIGKILLed at
//! random moments 20 times and restarted on the same database each time. In the end every task is
//! complete, no work session, thread or session is duplicated, every dispatch of a turn after the
//! first happened only across a crash (never twice within one server's life, never after the turn
//! was recorded complete), and every turn ran on its work session's one thread.
//!
//! The seed is printed; set `SPECTASK_CRASH_SEED` to replay a run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, TestDatabase, backend_tests};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KILLS: usize = 20;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// xorshift64*: enough randomness for kill timing, reproducible from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn plan_reply() -> String {
    let tasks = [
        "Database schema",
        "Backend API",
        "Frontend UI",
        "Background jobs",
        "Integration tests",
    ];
    let mut plan = String::new();
    for (i, title) in tasks.iter().enumerate() {
        plan.push_str(&format!(
            "- [ ] {}. {title}\n  - Build it.\n  - _Requirements: 1.1_\n",
            i + 1
        ));
    }
    format!(
        "# Requirements: Crash test\n\n1.1 WHEN killed THE SYSTEM SHALL recover.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Crash test\n\nDurable turns.\n\n# Implementation Plan: Crash test\n\n{plan}"
    )
}

async fn start(db_url: &str, log: &Path, llm: &str) -> (Child, String) {
    let script =
        json!({"default": {"kind": "succeed", "chunks": 6, "chunk_delay_ms": 40}}).to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spectask-test-server"))
        .args([
            "--database-url",
            db_url,
            "--script",
            &script,
            "--llm-base-url",
            llm,
            "--llm-model",
            "fake",
        ])
        .arg("--dispatch-log")
        .arg(log)
        .arg("--claim-record")
        .arg(log.with_extension("owner"))
        .args([
            "--turn-lease-ms",
            "2000",
            "--poll-ms",
            "30",
            "--max-parallel-threads",
            "3",
        ])
        // One turn may be running at every one of the 20 kills; the production budget against a
        // turn that keeps crashing its server (10 claims) would then fail it, which is not what
        // this harness tests.
        .args(["--max-turn-attempts", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spectask-test-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line))
        .await
        .expect("listening in time")
        .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    (child, base)
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn status(client: &reqwest::Client, base: &str, id: &str) -> String {
    get(client, format!("{base}/api/v1/spec-tasks/{id}")).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn approve_if_reviewing(client: &reqwest::Client, base: &str, id: &str) {
    if status(client, base, id).await == "spec_review" {
        let _ = client
            .post(format!("{base}/api/v1/spec-tasks/{id}/approve-specs"))
            .json(&json!({"approved": true}))
            .send()
            .await;
    }
}

async fn crash_and_recover(db: TestDatabase) {
    let seed: u64 = std::env::var("SPECTASK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    eprintln!("crash test seed: {seed} (SPECTASK_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let fake = FakeOpenAi::start().await;
    for _ in 0..(KILLS + 5) {
        fake.push_text_reply(&plan_reply());
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dispatch.jsonl");
    let client = reqwest::Client::new();

    let (mut child, mut base) = start(db.url(), &log, &fake.base_url()).await;
    let task: Value = client
        .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
        .json(&json!({"prompt": "Build five things in parallel and survive crashes"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let mut kills_at = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.between(40, 450))).await;
        approve_if_reviewing(&client, &base, &id).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills_at.push(now_ms());
        (child, base) = start(db.url(), &log, &fake.base_url()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        approve_if_reviewing(&client, &base, &id).await;
        let current = status(&client, &base, &id).await;
        if current == "implementation_review" {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let task = get(&client, format!("{base}/api/v1/spec-tasks/{id}")).await;
            let sessions = get(
                &client,
                format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
            )
            .await;
            let errors: Vec<_> = sessions["work_sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["status"].clone(), s["error"].clone()))
                .collect();
            panic!(
                "never finished; stuck in {current}: {} {errors:?} (seed {seed})",
                task["error"]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Work sessions and threads: exactly one per planned task, all complete.
    let sessions = get(
        &client,
        format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
    )
    .await;
    let sessions = sessions["work_sessions"].as_array().unwrap();
    assert_eq!(
        sessions.len(),
        5,
        "duplicated or missing work sessions (seed {seed})"
    );
    let indexes: BTreeSet<_> = sessions
        .iter()
        .map(|s| s["implementation_task_index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, (0..5).collect(), "seed {seed}");
    assert!(
        sessions.iter().all(|s| s["status"] == "completed"),
        "seed {seed}: {sessions:?}"
    );
    let threads = get(
        &client,
        format!("{base}/api/v1/spec-tasks/{id}/zed-threads"),
    )
    .await;
    let threads = threads["zed_threads"].as_array().unwrap();
    assert_eq!(threads.len(), 5, "seed {seed}");
    let thread_of: BTreeMap<String, String> = threads
        .iter()
        .map(|t| {
            (
                t["work_session_id"].as_str().unwrap().to_owned(),
                t["zed_thread_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        thread_of.values().collect::<BTreeSet<_>>().len(),
        5,
        "two work sessions share a thread (seed {seed})"
    );
    let helix = get(&client, format!("{base}/api/v1/spec-tasks/{id}/sessions")).await;
    assert_eq!(
        helix["sessions"].as_array().unwrap().len(),
        6,
        "one planning + five implementation sessions (seed {seed})"
    );

    // Turns: none left running or queued; note which work session and when each completed.
    let mut turn_session: BTreeMap<String, String> = BTreeMap::new();
    let mut completed_at: BTreeMap<String, u128> = BTreeMap::new();
    for session in sessions {
        let ws = session["id"].as_str().unwrap();
        let detail = get(&client, format!("{base}/api/v1/work-sessions/{ws}")).await;
        for turn in detail["turns"].as_array().unwrap() {
            let turn_id = turn["id"].as_str().unwrap().to_owned();
            assert!(
                ["completed", "failed"].contains(&turn["status"].as_str().unwrap()),
                "seed {seed}: {turn}"
            );
            if turn["status"] == "completed" {
                let at: chrono_like::Timestamp =
                    turn["completed_at"].as_str().unwrap().parse().unwrap();
                completed_at.insert(turn_id.clone(), at.0);
            }
            turn_session.insert(turn_id, ws.to_owned());
        }
    }

    // The runtime's own record of every dispatch, across all 21 processes.
    let mut starts: BTreeMap<String, Vec<(u128, String)>> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["event"] == "turn_started" {
            let turn = entry["turn_id"].as_str().unwrap().to_owned();
            starts.entry(turn).or_default().push((
                entry["at_ms"].as_u64().unwrap() as u128,
                entry["thread_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let mut redispatched = 0;
    for (turn, dispatches) in &starts {
        let ws = turn_session.get(turn).unwrap_or_else(|| {
            panic!("dispatched turn {turn} is not an implementation turn of the task (seed {seed})")
        });
        for (_, thread) in dispatches {
            assert_eq!(
                thread, &thread_of[ws],
                "turn {turn} ran on a different thread (seed {seed})"
            );
        }
        for pair in dispatches.windows(2) {
            let crashed_between = kills_at.iter().any(|k| *k >= pair[0].0 && *k <= pair[1].0);
            assert!(
                crashed_between,
                "turn {turn} was dispatched twice without a crash in between (seed {seed})"
            );
            redispatched += 1;
        }
        if let (Some(done), Some((last, _))) = (completed_at.get(turn), dispatches.last()) {
            assert!(
                *last <= *done,
                "turn {turn} was dispatched after it was recorded complete (seed {seed})"
            );
        }
    }
    for session in sessions {
        let ws = session["id"].as_str().unwrap();
        assert!(
            turn_session
                .iter()
                .any(|(t, s)| s == ws && completed_at.contains_key(t)),
            "work session {ws} has no completed turn"
        );
    }
    eprintln!(
        "crash test: {} turns dispatched, {redispatched} re-dispatches after crashes",
        starts.len()
    );
    child.kill().await.unwrap();
}

/// RFC 3339 to Unix milliseconds without pulling a date crate into the test.
mod chrono_like {
    pub struct Timestamp(pub u128);
    impl std::str::FromStr for Timestamp {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, Self::Err> {
            // 2026-11-26T05:00:07.672260Z
            let parse = |r: std::ops::Range<usize>| {
                s.get(r)
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| s.to_owned())
            };
            let (y, mo, d, h, mi, se) = (
                parse(0..4)?,
                parse(5..7)?,
                parse(8..10)?,
                parse(11..13)?,
                parse(14..16)?,
                parse(17..19)?,
            );
            let frac: String = s
                .get(19..)
                .unwrap_or("")
                .trim_start_matches('.')
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let millis = format!("{frac:0<3}")[..3]
                .parse::<i64>()
                .map_err(|_| s.to_owned())?;
            // Days from civil (Howard Hinnant's algorithm).
            let (y2, m2) = if mo <= 2 {
                (y - 1, mo + 9)
            } else {
                (y, mo - 3)
            };
            let era = y2.div_euclid(400);
            let yoe = y2 - era * 400;
            let doy = (153 * m2 + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            Ok(Timestamp(
                (((days * 24 + h) * 60 + mi) * 60 + se) as u128 * 1000 + millis as u128,
            ))
        }
    }
}

backend_tests! {
    async fn twenty_random_sigkills_lose_nothing_and_dispatch_nothing_twice(db) {
        crash_and_recover(db).await;
    }
}
