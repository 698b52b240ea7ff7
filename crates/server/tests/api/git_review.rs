//! Reviewing a task branch over the API: the task's and a work session's paged diffs, and
//! approving with a merge into the base branch (fast-forwarding the user's checked-out branch and
//! work tree, a merge commit into a branch nobody has checked out, the refusal of a dirty work
//! tree, and no merge at all by default). The project is a real repository made with the git
//! CLI; the task branch is recorded through the store and its commits made with git here, so
//! these tests do not depend on how the engine creates branches.
//! Every test runs on SQLite and on PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_domain::{SpecTaskId, WorkSessionId, WorkspaceIsolation};
use spectask_store::{SessionWorktree, TaskBranch};
use spectask_testkit::{
    Behaviour, FakeOpenAi, Script, ScriptedRuntime, TestApp, TestDatabase, backend_tests,
    fast_engine,
};
use tempfile::TempDir;

use crate::support::{app_with_runtime, work_sessions};

/// Runs git in `dir` with no user or system configuration; panics on failure; stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A repository on `main` with one commit (`README.md`), beside room for scratch worktrees.
struct Project {
    _dir: TempDir,
    root: PathBuf,
    repo: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let repo = root.join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "# project\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        Project {
            _dir: dir,
            root,
            repo,
        }
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.repo, args)
    }

    fn path(&self) -> &str {
        self.repo.to_str().unwrap()
    }

    fn tip(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// Commits `files` on `branch` in a scratch worktree (the user's tree is not touched).
    fn commit_on(&self, branch: &str, files: &[(String, String)], message: &str) -> String {
        let scratch = self.root.join("scratch");
        self.git(&["worktree", "add", "-q", scratch.to_str().unwrap(), branch]);
        for (path, content) in files {
            let path = scratch.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        git(&scratch, &["add", "-A"]);
        git(&scratch, &["commit", "-q", "-m", message]);
        let tip = git(&scratch, &["rev-parse", "HEAD"]);
        self.git(&["worktree", "remove", "--force", scratch.to_str().unwrap()]);
        tip
    }

    /// What the user sees: HEAD's commit and branch, tracked changes and the README's content.
    fn user_state(&self) -> (String, String, String, String) {
        (
            self.tip("HEAD"),
            self.git(&["symbolic-ref", "HEAD"]),
            self.git(&["status", "--porcelain", "--untracked-files=no"]),
            std::fs::read_to_string(self.repo.join("README.md")).unwrap(),
        )
    }
}

fn files(names: impl IntoIterator<Item = String>) -> Vec<(String, String)> {
    names
        .into_iter()
        .map(|name| {
            let content = format!("{name}\nsecond line\n");
            (name, content)
        })
        .collect()
}

/// Records `branch` (made here at the user's HEAD) as the task's branch, based on `base_branch`.
async fn record_task_branch(
    app: &TestApp,
    project: &Project,
    task: &str,
    branch: &str,
    base_branch: Option<&str>,
) -> String {
    let base = project.tip("HEAD");
    project.git(&["branch", branch, &base]);
    let id = SpecTaskId::parse(task).unwrap();
    let recorded = app
        .store
        .record_isolation(
            &id,
            WorkspaceIsolation::Worktree,
            Some(&TaskBranch {
                branch_name: branch.to_owned(),
                base_branch: base_branch.map(str::to_owned),
                base_commit: base.clone(),
            }),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(recorded.branch_name.as_deref(), Some(branch));
    base
}

/// A task in `project` in backlog (nothing plans it).
async fn backlog_task(app: &TestApp, project: &Project) -> String {
    let task = app
        .post(
            "/api/v1/spec-tasks/from-prompt",
            &json!({"prompt": "Add many files", "project_path": project.path(), "auto_start": false}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    task.body["id"].as_str().unwrap().to_owned()
}

const PLAN: &str = "# Requirements: Feature\n\n1.1 WHEN used THE SYSTEM SHALL work.\n\n\
    # Design: Feature\n\nOne component.\n\n# Implementation Plan: Feature\n\n\
    - [ ] 1. Build the feature\n  - Build it.\n  - _Requirements: 1.1_\n";

/// A server implementing with the scripted runtime in worktrees (the directory is returned, to
/// live as long as the app) and planning on a fake OpenAI server.
async fn review_app(db: TestDatabase) -> (TestApp, FakeOpenAi, tempfile::TempDir) {
    let runtime = ScriptedRuntime::new(Script::always(Behaviour::Succeed {
        chunks: 1,
        chunk_delay_ms: 0,
    }));
    let worktrees = tempfile::tempdir().unwrap();
    let mut engine = fast_engine();
    engine.git.worktrees_dir = Some(worktrees.path().to_path_buf());
    let (app, fake) = app_with_runtime(db, Arc::new(runtime), engine, PLAN).await;
    (app, fake, worktrees)
}

/// A task in `project` whose branch `branch` (based on `base_branch`) is recorded before
/// implementation starts, driven to `implementation_review`; then one commit on the branch.
/// Returns the task id and the branch's tip.
async fn task_in_review(
    app: &TestApp,
    project: &Project,
    branch: &str,
    base_branch: &str,
) -> (String, String) {
    let task = app
        .post(
            "/api/v1/spec-tasks/from-prompt",
            &json!({"prompt": "Add the feature", "project_path": project.path()}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    let id = task.body["id"].as_str().unwrap().to_owned();
    app.wait_for_task_status(&id, "spec_review").await;
    record_task_branch(app, project, &id, branch, Some(base_branch)).await;
    let approved = app
        .post(
            &format!("/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": true}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    app.wait_for_task_status(&id, "implementation_review").await;
    // The session's merged worktree is removed right after its turn completed: wait for it, so
    // the scratch worktree below does not race its clean-up.
    spectask_testkit::wait_until(
        "the merged worktree to be removed and forgotten",
        || async {
            let sessions = work_sessions(app, &id).await;
            match sessions
                .iter()
                .filter(|s| !s["worktree_path"].is_null())
                .count()
            {
                0 => Ok(()),
                n => Err(format!("{n} worktrees")),
            }
        },
    )
    .await;
    let tip = project.commit_on(
        branch,
        &[("feature.txt".to_owned(), "the feature\n".to_owned())],
        "add the feature",
    );
    (id, tip)
}

async fn approve(app: &TestApp, id: &str, body: Value) -> spectask_testkit::Response {
    app.post(
        &format!("/api/v1/spec-tasks/{id}/approve-implementation"),
        &body,
    )
    .await
}

async fn events_of(app: &TestApp, id: &str, kind: &str) -> Vec<Value> {
    let events = app
        .get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000"))
        .await
        .body;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

backend_tests! {
    async fn the_task_diff_pages_files_with_totals_over_all(db) {
        let app = TestApp::spawn(db).await;
        let project = Project::new();
        let id = backlog_task(&app, &project).await;
        let branch = "spectask/many-files-1";
        let base = record_task_branch(&app, &project, &id, branch, Some("main")).await;
        let tip = project.commit_on(branch, &files((0..200).map(|n| format!("src/file{n:03}.txt"))), "two hundred files");

        let first = app.get(&format!("/api/v1/spec-tasks/{id}/diff")).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        let body = &first.body;
        assert_eq!((body["branch_name"].clone(), body["base"].clone(), body["head"].clone()), (json!(branch), json!(base), json!(tip)));
        assert_eq!((body["total_files"].clone(), body["additions"].clone(), body["deletions"].clone()), (json!(200), json!(400), json!(0)));
        let page = body["files"].as_array().unwrap();
        assert_eq!(page.len(), 100, "the default page is 100 files");
        assert_eq!(body["next_offset"], 100);
        assert_eq!((page[0]["path"].clone(), page[0]["status"].clone(), page[0]["additions"].clone()), (json!("src/file000.txt"), json!("added"), json!(2)));
        assert!(page[0]["patch"].as_str().unwrap().contains("+src/file000.txt"));

        let last = app.get(&format!("/api/v1/spec-tasks/{id}/diff?offset=150&limit=80&patches=false")).await.body;
        let page = last["files"].as_array().unwrap();
        assert_eq!(page.len(), 50);
        assert_eq!(page[0]["path"], "src/file150.txt");
        assert!(last["next_offset"].is_null());
        assert_eq!(last["total_files"], 200, "totals are over all files, whatever the page");
        assert!(page.iter().all(|f| f["patch"].is_null()));

        let cut = app.get(&format!("/api/v1/spec-tasks/{id}/diff?limit=1&max_patch_bytes=40")).await.body;
        assert_eq!(cut["files"][0]["patch_truncated"], true);
        assert!(cut["files"][0]["patch"].as_str().unwrap().len() <= 40);

        // The branch is read live; without it the recorded tip (here: where it started) is used.
        project.git(&["branch", "-D", branch]);
        let gone = app.get(&format!("/api/v1/spec-tasks/{id}/diff")).await.body;
        assert_eq!((gone["head"].clone(), gone["total_files"].clone()), (json!(base), json!(0)));
    }

    async fn task_diff_refusals(db) {
        let app = TestApp::spawn(db).await;
        let project = Project::new();
        let id = backlog_task(&app, &project).await;
        let no_branch = app.get(&format!("/api/v1/spec-tasks/{id}/diff")).await;
        assert_eq!((no_branch.status, no_branch.error_code()), (StatusCode::CONFLICT, "no_branch"));
        assert!(no_branch.body["error"]["message"].as_str().unwrap().contains("no task branch"));
        // A JSON `null` approval body is no body: refused here for the task's status, not the body.
        let null_body = app.send_raw(reqwest::Method::POST, &format!("/api/v1/spec-tasks/{id}/approve-implementation"), b"null".to_vec()).await;
        assert_eq!((null_body.status, null_body.error_code()), (StatusCode::CONFLICT, "invalid_transition"), "{}", null_body.body);
        let unknown = app.get("/api/v1/spec-tasks/spt_01arz3ndektsv4rrffq69g5fav/diff").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
        for query in ["limit=0", "limit=501", "offset=-1", "max_patch_bytes=0", "max_patch_bytes=1048577", "patches=maybe", "limit=ten", "colour=red"] {
            let bad = app.get(&format!("/api/v1/spec-tasks/{id}/diff?{query}")).await;
            assert_eq!((bad.status, bad.error_code()), (StatusCode::BAD_REQUEST, "invalid_query"), "{query}");
        }
        record_task_branch(&app, &project, &id, "spectask/gone-1", Some("main")).await;
        std::fs::remove_dir_all(project.repo.join(".git")).unwrap();
        let not_a_repository = app.get(&format!("/api/v1/spec-tasks/{id}/diff")).await;
        assert_eq!((not_a_repository.status, not_a_repository.error_code()), (StatusCode::CONFLICT, "not_a_repository"));
        let unknown = app.get("/api/v1/work-sessions/stws_01arz3ndektsv4rrffq69g5fav/diff").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    }

    async fn fast_forward_into_the_checked_out_branch_updates_the_users_tree(db) {
        let (app, _fake, _worktrees) = review_app(db).await;
        let project = Project::new();
        let branch = "spectask/feature-1";
        let (id, tip) = task_in_review(&app, &project, branch, "main").await;

        // The work session's own diff: its branch from the task branch's start, not the task
        // branch's later commits.
        let session = work_sessions(&app, &id).await[0]["id"].as_str().unwrap().to_owned();
        // (The engine gave it a branch of its own; the test records one it controls instead.)
        let session_base = project.tip("main");
        project.git(&["branch", "spectask/feature-1-s1", &session_base]);
        app.store.record_worktree(&WorkSessionId::parse(&session).unwrap(), &SessionWorktree {
            branch_name: "spectask/feature-1-s1".to_owned(),
            worktree_path: project.root.join("gone").to_str().unwrap().to_owned(),
            base_commit: session_base,
        }, "test").await.unwrap();
        let session_tip = project.commit_on("spectask/feature-1-s1", &files(["a.txt".to_owned(), "b.txt".to_owned()]), "session work");
        let diff = app.get(&format!("/api/v1/work-sessions/{session}/diff?limit=1")).await;
        assert_eq!(diff.status, StatusCode::OK, "{}", diff.body);
        assert_eq!((diff.body["branch_name"].clone(), diff.body["head"].clone(), diff.body["total_files"].clone()), (json!("spectask/feature-1-s1"), json!(session_tip), json!(2)));
        assert_eq!((diff.body["files"][0]["path"].clone(), diff.body["next_offset"].clone()), (json!("a.txt"), json!(1)));

        let approved = approve(&app, &id, json!({"merge": "fast_forward"})).await;
        assert_eq!((approved.status, approved.body["status"].clone()), (StatusCode::OK, json!("done")), "{}", approved.body);
        assert_eq!(project.tip("HEAD"), tip, "HEAD moved to the task branch");
        assert_eq!(project.git(&["symbolic-ref", "--short", "HEAD"]), "main");
        assert_eq!(std::fs::read_to_string(project.repo.join("feature.txt")).unwrap(), "the feature\n");
        assert_eq!(project.git(&["status", "--porcelain", "--untracked-files=no"]), "");
        let merged = events_of(&app, &id, "spec_task.branch_merged").await;
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0]["payload"], json!({"into": "main", "mode": "fast_forward", "outcome": "fast_forward", "head": tip}));
    }

    async fn a_dirty_work_tree_refuses_the_merge_and_changes_nothing(db) {
        let (app, _fake, _worktrees) = review_app(db).await;
        let project = Project::new();
        let (id, tip) = task_in_review(&app, &project, "spectask/feature-2", "main").await;
        std::fs::write(project.repo.join("README.md"), "# edited, not committed\n").unwrap();
        let before = project.user_state();

        let refused = approve(&app, &id, json!({"merge": "fast_forward"})).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, "dirty_worktree"), "{}", refused.body);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("README.md"));
        assert_eq!(project.user_state(), before);
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}")).await.body["status"], "implementation_review");
        assert!(events_of(&app, &id, "spec_task.branch_merged").await.is_empty());

        // Committed, the user's branch has diverged: a fast-forward is refused, a merge commit
        // goes through the user's tree.
        project.git(&["commit", "-q", "-am", "user's edit"]);
        let diverged = approve(&app, &id, json!({"merge": "fast_forward"})).await;
        assert_eq!((diverged.status, diverged.error_code()), (StatusCode::CONFLICT, "not_fast_forward"), "{}", diverged.body);
        let user_commit = project.tip("HEAD");
        let approved = approve(&app, &id, json!({"merge": "merge_commit"})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        assert_eq!(project.git(&["rev-list", "--parents", "-n", "1", "HEAD"]).split(' ').skip(1).collect::<Vec<_>>(), [user_commit.as_str(), tip.as_str()]);
        assert!(project.repo.join("feature.txt").exists());
        let name = approved.body["name"].as_str().unwrap();
        assert_eq!(project.git(&["log", "-1", "--format=%s"]), format!("Merge spectask/feature-2: {name}"));
    }

    async fn a_merge_commit_into_a_branch_not_checked_out_leaves_the_users_tree(db) {
        let (app, _fake, _worktrees) = review_app(db).await;
        let project = Project::new();
        project.git(&["branch", "release"]);
        let release_before = project.tip("release");
        let (id, tip) = task_in_review(&app, &project, "spectask/feature-3", "release").await;
        let before = project.user_state();

        let approved = approve(&app, &id, json!({"merge": "merge_commit"})).await;
        assert_eq!((approved.status, approved.body["status"].clone()), (StatusCode::OK, json!("done")), "{}", approved.body);
        let release = project.tip("release");
        assert_eq!(project.git(&["rev-list", "--parents", "-n", "1", "release"]), format!("{release} {release_before} {tip}"), "two parents, although a fast-forward was possible");
        assert_eq!(project.user_state(), before, "the user's HEAD, index and files are untouched");
        assert!(!project.repo.join("feature.txt").exists());
        let merged = events_of(&app, &id, "spec_task.branch_merged").await;
        assert_eq!(merged[0]["payload"], json!({"into": "release", "mode": "merge_commit", "outcome": "merged", "head": release}));
    }

    async fn approval_without_a_merge_leaves_every_branch(db) {
        let (app, _fake, _worktrees) = review_app(db).await;
        let project = Project::new();
        let (id, tip) = task_in_review(&app, &project, "spectask/feature-4", "main").await;
        let before = project.user_state();
        let unknown = approve(&app, &id, json!({"merge": "rebase"})).await;
        assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unknown.body);
        let extra = approve(&app, &id, json!({"merge": "none", "squash": true})).await;
        assert_eq!(extra.status, StatusCode::BAD_REQUEST, "{}", extra.body);

        // An empty body, as before the merge option existed.
        let approved = app.send_raw(reqwest::Method::POST, &format!("/api/v1/spec-tasks/{id}/approve-implementation"), Vec::new()).await;
        assert_eq!((approved.status, approved.body["status"].clone()), (StatusCode::OK, json!("done")), "{}", approved.body);
        assert_eq!(project.user_state(), before);
        assert_eq!(project.tip("spectask/feature-4"), tip);
        assert!(events_of(&app, &id, "spec_task.branch_merged").await.is_empty());
        // Done: a second approval with a merge is refused before anything merges.
        let again = approve(&app, &id, json!({"merge": "fast_forward"})).await;
        assert_eq!((again.status, again.error_code()), (StatusCode::CONFLICT, "invalid_transition"));
        assert_eq!(project.user_state(), before);
    }

    async fn the_document_states_the_review_routes_and_their_bounds(db) {
        let app = TestApp::spawn(db).await;
        let doc = app.get("/api/v1/openapi.json").await.body;
        for path in ["/api/v1/spec-tasks/{id}/diff", "/api/v1/work-sessions/{sid}/diff"] {
            let get = &doc["paths"][path]["get"];
            for status in ["200", "400", "404", "409"] {
                assert!(get["responses"].get(status).is_some(), "{path} lacks {status}");
            }
            let param = |name: &str| get["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or_else(|| panic!("{path} lacks {name}"));
            assert_eq!((param("limit")["schema"]["minimum"].clone(), param("limit")["schema"]["maximum"].clone()), (json!(1), json!(500)), "{}", param("limit"));
            assert_eq!(param("max_patch_bytes")["schema"]["maximum"], json!(1_048_576));
            assert_eq!(param("offset")["schema"]["minimum"], json!(0));
            assert_eq!(param("patches")["schema"]["type"], json!("boolean"), "{}", param("patches"));
        }
        let approve = &doc["paths"]["/api/v1/spec-tasks/{id}/approve-implementation"]["post"];
        assert_ne!(approve["requestBody"]["required"], json!(true), "the body stays optional");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["ApprovalMerge"]["enum"], json!(["none", "fast_forward", "merge_commit"]));
        assert_eq!(schemas["FileStatus"]["enum"], json!(["added", "modified", "deleted", "renamed", "copied", "type_changed"]));
        assert!(schemas["BranchDiffPage"].to_string().contains("branch_name"), "{}", schemas["BranchDiffPage"]);
        assert!(schemas["FileDiff"]["properties"].get("patch_truncated").is_some());
    }
}
