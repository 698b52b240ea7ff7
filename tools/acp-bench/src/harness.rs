//! What both measurements share: the test agent binary, a fresh database, a server in this
//! process with a fake planner and the ACP runtime, tasks taken to `spec_review`, a live SSE
//! subscriber, and resident memory read from `/proc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use spectask_engine::{EngineSettings, PlannerRegistry};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
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

/// A server whose agent is the test agent running `script`, and its planner.
pub struct Bench {
    pub app: TestApp,
    pub planner: FakeOpenAi,
    pub workspace: tempfile::TempDir,
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
            .with_env("SPECTASK_TEST_AGENT_STATE", state.path().to_string_lossy());
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
        Ok(Self {
            app,
            planner,
            workspace,
            _state: state,
        })
    }

    /// Creates a task planned with `tasks` top-level tasks and waits for its `spec_review`.
    pub async fn planned_task(&self, tasks: u32) -> Result<String> {
        self.planner.push_text_reply(&plan(tasks));
        let task = self
            .app
            .post(
                "/api/v1/spec-tasks/from-prompt",
                &json!({"prompt": "stream", "project_path": self.workspace.path()}),
            )
            .await;
        let id = task.body["id"]
            .as_str()
            .with_context(|| format!("no task id: {}", task.body))?
            .to_owned();
        self.wait_for(&id, "spec_review", Duration::from_secs(30))
            .await?;
        Ok(id)
    }

    pub async fn approve(&self, id: &str) -> Result<()> {
        let approved = self
            .app
            .post(
                &format!("/api/v1/spec-tasks/{id}/approve-specs"),
                &json!({"approved": true}),
            )
            .await;
        anyhow::ensure!(
            approved.status.is_success(),
            "approve {id}: {}",
            approved.body
        );
        Ok(())
    }

    pub async fn wait_for(&self, id: &str, status: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let task = self.app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
            if task["status"] == status {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("task {id} never reached {status}: it is {}", task["status"]);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stored responses of a task's work sessions (first interaction of each).
    pub async fn stored_responses(&self, id: &str) -> Result<Vec<String>> {
        let sessions = self
            .app
            .get(&format!("/api/v1/spec-tasks/{id}/work-sessions"))
            .await
            .body;
        let mut responses = Vec::new();
        for ws in sessions["work_sessions"]
            .as_array()
            .context("no work sessions")?
        {
            let detail = self
                .app
                .get(&format!(
                    "/api/v1/work-sessions/{}",
                    ws["id"].as_str().unwrap_or_default()
                ))
                .await
                .body;
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
    /// event, with the time it arrived.
    pub async fn subscribe(&self) -> Result<(JoinHandle<()>, mpsc::UnboundedReceiver<Received>)> {
        let response = self
            .app
            .client
            .get(self.app.url("/api/v1/events/stream"))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "event stream refused");
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer = String::new();
            let mut stream = response.bytes_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                let at = SystemTime::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let message: String = buffer.drain(..end + 2).collect();
                    if !message.contains("event: interaction.updated") {
                        continue;
                    }
                    for line in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if let Ok(event) = serde_json::from_str::<Value>(line)
                            && tx.send(Received { at, event }).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ok((reader, rx))
    }
}

/// One `interaction.updated` event as the subscriber got it.
#[derive(Debug)]
pub struct Received {
    pub at: SystemTime,
    pub event: Value,
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
