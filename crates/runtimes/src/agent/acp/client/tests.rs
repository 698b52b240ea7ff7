//! Tests of the client duties: confinement, protected paths, `~/` expansion, writes by policy,
//! and permission answers with and without a human or the OS sandbox.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agent_client_protocol::v1::schema::{
    PermissionOptionKind, RequestPermissionOutcome, RequestPermissionRequest,
    SelectedPermissionOutcome, WriteTextFileRequest,
};

use super::paths::{expand_home, resolve_in_roots};
use super::*;
/// The instance every test's client belongs to.
fn instance() -> crate::agent::InstanceId {
    crate::agent::InstanceId::parse("zin_00000000000000000000000001").unwrap()
}

async fn permission(state: &ClientState, path: &Path) -> RequestPermissionOutcome {
    use agent_client_protocol::v1::schema::{
        PermissionOption, ToolCallLocation, ToolCallUpdate, ToolCallUpdateFields,
    };
    let request = RequestPermissionRequest::new(
        "s1",
        ToolCallUpdate::new(
            "t1",
            ToolCallUpdateFields::new()
                .title("Write")
                .locations(vec![ToolCallLocation::new(path)]),
        ),
        vec![
            PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
            PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
        ],
    );
    state.answer_permission(&request).await.outcome
}

/// Answers every `ask` with a fixed choice.
#[derive(Debug)]
struct FixedBroker(Option<&'static str>);

#[async_trait::async_trait]
impl crate::agent::PermissionBroker for FixedBroker {
    async fn ask(&self, ask: crate::agent::PermissionAsk) -> Option<String> {
        assert_eq!(
            ask.options
                .iter()
                .map(|o| o.kind.as_str())
                .collect::<Vec<_>>(),
            ["allow_once", "reject_once"]
        );
        self.0.map(str::to_owned)
    }
}

#[tokio::test]
async fn ask_waits_for_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let state = |broker: Option<&'static str>| ClientState {
        instance_id: instance(),
        workspace: ws.clone(),
        extra_roots: Vec::new(),
        session_cwds: Mutex::default(),
        policy: PermissionPolicy::Ask,
        broker: Some(std::sync::Arc::new(FixedBroker(broker))),
        home: None,
        allow_protected_paths: false,
        grants: Mutex::default(),
        sandbox_active: true,
    };
    let selected =
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("yes".to_owned()));
    assert_eq!(
        permission(&state(Some("yes")), &ws.join("a.txt")).await,
        selected
    );
    assert_eq!(
        permission(&state(None), &ws.join("a.txt")).await,
        RequestPermissionOutcome::Cancelled
    );
    // An answer the agent did not offer grants nothing.
    assert_eq!(
        permission(&state(Some("maybe")), &ws.join("a.txt")).await,
        RequestPermissionOutcome::Cancelled
    );
}

#[tokio::test]
async fn allowing_workspace_edits_rejects_paths_outside_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let state = |policy| ClientState {
        instance_id: instance(),
        workspace: ws.clone(),
        extra_roots: Vec::new(),
        session_cwds: Mutex::default(),
        policy,
        broker: None,
        home: None,
        allow_protected_paths: false,
        grants: Mutex::default(),
        sandbox_active: true,
    };
    let selected = |id: &str| {
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id.to_owned()))
    };
    let allow = state(PermissionPolicy::AllowWorkspaceEdits);
    assert_eq!(permission(&allow, &ws.join("a.txt")).await, selected("yes"));
    assert_eq!(
        permission(&allow, &ws.join("../a.txt")).await,
        selected("no")
    );
    assert_eq!(
        permission(&allow, Path::new("/etc/passwd")).await,
        selected("no")
    );
    let deny = state(PermissionPolicy::Deny);
    assert_eq!(permission(&deny, &ws.join("a.txt")).await, selected("no"));
    let ask = state(PermissionPolicy::Ask);
    assert_eq!(permission(&ask, &ws.join("a.txt")).await, selected("no"));
}

/// Answers every `ask` with `answer` and counts the asks, keeping the last one.
#[derive(Debug, Default)]
struct CountingBroker {
    answer: Option<&'static str>,
    asks: Mutex<Vec<crate::agent::PermissionAsk>>,
}

#[async_trait::async_trait]
impl crate::agent::PermissionBroker for CountingBroker {
    async fn ask(&self, ask: crate::agent::PermissionAsk) -> Option<String> {
        self.asks.lock().unwrap().push(ask);
        self.answer.map(str::to_owned)
    }
}

fn state_in(
    ws: &Path,
    policy: PermissionPolicy,
    broker: Option<std::sync::Arc<CountingBroker>>,
) -> ClientState {
    ClientState {
        instance_id: instance(),
        workspace: ws.to_path_buf(),
        extra_roots: Vec::new(),
        session_cwds: Mutex::default(),
        policy,
        broker: broker.map(|b| b as std::sync::Arc<dyn crate::agent::PermissionBroker>),
        home: Some(ws.join("home")),
        allow_protected_paths: false,
        grants: Mutex::default(),
        sandbox_active: true,
    }
}

async fn write(state: &ClientState, path: &str) -> bool {
    state
        .write_text_file(&WriteTextFileRequest::new("s1", path, "x"))
        .await
        .is_ok()
}

fn request_for(locations: &[&str], raw_input: serde_json::Value) -> RequestPermissionRequest {
    use agent_client_protocol::v1::schema::{
        PermissionOption, ToolCallLocation, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
    };
    RequestPermissionRequest::new(
        "s1",
        ToolCallUpdate::new(
            "t1",
            ToolCallUpdateFields::new()
                .title("Tool")
                .kind(ToolKind::Execute)
                .raw_input(raw_input)
                .locations(
                    locations
                        .iter()
                        .map(ToolCallLocation::new)
                        .collect::<Vec<_>>(),
                ),
        ),
        vec![
            PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
            PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
        ],
    )
}

#[tokio::test]
async fn file_writes_obey_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    assert!(
        write(
            &state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None),
            "a.txt"
        )
        .await
    );
    assert!(ws.join("a.txt").exists());
    assert!(!write(&state_in(&ws, PermissionPolicy::Deny, None), "b.txt").await);
    assert!(!ws.join("b.txt").exists(), "deny writes nothing");
    assert!(
        !write(&state_in(&ws, PermissionPolicy::Ask, None), "c.txt").await,
        "ask without a broker refuses"
    );

    let rejecting = std::sync::Arc::new(CountingBroker::default());
    assert!(
        !write(
            &state_in(&ws, PermissionPolicy::Ask, Some(rejecting.clone())),
            "d.txt"
        )
        .await
    );
    assert!(!ws.join("d.txt").exists());
    let ask = rejecting.asks.lock().unwrap()[0].clone();
    assert_eq!(ask.kind.as_deref(), Some("edit"));
    assert_eq!(ask.locations, [ws.join("d.txt").display().to_string()]);

    let allowing = std::sync::Arc::new(CountingBroker {
        answer: Some("allow"),
        ..Default::default()
    });
    assert!(
        write(
            &state_in(&ws, PermissionPolicy::Ask, Some(allowing.clone())),
            "e.txt"
        )
        .await
    );
    assert!(ws.join("e.txt").exists());
}

#[tokio::test]
async fn a_write_the_human_already_granted_is_not_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let broker = std::sync::Arc::new(CountingBroker {
        answer: Some("yes"),
        ..Default::default()
    });
    let state = state_in(&ws, PermissionPolicy::Ask, Some(broker.clone()));
    let path = ws.join("f.txt");
    let request = request_for(
        &[path.to_str().unwrap()],
        serde_json::json!({"file_path": path}),
    );
    let outcome = state.answer_permission(&request).await.outcome;
    assert_eq!(
        outcome,
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("yes".to_owned()))
    );
    assert!(write(&state, "f.txt").await);
    assert_eq!(
        broker.asks.lock().unwrap().len(),
        1,
        "the write after the grant asks nothing"
    );
    // Granted once: a second write of the same path is asked again (the broker's "yes" is
    // not an option of the write's own request, so it is refused).
    assert!(!write(&state, "f.txt").await);
    assert_eq!(broker.asks.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_ask_shows_kind_command_raw_input_and_locations() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let broker = std::sync::Arc::new(CountingBroker::default());
    let state = state_in(&ws, PermissionPolicy::Ask, Some(broker.clone()));
    let request = request_for(&["src"], serde_json::json!({"command": "cargo test"}));
    state.answer_permission(&request).await;
    let ask = broker.asks.lock().unwrap()[0].clone();
    assert_eq!(ask.kind.as_deref(), Some("execute"));
    assert_eq!(ask.command.as_deref(), Some("cargo test"));
    assert_eq!(
        ask.raw_input,
        Some(serde_json::json!({"command": "cargo test"}))
    );
    assert_eq!(ask.locations, ["src"]);
}

#[tokio::test]
async fn protected_paths_are_refused_under_every_policy_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    let no = RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("no".to_owned()));
    for policy in [
        PermissionPolicy::AllowWorkspaceEdits,
        PermissionPolicy::Ask,
        PermissionPolicy::Deny,
    ] {
        let broker = std::sync::Arc::new(CountingBroker {
            answer: Some("yes"),
            ..Default::default()
        });
        let state = state_in(&ws, policy, Some(broker.clone()));
        for path in [
            ".git/hooks/pre-commit",
            ".git/config",
            "sub/.envrc",
            ".husky/pre-push",
        ] {
            assert!(!write(&state, path).await, "{path} under {policy:?}");
            let request = request_for(&[path], serde_json::json!({}));
            assert_eq!(
                state.answer_permission(&request).await.outcome,
                no,
                "{path} under {policy:?}"
            );
        }
        let command = request_for(
            &[],
            serde_json::json!({"command": "echo x > .git/hooks/post-checkout"}),
        );
        assert_eq!(state.answer_permission(&command).await.outcome, no);
        assert!(
            broker.asks.lock().unwrap().is_empty(),
            "nobody is asked about protected paths"
        );
    }
    assert!(!ws.join(".git/hooks/pre-commit").exists());
    let mut allowed = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
    allowed.allow_protected_paths = true;
    assert!(write(&allowed, ".git/hooks/pre-commit").await);
    assert!(write(&allowed, ".envrc").await);
    // `.github` and `.gitignore` are ordinary files.
    let plain = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
    assert!(write(&plain, ".github/workflows/ci.yml").await);
    assert!(write(&plain, ".gitignore").await);
}

#[tokio::test]
async fn home_relative_paths_resolve_against_the_agents_home() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ws = root.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut state = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
    // HOME outside the workspace: `~/x` lands outside and is refused, not written as `ws/~/x`.
    state.home = Some(root.join("home"));
    assert!(!write(&state, "~/x").await);
    assert!(!ws.join("~").exists());
    let request = request_for(&["~/.bashrc"], serde_json::json!({}));
    let no = RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("no".to_owned()));
    assert_eq!(state.answer_permission(&request).await.outcome, no);
    // HOME is the workspace: `~/x` is the workspace's x.
    state.home = Some(ws.clone());
    assert!(write(&state, "~/x").await);
    assert!(ws.join("x").exists());
    assert!(!write(&state, "~root/x").await, "~user is not supported");
    assert_eq!(
        expand_home(Some(Path::new("/h")), Path::new("~/a/b")).unwrap(),
        PathBuf::from("/h/a/b")
    );
    assert!(expand_home(Some(Path::new("/h")), Path::new("~bob/a")).is_err());
    assert!(expand_home(None, Path::new("~/a")).is_err());
    assert_eq!(
        expand_home(None, Path::new("a/~")).unwrap(),
        PathBuf::from("a/~")
    );
}

#[test]
fn confinement_follows_symlinks_and_refuses_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ws = root.join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    let roots = std::slice::from_ref(&ws);

    assert_eq!(
        resolve_in_roots(roots, &ws, &ws.join("src/new/file.rs")).unwrap(),
        ws.join("src/new/file.rs")
    );
    assert_eq!(
        resolve_in_roots(roots, &ws, Path::new("a.txt")).unwrap(),
        ws.join("a.txt")
    );
    assert!(resolve_in_roots(roots, &ws, &root.join("outside/x")).is_err());
    assert!(resolve_in_roots(roots, &ws, &ws.join("../outside/x")).is_err());
    assert!(resolve_in_roots(roots, &ws, &ws.join("nope/../../outside/x")).is_err());
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.join("outside"), ws.join("link")).unwrap();
        assert!(resolve_in_roots(roots, &ws, &ws.join("link/x")).is_err());
        std::os::unix::fs::symlink(ws.join("src"), ws.join("inner")).unwrap();
        assert_eq!(
            resolve_in_roots(roots, &ws, &ws.join("inner/y")).unwrap(),
            ws.join("src/y")
        );
    }
}

#[tokio::test]
async fn extra_roots_are_open_and_a_worktrees_git_file_is_protected() {
    use agent_client_protocol::v1::schema::ReadTextFileRequest;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ws = root.join("ws");
    let worktrees = root.join("data/worktrees/spt_1");
    let tree = worktrees.join("stws_1");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(root.join("data/worktrees/spt_2")).unwrap();
    std::fs::write(tree.join(".git"), "gitdir: /elsewhere\n").unwrap();
    std::fs::write(root.join("data/api-token"), "secret").unwrap();
    let mut state = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
    let in_tree = tree.join("src/lib.rs");
    // Without the root, its files are outside like any other.
    assert!(!write(&state, in_tree.to_str().unwrap()).await);
    state.extra_roots = vec![worktrees.clone()];
    assert!(write(&state, in_tree.to_str().unwrap()).await);
    assert!(write(&state, ws.join("a.txt").to_str().unwrap()).await);
    for outside in [
        root.join("data/api-token"),
        root.join("data/worktrees/spt_2/x"),
        worktrees.join("../spt_2/x"),
    ] {
        assert!(
            !write(&state, outside.to_str().unwrap()).await,
            "{outside:?}"
        );
    }
    let read = |path: &Path| ReadTextFileRequest::new("s1", path);
    assert!(state.read_text_file(&read(&in_tree)).await.is_ok());
    assert!(
        state
            .read_text_file(&read(&root.join("data/api-token")))
            .await
            .is_err()
    );
    // Relative paths are the session's: in its worktree once it has a cwd there.
    state.set_session_cwd("s1", tree.clone());
    assert!(write(&state, "notes.md").await);
    assert!(tree.join("notes.md").is_file());
    assert!(!ws.join("notes.md").exists());
    // A worktree's `.git` is a file pointing at its git directory: never written, however named.
    let no = RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("no".to_owned()));
    for path in [".git", tree.join(".git").to_str().unwrap()] {
        assert!(!write(&state, path).await, "{path}");
        let request = request_for(&[path], serde_json::json!({}));
        assert_eq!(
            state.answer_permission(&request).await.outcome,
            no,
            "{path}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(tree.join(".git")).unwrap(),
        "gitdir: /elsewhere\n"
    );
    // A `.git` file at the root itself is protected too.
    std::fs::write(worktrees.join(".git"), "gitdir: /elsewhere\n").unwrap();
    assert!(!write(&state, worktrees.join(".git").to_str().unwrap()).await);
}

#[tokio::test]
async fn without_the_sandbox_commands_are_asked_about_not_granted() {
    use agent_client_protocol::v1::schema::{
        PermissionOption, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
    };
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let request = |kind: ToolKind| {
        RequestPermissionRequest::new(
            "s1",
            ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new().title("python3 -c …").kind(kind),
            ),
            vec![
                PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
                PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
            ],
        )
    };
    let state = |sandbox_active, broker: Option<&'static str>| ClientState {
        instance_id: instance(),
        workspace: ws.clone(),
        extra_roots: Vec::new(),
        session_cwds: Mutex::default(),
        policy: PermissionPolicy::AllowWorkspaceEdits,
        broker: broker.map(|answer| {
            std::sync::Arc::new(CountingBroker {
                answer: Some(answer),
                asks: Mutex::default(),
            }) as std::sync::Arc<dyn crate::agent::PermissionBroker>
        }),
        home: None,
        allow_protected_paths: false,
        grants: Mutex::default(),
        sandbox_active,
    };
    let selected = |id: &str| {
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id.to_owned()))
    };
    let answer = |state: ClientState, kind| async move {
        state.answer_permission(&request(kind)).await.outcome
    };
    // Sandboxed: a command cannot write outside, so the policy grants it.
    assert_eq!(
        answer(state(true, None), ToolKind::Execute).await,
        selected("yes")
    );
    // Unsandboxed: commands and fetches go to a human, or are rejected without one.
    assert_eq!(
        answer(state(false, None), ToolKind::Execute).await,
        selected("no")
    );
    assert_eq!(
        answer(state(false, None), ToolKind::Fetch).await,
        selected("no")
    );
    assert_eq!(
        answer(state(false, Some("yes")), ToolKind::Execute).await,
        selected("yes")
    );
    // Edits still follow the path check either way.
    assert_eq!(
        answer(state(false, None), ToolKind::Edit).await,
        selected("yes")
    );
}
