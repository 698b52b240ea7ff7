//! The set-up of the `spectask task …` tests: a real `spectask serve` with a loopback planner
//! (two revisions of a four-task spec) and our scripted ACP test agent, the binary run against
//! it, and each `--json` answer checked against the server's OpenAPI schema.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, TestRepo};
use tokio::process::Child;

use crate::support;

/// The marker of the follow-up message, and of the spawned session's description.
pub const FOLLOW_UP: &str = "FOLLOWUP-7";
pub const SPAWNED: &str = "SPAWNED-7";

/// A planner reply that satisfies the output contract: three parts and a fourth task that
/// depends on them. Revision 2 adds a requirement.
fn spec_reply(revision: u32) -> String {
    let extra = if revision > 1 {
        "\n## Requirement 2\n\n**User Story:** As a reviewer, I want the parts signed.\n\n\
         ### Acceptance Criteria\n\n1. WHEN a part is written THE SYSTEM SHALL sign it.\n"
    } else {
        ""
    };
    format!(
        "# Requirements: Greeting parts\n\n## Requirement 1\n\n**User Story:** As a user, I want \
         a greeting in three parts.\n\n### Acceptance Criteria\n\n\
         1. WHEN part one is written THE SYSTEM SHALL say hello.\n\
         2. WHEN part two is written THE SYSTEM SHALL say dear.\n\
         3. WHEN part three is written THE SYSTEM SHALL say world.\n{extra}\n\
         # Design: Greeting parts\n\n## Overview\n\nEach part is one file.\n\n\
         # Implementation Plan: Greeting parts\n\n\
         - [ ] 1. Write part one\n  - _Requirements: 1.1_\n\
         - [ ] 2. Write part two\n  - _Requirements: 1.2_\n\
         - [ ] 3. Write part three\n  - _Requirements: 1.3_\n\
         - [ ] 4. Wire the parts together\n  - Depends on: 1, 2, 3\n  - _Requirements: 1.1_\n"
    )
}

/// Parts one and three ask a person's permission first; part two runs until cancelled; part
/// three, once allowed, refuses (and, with no retries, fails: the last thing the test does, as a
/// failed task's agent is stopped); follow-ups and spawned sessions answer at once.
fn agent_script() -> Value {
    let says = |text: &str| json!([{"kind": "message", "text": format!("{text}\n")}]);
    json!({
        "steps": says("Wired the parts together."),
        "rules": [
            {"prompt_contains": SPAWNED, "steps": says("Spawned work done.")},
            {"prompt_contains": FOLLOW_UP, "steps": says("Follow-up acknowledged.")},
            {"prompt_contains": "Task 1: Write part one", "steps": [
                {"kind": "request_permission", "title": "Run the part-one check"},
                {"kind": "message", "text": "Part one done.\n"}]},
            {"prompt_contains": "Task 2: Write part two", "steps": [{"kind": "hang"}]},
            {"prompt_contains": "Task 3: Write part three", "steps": [
                {"kind": "request_permission", "title": "Open the part-three gate"},
                {"kind": "stop", "reason": "refusal"}]},
        ],
    })
}

/// A server with a planner and the test agent, its OpenAPI document, and a project to work on.
pub struct Harness {
    cwd: tempfile::TempDir,
    repo: TestRepo,
    url: String,
    server: Child,
    openapi: Value,
    http: reqwest::Client,
    _planner: FakeOpenAi,
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON document it printed.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not one JSON document ({err}): {}", self.stdout))
    }
}

impl Harness {
    pub async fn start(agent: &Path, extra: &[&str]) -> Self {
        let planner = FakeOpenAi::start().await;
        planner.push_text_reply(&spec_reply(1));
        planner.push_text_reply(&spec_reply(2));
        let repo = TestRepo::new();
        let cwd = tempfile::tempdir().unwrap();
        support::configure_test_agent(cwd.path(), agent, &agent_script());
        let base_url = planner.base_url();
        let mut args = vec![
            "--llm-base-url",
            &base_url,
            "--llm-model",
            "fake-planner",
            "--max-turn-retries",
            "0",
        ];
        args.extend_from_slice(extra);
        let (server, url) = support::start(cwd.path(), &args).await;
        let http = reqwest::Client::new();
        let openapi = support::get_json(&http, format!("{url}/api/v1/openapi.json")).await;
        Self {
            cwd,
            repo,
            url,
            server,
            openapi,
            http,
            _planner: planner,
        }
    }

    pub fn project(&self) -> PathBuf {
        self.repo.path()
    }

    /// Runs `spectask <args> --server <url>` in the server's directory (so its token is found).
    pub async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = support::command(self.cwd.path());
        cmd.args(args)
            .args(["--server", &self.url])
            .stdout(Stdio::piped());
        let output = cmd.output().await.unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed, and returns what it printed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "{args:?} failed: {}{}", run.stderr, run.stdout);
        run.stdout
    }

    /// Runs a command with `--json` that must succeed, checks its answer against the OpenAPI
    /// schema `schema`, and returns it.
    pub async fn json(&self, args: &[&str], schema: &str) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let run = self.run(&args).await;
        assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
        let value = run.json();
        assert_matches_schema(&self.openapi, schema, &value);
        value
    }

    /// Runs a command the server must refuse with `status`: exit code 3, its code printed (`code`
    /// checked when not empty).
    pub async fn refused(&self, args: &[&str], status: u16, code: &str) -> Run {
        let run = self.run(args).await;
        assert_eq!(run.code, 3, "{args:?}: {}{}", run.stderr, run.stdout);
        assert!(
            run.stderr.contains(&format!("({status} {code}")),
            "{args:?}: {}",
            run.stderr
        );
        run
    }

    pub async fn get(&self, path: &str) -> Value {
        support::get_json(&self.http, format!("{}/api/v1{path}", self.url)).await
    }

    /// Waits until task `id` is in `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        support::wait_for(&format!("{id} in {status}"), || async {
            let task = self.get(&format!("/spec-tasks/{id}")).await;
            (task["status"] == status).then_some(task)
        })
        .await
    }

    /// Creates a task from the CLI and waits for its first revision.
    pub async fn task_in_review(&self) -> String {
        let project = self.project();
        let printed = self
            .ok(&[
                "task",
                "create",
                "Write a greeting in three parts",
                "--project",
                project.to_str().unwrap(),
            ])
            .await;
        assert!(printed.starts_with("Created spt_"), "{printed}");
        let id = first_word_with(&printed, "spt_");
        assert!(
            printed.contains(&format!("spectask task follow {id}")),
            "{printed}"
        );
        self.wait_for_status(&id, "spec_review").await;
        id
    }

    /// The task's work session running plan task `key`.
    pub async fn session_of(&self, id: &str, key: u32) -> Value {
        let list = self.get(&format!("/spec-tasks/{id}/work-sessions")).await;
        list["work_sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ws| ws["implementation_task_title"] == title(key))
            .cloned()
            .unwrap_or_else(|| panic!("no session for task {key}: {list}"))
    }

    /// Waits until the work session running plan task `key` is in `status`; returns its id.
    pub async fn wait_for_session(&self, id: &str, key: u32, status: &str) -> String {
        support::wait_for(&format!("task {key} of {id} {status}"), || async {
            let list = self.get(&format!("/spec-tasks/{id}/work-sessions")).await;
            let sessions = list["work_sessions"].as_array()?.clone();
            let ws = sessions
                .iter()
                .find(|ws| ws["implementation_task_title"] == title(key))?;
            (ws["status"] == status).then(|| ws["id"].as_str().unwrap().to_owned())
        })
        .await
    }

    pub async fn stop(mut self) {
        self.server.start_kill().unwrap();
        let _ = self.server.wait().await;
    }
}

/// The title of plan task `key` in [`spec_reply`].
pub fn title(key: u32) -> &'static str {
    [
        "Write part one",
        "Write part two",
        "Write part three",
        "Wire the parts together",
    ][key as usize - 1]
}

/// The first whitespace-separated word of `text` starting with `prefix`, without punctuation.
fn first_word_with(text: &str, prefix: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| word.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in {text}"))
        .to_owned()
}

/// Checks `value` against `#/components/schemas/<name>` of the OpenAPI document `doc`.
pub fn assert_matches_schema(doc: &Value, name: &str, value: &Value) {
    assert!(
        doc["components"]["schemas"][name].is_object(),
        "no schema {name} in the OpenAPI document"
    );
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|err| format!("{} at {}", err, err.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
}
