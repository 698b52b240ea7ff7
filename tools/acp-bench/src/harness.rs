//! What both measurements share: the test agent binary, a fresh database, a server in this
//! process with a fake planner and the ACP runtime, tasks taken to `spec_review`, a live SSE
//! subscriber, and resident memory read from `/proc`.
//!
//! No wait here is unbounded, and none has a fixed total duration either: every wait gives up
//! once nothing has moved for `--stall-secs` (no status change, no event on the live stream),
//! and fails at once when the task reaches a state it cannot leave towards the one awaited. The
//! error says what was awaited and how far things got. Every request has the same bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use spectask_engine::{EngineSettings, PlannerRegistry};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_runtimes::agent::sandbox::SandboxSettings;
use spectask_runtimes::agent::shim::AgentShim;
use spectask_testkit::{FakeOpenAi, TestApp, TestDatabase, TestOptions, fast_planner};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where the server stores its data.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The test agent binary (default: next to this executable).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// The `spectask` binary, which every agent runs under as its supervisor shim (default: next
    /// to this executable).
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// Run on PostgreSQL: a URL on the server whose user may create databases (e.g. a database
    /// you created); each run gets a fresh database there, dropped afterwards. Default: a fresh
    /// SQLite file.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Give up (exit non-zero, saying what was awaited and how far it got) once nothing has moved
    /// for this long: no task status change, no event on the live stream, no answer to a request.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_secs: u64,
}

impl Common {
    /// The agent shim (the `spectask` binary), checked to exist, recording into `run_dir`.
    pub fn shim(&self, run_dir: &Path) -> Result<AgentShim> {
        let program = match &self.shim {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable has no directory")?
                .join("spectask"),
        };
        anyhow::ensure!(
            program.is_file(),
            "agent shim not found at {} (build spectask)",
            program.display()
        );
        Ok(AgentShim {
            program,
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// The test agent, checked to exist.
    pub fn agent(&self) -> Result<PathBuf> {
        let agent = match &self.agent {
            Some(path) => path.clone(),
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
        Ok(agent)
    }

    pub async fn database(&self) -> TestDatabase {
        match &self.postgres {
            Some(url) => TestDatabase::postgres_on(url).await,
            None => TestDatabase::sqlite().await,
        }
    }

    /// How long nothing may move before the bench gives up.
    pub fn stall(&self) -> Duration {
        Duration::from_secs(self.stall_secs)
    }

    /// `sqlite` or `postgres`.
    pub fn database_kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// A plan of `tasks` top-level tasks.
pub fn plan(tasks: u32) -> String {
    let tasks: String = (1..=tasks)
        .map(|n| format!("- [ ] {n}. Stream {n}\n"))
        .collect();
    format!(
        "# Requirements: Bench\n\n1.1 WHEN streaming THE SYSTEM SHALL keep up.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Bench\n\nFast.\n\n# Implementation Plan: Bench\n\n{tasks}"
    )
}

/// Statuses a task does not leave on its own: a wait for another one fails at once.
const SETTLED: &[&str] = &["spec_failed", "implementation_failed", "done"];

/// A server whose agent is the test agent running `script`, and its planner.
pub struct Bench {
    pub app: TestApp,
    pub planner: FakeOpenAi,
    pub workspace: tempfile::TempDir,
    /// For the bench's own requests: each one bounded by the stall limit.
    http: reqwest::Client,
    stall: Duration,
    _state: tempfile::TempDir,
}

impl Bench {
    pub async fn start(
        common: &Common,
        agent: &Path,
        script: &Value,
        engine: EngineSettings,
    ) -> Result<Self> {
        let workspace = tempfile::tempdir()?;
        let state = tempfile::tempdir()?;
        let profile = AcpProfile::new("bench", agent.to_string_lossy(), Vec::<String>::new())
            .with_env("SPECTASK_TEST_AGENT_SCRIPT", script.to_string())
            .with_env("SPECTASK_TEST_AGENT_STATE", state.path().to_string_lossy())
            // The test agent keeps its sessions in its state directory: unless that is writable
            // in the agent's sandbox, every `session/new` fails and no turn ever runs.
            .with_sandbox(
                SandboxSettings::default()
                    .with_state([state.path().to_string_lossy()], Vec::<String>::new()),
            );
        let runtime = AcpRuntime::new(
            vec![profile],
            Some("bench".to_owned()),
            common.shim(&state.path().join("run"))?,
        );
        let planner = FakeOpenAi::start().await;
        let options = TestOptions {
            planners: PlannerRegistry::new(Some(fast_planner("default", &planner.base_url())), []),
            engine,
            runtime: Some(Arc::new(runtime)),
            ..TestOptions::default()
        };
        let app = TestApp::spawn_with_options(common.database().await, options).await;
        let http = reqwest::Client::builder()
            .timeout(common.stall())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            app,
            planner,
            workspace,
            http,
            stall: common.stall(),
            _state: state,
        })
    }

    /// How long nothing may move before the bench gives up.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// `GET path` as JSON; fails on an error status, a non-JSON body or no answer in time.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(self.app.url(path))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        Self::json(response, "GET", path).await
    }

    /// `POST path` with a JSON body; fails like [`Bench::get_json`].
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(self.app.url(path))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        Self::json(response, "POST", path).await
    }

    async fn json(response: reqwest::Response, method: &str, path: &str) -> Result<Value> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading the body"))?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// Creates a task planned with `tasks` top-level tasks and waits for its `spec_review`.
    pub async fn planned_task(&self, tasks: u32) -> Result<String> {
        self.planner.push_text_reply(&plan(tasks));
        let task = self
            .post_json(
                "/api/v1/spec-tasks/from-prompt",
                &json!({"prompt": "stream", "project_path": self.workspace.path()}),
            )
            .await?;
        let id = task["id"]
            .as_str()
            .with_context(|| format!("no task id: {task}"))?
            .to_owned();
        self.wait_for(&id, "spec_review", None).await?;
        Ok(id)
    }

    pub async fn approve(&self, id: &str) -> Result<()> {
        self.post_json(
            &format!("/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": true}),
        )
        .await
        .with_context(|| format!("approving the specs of {id}"))?;
        Ok(())
    }

    /// Waits until task `id` is `status`. Fails at once if it settles elsewhere (a failed task),
    /// and once nothing has moved for the stall limit: neither its status nor the count of events
    /// `stream` (if any) received. The error names the task's and its work sessions' states.
    pub async fn wait_for(
        &self,
        id: &str,
        status: &str,
        stream: Option<&Subscriber>,
    ) -> Result<()> {
        let mut seen = (String::new(), 0u64);
        let mut moved = Instant::now();
        loop {
            let task = self.get_json(&format!("/api/v1/spec-tasks/{id}")).await?;
            let now = task["status"].as_str().unwrap_or("<none>").to_owned();
            if now == status {
                return Ok(());
            }
            if SETTLED.contains(&now.as_str()) {
                bail!(
                    "task {id} is {now} while waiting for {status}: {}; {}",
                    task["error"].as_str().unwrap_or("no error recorded"),
                    self.sessions_summary(id).await
                );
            }
            let current = (now, stream.map_or(0, Subscriber::events));
            if current != seen {
                seen = current;
                moved = Instant::now();
            } else if moved.elapsed() >= self.stall {
                bail!(
                    "no progress for {} s while waiting for task {id} to reach {status}: it is \
                     {}, {} events received on the live stream; {}",
                    self.stall.as_secs(),
                    seen.0,
                    seen.1,
                    self.sessions_summary(id).await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line on a task's work sessions: how many are in each status, and their errors.
    pub async fn sessions_summary(&self, id: &str) -> String {
        let sessions = match self
            .get_json(&format!("/api/v1/spec-tasks/{id}/work-sessions"))
            .await
        {
            Ok(sessions) => sessions,
            Err(err) => return format!("work sessions unknown: {err:#}"),
        };
        let Some(sessions) = sessions["work_sessions"].as_array() else {
            return "no work sessions".to_owned();
        };
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let mut errors = Vec::new();
        for ws in sessions {
            *counts
                .entry(ws["status"].as_str().unwrap_or("<none>"))
                .or_default() += 1;
            if let Some(error) = ws["error"].as_str() {
                errors.push(error);
            }
        }
        errors.sort_unstable();
        errors.dedup();
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut line = format!("work sessions: {}", counts.join(", "));
        if let Some(first) = errors.first() {
            line.push_str(&format!(" (error: {first}"));
            if errors.len() > 1 {
                line.push_str(&format!(", and {} other errors", errors.len() - 1));
            }
            line.push(')');
        }
        line
    }

    /// The stored responses of a task's work sessions (the first interaction of each). Fails if
    /// a session ran anything but its one completed turn (a failed turn retried): its output
    /// would be counted twice, and the run would have measured recovery rather than relaying.
    pub async fn stored_responses(&self, id: &str) -> Result<Vec<String>> {
        let sessions = self
            .get_json(&format!("/api/v1/spec-tasks/{id}/work-sessions"))
            .await?;
        let mut responses = Vec::new();
        for ws in sessions["work_sessions"]
            .as_array()
            .context("no work sessions")?
        {
            let ws = ws["id"].as_str().context("a work session without an id")?;
            let detail = self
                .get_json(&format!("/api/v1/work-sessions/{ws}"))
                .await?;
            let turns = detail["turns"]
                .as_array()
                .with_context(|| format!("work session {ws} lists no turns"))?;
            if turns.len() != 1 || turns[0]["status"] != "completed" {
                let ran: Vec<String> = turns
                    .iter()
                    .map(|turn| {
                        let mut line = format!(
                            "{} {}",
                            turn["kind"].as_str().unwrap_or("<kind?>"),
                            turn["status"].as_str().unwrap_or("<status?>")
                        );
                        if let Some(error) = turn["error"].as_str() {
                            line.push_str(&format!(": {error}"));
                        }
                        line
                    })
                    .collect();
                bail!(
                    "work session {ws} ran {} turns instead of one completed turn ({}); its \
                     output is not a measurement of the relay",
                    turns.len(),
                    ran.join("; ")
                );
            }
            responses.push(
                detail["helix_session"]["interactions"][0]["response_message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(responses)
    }

    /// A live subscriber to the whole event stream from now on: every `interaction.updated`
    /// event, with the time it arrived, and a count of every event of any kind.
    pub async fn subscribe(&self) -> Result<Subscriber> {
        // No total timeout: the stream lasts as long as the run. Its stalls are found by the
        // waits, which watch the count of events.
        let response = self
            .app
            .client
            .get(self.app.url("/api/v1/events/stream"))
            .send()
            .await
            .context("opening the event stream")?;
        anyhow::ensure!(
            response.status().is_success(),
            "event stream refused: {}",
            response.status()
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let events = Arc::new(AtomicU64::new(0));
        let counted = events.clone();
        let reader = tokio::spawn(async move {
            let mut buffer = String::new();
            let mut stream = response.bytes_stream();
            loop {
                let chunk = match stream.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(err)) => return Err(anyhow::Error::new(err).context("reading it")),
                    None => bail!("the server closed it"),
                };
                let at = SystemTime::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let message: String = buffer.drain(..end + 2).collect();
                    if !message.lines().any(|line| line.starts_with("data: ")) {
                        // A keep-alive comment: the server is up, but nothing moved.
                        continue;
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    if !message.contains("event: interaction.updated") {
                        continue;
                    }
                    for line in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if let Ok(event) = serde_json::from_str::<Value>(line)
                            && tx.send(Received::new(at, &event)).is_err()
                        {
                            // Nobody listens any more.
                            return Ok(());
                        }
                    }
                }
            }
        });
        Ok(Subscriber {
            reader,
            received: rx,
            events,
            stall: self.stall,
        })
    }
}

/// A live subscriber to the event stream (see [`Bench::subscribe`]).
pub struct Subscriber {
    reader: JoinHandle<Result<()>>,
    received: mpsc::UnboundedReceiver<Received>,
    events: Arc<AtomicU64>,
    stall: Duration,
}

impl Subscriber {
    /// How many events of any kind the stream has delivered so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The next `interaction.updated` event. Fails when none arrived within the stall limit, or
    /// when the stream ended (with its reason); the error names `what` was awaited.
    pub async fn next(&mut self, what: &str) -> Result<Received> {
        match tokio::time::timeout(self.stall, self.received.recv()).await {
            Ok(Some(update)) => Ok(update),
            Ok(None) => {
                let why = match (&mut self.reader).await {
                    Ok(Ok(())) => "it was stopped".to_owned(),
                    Ok(Err(err)) => format!("{err:#}"),
                    Err(err) => format!("its reader failed: {err}"),
                };
                bail!("the live event stream ended while waiting for {what}: {why}")
            }
            Err(_) => bail!(
                "no update for {} s on the live event stream while waiting for {what}",
                self.stall.as_secs()
            ),
        }
    }

    /// Stops reading the stream.
    pub fn stop(self) {
        self.reader.abort();
    }
}

/// One `interaction.updated` event as the subscriber got it: only what the benches read, so a
/// run's hundreds of thousands of events do not weigh on the memory measured beside the server.
#[derive(Debug)]
pub struct Received {
    pub at: SystemTime,
    /// The event's `created_at` (stamped in the transaction that wrote it), in microseconds.
    pub written_at: Option<i64>,
    pub turn_id: String,
    pub delta: String,
}

impl Received {
    fn new(at: SystemTime, event: &Value) -> Self {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        Self {
            at,
            written_at: event["created_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros()),
            turn_id: text(&event["payload"]["turn_id"]),
            delta: text(&event["payload"]["delta"]),
        }
    }
}

/// The resident set of process `pid` in KiB (`VmRSS`), if it is readable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The ids of this process's children (the agent processes).
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`; comm may hold spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(me)
        })
        .collect()
}
