//! Git isolation across SIGKILLs of the real server: a five-session implementation (two
//! dependency levels) in worktree isolation on a real repository, each session written by our
//! ACP test agent, with `spectask serve` SIGKILLed at chosen moments (turns at work, a file
//! written but not committed, a session just completed) and restarted on the same data directory
//! and database each time. In the end no commit is lost or duplicated, dependency order holds,
//! the user's tree is untouched, and after approval no worktree or session branch is left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, TestRepo};
use tokio::process::Child;

use crate::support::{get_json, on_both_databases, post_json, start, wait_for};

/// The plan's tasks: key, title, dependencies and the file its session writes.
const TASKS: [(&str, &str, &str, &str); 5] = [
    ("1", "Schema", "", "db/schema.sql"),
    ("2", "Config", "", "config/app.toml"),
    ("3", "Models", "1", "src/models.rs"),
    ("4", "Endpoints", "2, 3", "src/api.rs"),
    ("5", "Docs", "4", "docs/guide.md"),
];

fn plan_reply() -> String {
    let mut plan = String::new();
    for (key, title, deps, _) in TASKS {
        plan.push_str(&format!("- [ ] {key}. {title}\n"));
        if !deps.is_empty() {
            plan.push_str(&format!("  - Depends on: {deps}\n"));
        }
        plan.push_str("  - _Requirements: 1.1_\n");
    }
    format!(
        "# Requirements: Crash in git\n\n1.1 WHEN killed THE SYSTEM SHALL keep every commit once.\n\n\
         ## Open Questions\n\n- None.\n\n# Design: Crash in git\n\nIdempotent settle.\n\n\
         # Implementation Plan: Crash in git\n\n{plan}"
    )
}

fn content(key: &str) -> String {
    format!("written by the session of task {key}\n")
}

/// The test agent's script: each task's session streams for a while, writes its file, streams
/// again and ends (a re-run after a kill does the same, writing the same content).
fn agent_script() -> Value {
    let rules: Vec<Value> = TASKS
        .iter()
        .map(|(key, _, _, file)| {
            json!({
                "prompt_contains": format!("Task {key}:"),
                "steps": [
                    {"kind": "chunks", "count": 4, "delay_ms": 150},
                    {"kind": "write_file", "path": file, "content": content(key)},
                    {"kind": "chunks", "count": 8, "delay_ms": 150},
                ],
            })
        })
        .collect();
    json!({"steps": [{"kind": "chunks", "count": 1}], "rules": rules})
}

/// The server's work sessions by plan key.
async fn sessions(client: &reqwest::Client, base: &str, id: &str) -> BTreeMap<String, Value> {
    let body = get_json(
        client,
        format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
    )
    .await;
    body["work_sessions"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|ws| {
                    let index = usize::try_from(ws["implementation_task_index"].as_i64()?).ok()?;
                    Some((TASKS.get(index)?.0.to_owned(), ws.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Each session's status, error and turns (kind, status, attempts, error): what a failed wait
/// reports.
async fn progress(client: &reqwest::Client, base: &str, id: &str) -> String {
    let mut out = String::new();
    for (key, ws) in sessions(client, base, id).await {
        let detail = get_json(
            client,
            format!(
                "{base}/api/v1/work-sessions/{}",
                ws["id"].as_str().unwrap_or_default()
            ),
        )
        .await;
        let turns: Vec<String> = detail["turns"]
            .as_array()
            .map(|turns| {
                turns
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {} x{} {}",
                            t["kind"], t["status"], t["attempts"], t["error"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "[{key}: {} {} {turns:?}] ",
            ws["status"], ws["error"]
        ));
    }
    out
}

/// Whether the session of `key` has a running turn.
async fn turn_running(client: &reqwest::Client, base: &str, ws: &Value) -> bool {
    let Some(id) = ws["id"].as_str() else {
        return false;
    };
    let detail = get_json(client, format!("{base}/api/v1/work-sessions/{id}")).await;
    detail["turns"]
        .as_array()
        .is_some_and(|turns| turns.iter().any(|t| t["status"] == "running"))
}

/// A moment to kill the server at, as seen through the API and in the session's worktree.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Both sessions of the first level have a running turn.
    FirstLevelRunning,
    /// The session's file is in its worktree (written, not committed yet), or the session is
    /// already completed (the window was missed: the kill then lands after its completion).
    Written(&'static str),
    /// The session has just completed (its merge recorded).
    Completed(&'static str),
    /// The session's turn is running.
    Running(&'static str),
}

async fn reached(client: &reqwest::Client, base: &str, id: &str, moment: Moment) -> Option<String> {
    let all = sessions(client, base, id).await;
    let file_of = |key: &str| TASKS.iter().find(|t| t.0 == key).map(|t| t.3);
    match moment {
        Moment::FirstLevelRunning => {
            let (one, two) = (all.get("1")?, all.get("2")?);
            (turn_running(client, base, one).await && turn_running(client, base, two).await)
                .then(|| "sessions 1 and 2 at work".to_owned())
        }
        Moment::Written(key) => {
            let ws = all.get(key)?;
            if ws["status"] == "completed" {
                return Some(format!("session {key} completed (its write was missed)"));
            }
            let worktree = ws["worktree_path"].as_str()?;
            Path::new(worktree)
                .join(file_of(key)?)
                .exists()
                .then(|| format!("session {key}'s file written, not committed"))
        }
        Moment::Completed(key) => {
            (all.get(key)?["status"] == "completed").then(|| format!("session {key} completed"))
        }
        Moment::Running(key) => {
            let ws = all.get(key)?;
            if ws["status"] == "completed" {
                return Some(format!("session {key} completed (its turn was missed)"));
            }
            turn_running(client, base, ws)
                .await
                .then(|| format!("session {key} at work"))
        }
    }
}

const KILLS: [Moment; 8] = [
    Moment::FirstLevelRunning,
    Moment::Written("1"),
    Moment::Completed("1"),
    Moment::Written("3"),
    Moment::Completed("3"),
    Moment::Running("4"),
    Moment::Completed("4"),
    Moment::Written("5"),
];

/// SIGKILLs the server and waits for it to be gone.
async fn kill(child: &mut Child) {
    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().await.unwrap();
}

/// Git's output (stdout and stderr) for `args` in `repo`.
fn git_output(repo: &Path, args: &[&str]) -> (String, String) {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {output:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn git_survives_sigkills(extra: &[&str]) {
    let Some(agent) = spectask_testkit::require_test_agent() else {
        return;
    };
    let repo = TestRepo::new();
    let user_head = repo.rev("HEAD");
    let cwd = tempfile::tempdir().unwrap();
    let data_dir = cwd.path().join(".spectask");
    std::fs::create_dir_all(&data_dir).unwrap();
    let agent_state = cwd.path().join("agent-state");
    std::fs::create_dir_all(&agent_state).unwrap();
    let config = format!(
        "default_agent = \"test\"\n\n[agents.test]\ncommand = '{agent}'\n\
         env = {{ SPECTASK_TEST_AGENT_SCRIPT = '{script}', SPECTASK_TEST_AGENT_STATE = '{state}' }}\n\
         state_dirs = ['{state}']\n",
        agent = agent.display(),
        script = agent_script(),
        state = agent_state.display(),
    );
    std::fs::write(data_dir.join("spectask.toml"), config).unwrap();
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply(&plan_reply());
    let base_url = fake.base_url();
    let mut args = vec![
        "--llm-base-url",
        &base_url,
        "--llm-model",
        "fake",
        "--llm-api-key",
        "k",
        "--turn-lease-secs",
        "2",
        "--max-parallel-threads",
        "3",
    ];
    args.extend_from_slice(extra);
    let client = reqwest::Client::new();

    let (mut child, mut base) = start(cwd.path(), &args).await;
    let created = post_json(
        &client,
        format!("{base}/api/v1/spec-tasks/from-prompt"),
        &json!({"prompt": "Build five things in git and survive kills", "project_path": repo.path().to_str().unwrap()}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for("the specs", || {
        let (client, url) = (client.clone(), format!("{base}/api/v1/spec-tasks/{id}"));
        async move { (get_json(&client, url).await["status"] == "spec_review").then_some(()) }
    })
    .await;
    let approved = client
        .post(format!("{base}/api/v1/spec-tasks/{id}/approve-specs"))
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), reqwest::StatusCode::OK);

    for moment in KILLS {
        let seen = spectask_testkit::wait_until(&format!("{moment:?}"), || async {
            match reached(&client, &base, &id, moment).await {
                Some(seen) => Ok(seen),
                None => Err(progress(&client, &base, &id).await),
            }
        })
        .await;
        kill(&mut child).await;
        eprintln!("git sigkill: killed at {moment:?}: {seen}");
        (child, base) = start(cwd.path(), &args).await;
    }
    spectask_testkit::wait_until("implementation review", || async {
        let task = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}")).await;
        if task["status"] == "implementation_review" {
            Ok(())
        } else {
            Err(format!(
                "{}; {}",
                task["status"],
                progress(&client, &base, &id).await
            ))
        }
    })
    .await;

    // Merged worktrees are removed and forgotten (by the turn, or by the reaper after a kill).
    let all = spectask_testkit::wait_until("every merged worktree removed and forgotten", || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            let all = sessions(&client, &base, &id).await;
            let stale: Vec<String> = all
                .values()
                .filter_map(|ws| ws["worktree_path"].as_str().map(str::to_owned))
                .collect();
            if stale.is_empty() {
                Ok(all)
            } else {
                let there: Vec<bool> = stale.iter().map(|p| Path::new(p).exists()).collect();
                Err(format!(
                    "recorded worktrees {stale:?}, directories there: {there:?}"
                ))
            }
        }
    })
    .await;
    let task = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}")).await;
    let branch = task["branch_name"].as_str().unwrap().to_owned();
    let base_commit = task["base_commit"].as_str().unwrap().to_owned();
    assert_eq!(base_commit, user_head);
    assert_eq!(
        task["head_commit"].as_str(),
        Some(repo.rev(&branch).as_str())
    );
    assert_eq!(all.len(), 5, "{all:#?}");

    // Each session: completed with exactly one commit, recorded once, on the task branch.
    let on_branch: BTreeSet<String> = repo
        .git(&[
            "rev-list",
            "--no-merges",
            &format!("{base_commit}..{branch}"),
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    let session_messages = repo.git(&["log", "--no-merges", "--format=%B", &branch]);
    let merge_messages = repo.git(&["log", "--merges", "--format=%B", &branch]);
    let mut commit_of = BTreeMap::new();
    for (key, _, _, file) in TASKS {
        let ws = &all[key];
        let ws_id = ws["id"].as_str().unwrap();
        assert_eq!(ws["status"], "completed", "{ws:#?}");
        let commits: Vec<&str> = ws["commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            commits.len(),
            1,
            "session {key}: one commit, recorded once: {ws:#?}"
        );
        assert!(
            on_branch.contains(commits[0]),
            "session {key}'s commit is on {branch}"
        );
        let trailer = format!("Spectask-Work-Session: {ws_id}");
        assert_eq!(
            session_messages
                .lines()
                .filter(|l| l.trim() == trailer)
                .count(),
            1,
            "session {key} committed once:\n{session_messages}"
        );
        assert!(
            merge_messages
                .lines()
                .filter(|l| l.trim() == trailer)
                .count()
                <= 1,
            "session {key} merged at most once (none when fast-forwarded):\n{merge_messages}"
        );
        assert_eq!(
            repo.show(&branch, file),
            Some(content(key)),
            "{file} on {branch}"
        );
        commit_of.insert(key, commits[0].to_owned());
    }
    assert_eq!(
        on_branch.len(),
        5,
        "no session commit but the five recorded: {on_branch:?}"
    );
    for (key, _, deps, _) in TASKS {
        for dep in deps.split(", ").filter(|d| !d.is_empty()) {
            assert!(
                repo.is_ancestor(&commit_of[dep], &commit_of[key]),
                "task {key} was built on its dependency {dep}'s commit"
            );
        }
    }
    // The user's working tree, HEAD and branch are untouched (planning writes `.spectask/`).
    assert!(
        ["", "?? .spectask/"].contains(&repo.status().as_str()),
        "{}",
        repo.status()
    );
    assert_eq!(repo.current_branch(), "main");
    assert_eq!(repo.rev("HEAD"), user_head);
    assert_eq!(repo.rev("main"), user_head);

    // Approval ends the task: the reaper removes every worktree and session branch.
    let done = client
        .post(format!(
            "{base}/api/v1/spec-tasks/{id}/approve-implementation"
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), reqwest::StatusCode::OK);
    let task_worktrees = data_dir.join("worktrees").join(&id);
    wait_for("the task's worktrees and session branches removed", || {
        let gone = repo.branches(&format!("{branch}--")).is_empty() && !task_worktrees.exists();
        async move { gone.then_some(()) }
    })
    .await;
    let (list, _) = git_output(&repo.path(), &["worktree", "list", "--porcelain"]);
    let listed: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .collect();
    assert_eq!(
        listed,
        [format!("worktree {}", repo.path().display())],
        "{list}"
    );
    let (out, err) = git_output(&repo.path(), &["worktree", "prune", "--dry-run", "-v"]);
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("", ""),
        "nothing stale to prune"
    );
    assert_eq!(
        repo.branches("spectask/"),
        vec![branch.clone()],
        "the task branch stays"
    );
    assert_eq!(repo.rev(&branch), task["head_commit"].as_str().unwrap());
    child.kill().await.unwrap();
}

on_both_databases! {
    git_survives_sigkills:
        sqlite_git_work_survives_sigkills,
        postgres_git_work_survives_sigkills
}
