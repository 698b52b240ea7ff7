//! `spectask task …` as a user runs it, against a real `spectask serve` with a loopback planner
//! and our scripted ACP test agent: what each command prints, its `--json` answer checked against
//! the server's own OpenAPI schema, and its exit code (0 ok, 1 error, 2 usage, 3 refused).

use std::process::Stdio;

use serde_json::json;
use spectask_testkit::require_test_agent;

use crate::support::{self, on_both_databases};
use crate::task_harness::{FOLLOW_UP, Harness, SPAWNED};

/// create, list, show, specs, comment, request-changes, diff, approve (a stale revision refused,
/// then the latest), archive and delete.
async fn review_scenario(extra: &[&str]) {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let h = Harness::start(&agent, extra).await;
    let id = h.task_in_review().await;
    let id = id.as_str();

    // A second task, left in backlog: create --json, list, show.
    let project = h.project();
    let parked = h
        .json(
            &[
                "task",
                "create",
                "Something for later",
                "--no-start",
                "--project",
                project.to_str().unwrap(),
            ],
            "SpecTask",
        )
        .await;
    assert_eq!(parked["status"], "backlog", "{parked}");
    let parked = parked["id"].as_str().unwrap();
    let listed = h.ok(&["task", "list"]).await;
    assert!(listed.contains(id) && listed.contains(parked), "{listed}");
    assert!(
        listed.contains("spec_review") && listed.contains("2 of 2 tasks"),
        "{listed}"
    );
    let page = h
        .json(&["task", "list", "--status", "backlog"], "SpecTaskList")
        .await;
    assert_eq!(page["spec_tasks"][0]["id"], parked, "{page}");
    let shown = h.ok(&["task", "show", id]).await;
    assert!(shown.contains("status    spec_review"), "{shown}");
    h.json(&["task", "show", id], "SpecTask").await;

    // The documents: raw Markdown when piped, one of them with --doc.
    let specs = h.ok(&["task", "specs", id]).await;
    assert!(
        specs.starts_with("# Requirements: Greeting parts"),
        "{specs}"
    );
    assert!(specs.contains("\n# Design: Greeting parts") && specs.contains("- [ ] 4. Wire"));
    let design = h.ok(&["task", "specs", id, "--doc", "design"]).await;
    assert!(
        design.starts_with("# Design:") && !design.contains("# Requirements"),
        "{design}"
    );
    let json = h.json(&["task", "specs", id], "SpecsResponse").await;
    assert_eq!(json["revision"], 1, "{json}");
    h.json(&["task", "specs", id, "--revision", "1"], "SpecRevision")
        .await;
    let nothing = h.run(&["task", "diff", id]).await;
    assert_eq!(nothing.code, 1, "{}", nothing.stderr);
    assert!(
        nothing.stderr.contains("one revision only"),
        "{}",
        nothing.stderr
    );

    // Comments, then a request for changes: revision 2.
    let commented = h
        .ok(&[
            "task",
            "comment",
            id,
            "--doc",
            "requirements",
            "--quote",
            "say hello",
            "Say hi instead",
        ])
        .await;
    assert!(
        commented.starts_with("Commented on the requirements of revision 1"),
        "{commented}"
    );
    let comment = h
        .json(
            &["task", "comment", id, "--doc", "plan", "Sign every part"],
            "SpecComment",
        )
        .await;
    assert_eq!(comment["document"], "plan", "{comment}");
    h.refused(
        &[
            "task",
            "comment",
            id,
            "--doc",
            "design",
            "--quote",
            "not in it",
            "x",
        ],
        422,
        "quote_not_found",
    )
    .await;
    let asked = h
        .ok(&["task", "request-changes", id, "Sign the parts"])
        .await;
    assert!(
        asked.starts_with(&format!("Asked for changes to revision 1 of {id}")),
        "{asked}"
    );
    h.wait_for_status(id, "spec_review").await;

    let diff = h.ok(&["task", "diff", id]).await;
    assert!(diff.contains("+## Requirement 2"), "{diff}");
    assert!(diff.contains("a/requirements.md (revision 1)"), "{diff}");
    let json = h
        .json(
            &["task", "diff", id, "--from", "1", "--to", "2"],
            "RevisionDiff",
        )
        .await;
    assert_eq!(
        (json["from"].clone(), json["to"].clone()),
        (json!(1), json!(2))
    );

    // Approving what was read: revision 1 is stale now; the latest is approved.
    let stale = h
        .refused(
            &["task", "approve", id, "--revision", "1"],
            409,
            "stale_revision",
        )
        .await;
    assert!(stale.stderr.contains("read revision 2"), "{}", stale.stderr);
    let approved = h.json(&["task", "approve", id], "SpecTask").await;
    assert_eq!(approved["spec_approved_revision"], 2, "{approved}");
    h.refused(&["task", "approve", id], 409, "invalid_transition")
        .await;

    // The parked task's end: archived (twice refused), then deleted.
    let archived = h.ok(&["task", "archive", parked]).await;
    assert!(
        archived.starts_with(&format!("Archived {parked}")),
        "{archived}"
    );
    h.refused(&["task", "archive", parked, "--json"], 409, "conflict")
        .await;
    let deleted = h.ok(&["task", "delete", parked]).await;
    assert!(
        deleted.starts_with(&format!("Deleted {parked}")),
        "{deleted}"
    );
    assert_eq!(h.ok(&["task", "delete", id, "--json"]).await, "");
    h.refused(&["task", "show", parked], 404, "not_found").await;
    h.stop().await;
}

on_both_databases!(
    /// The spec review from the command line.
    review_scenario: sqlite_the_review_commands_take_a_spec_to_approval,
    postgres_the_review_commands_take_a_spec_to_approval
);

/// sessions, permissions, answer, message, spawn, cancel, retry, on a task implementing.
async fn work_scenario(extra: &[&str]) {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let h = Harness::start(&agent, extra).await;
    let id = h.task_in_review().await;
    let id = id.as_str();
    let approved = h.ok(&["task", "approve", id]).await;
    assert!(
        approved.starts_with(&format!("Approved revision 1 of {id}")),
        "{approved}"
    );

    // Parts one and three wait for a person, part two runs, part four waits for them.
    let one = h.wait_for_session(id, 1, "active").await;
    let two = h.wait_for_session(id, 2, "active").await;
    let three = h.wait_for_session(id, 3, "active").await;
    let requests = support::wait_for("two permission requests", || async {
        let list = h.get("/permission-requests").await;
        let requests = list["permission_requests"].as_array()?.clone();
        (requests.len() == 2).then_some(requests)
    })
    .await;
    let request_titled = |title: &str| {
        let request = requests.iter().find(|r| r["title"] == title).unwrap();
        request["id"].as_str().unwrap().to_owned()
    };
    let (first, gate) = (
        request_titled("Run the part-one check"),
        request_titled("Open the part-three gate"),
    );
    let table = h.ok(&["task", "sessions", id]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("SESSION") && lines[0].contains("WHY / NOTE"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "{table}");
    for session in [&one, &two, &three] {
        let line = lines
            .iter()
            .find(|line| line.starts_with(session.as_str()))
            .unwrap();
        assert!(line.contains("active"), "{line}");
    }
    let four = h.session_of(id, 4).await;
    let reason = four["queue_reason"].as_str().unwrap();
    assert!(table.contains(reason.lines().next().unwrap()), "{table}");
    h.json(&["task", "sessions", id], "WorkSessionList").await;

    // The requests, with the exact command answering each option; across tasks too.
    let asked = h.ok(&["task", "permissions", id]).await;
    assert!(
        asked.contains(&format!("{first}  Run the part-one check")),
        "{asked}"
    );
    for option in ["allow", "reject"] {
        assert!(
            asked.contains(&format!("spectask task answer {first} {option}")),
            "{asked}"
        );
        assert!(
            asked.contains(&format!("spectask task answer {gate} {option}")),
            "{asked}"
        );
    }
    h.json(&["task", "permissions"], "PermissionRequestList")
        .await;
    h.json(&["task", "permissions", id], "PermissionRequestList")
        .await;
    let answered = h
        .json(&["task", "answer", &first, "allow"], "PermissionRequest")
        .await;
    assert_eq!(answered["choice"], "allow", "{answered}");
    h.refused(&["task", "answer", &first, "allow"], 409, "")
        .await;
    h.refused(&["task", "answer", &gate, "maybe"], 422, "")
        .await;
    h.wait_for_session(id, 1, "completed").await;

    // A follow-up to the running session, a spawned one, then it is cancelled.
    let queued = h
        .json(&["task", "message", &two, FOLLOW_UP], "QueuedTurn")
        .await;
    assert!(
        queued["turn_id"].as_str().unwrap().starts_with("turn_"),
        "{queued}"
    );
    let said = h.ok(&["task", "message", &two, "and one more"]).await;
    assert!(said.starts_with("Queued turn_"), "{said}");
    let description = format!("{SPAWNED}: write the signature");
    let spawned = h
        .json(
            &[
                "task",
                "spawn",
                id,
                "--from",
                &two,
                "--name",
                "Signature",
                "--description",
                &description,
            ],
            "WorkSessionDetail",
        )
        .await;
    let child = spawned["work_session"]["id"].as_str().unwrap();
    assert_eq!(
        spawned["work_session"]["parent_work_session_id"],
        two.as_str()
    );
    support::wait_for("the spawned session to complete", || async {
        let ws = h.get(&format!("/work-sessions/{child}")).await;
        (ws["work_session"]["status"] == "completed").then_some(())
    })
    .await;
    let cancelled = h
        .json(&["task", "cancel", &two], "SpecTaskWorkSession")
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let again = h.refused(&["task", "cancel", &two], 409, "").await;
    assert!(again.stdout.is_empty(), "{}", again.stdout);

    // A completed session takes no message; part three, allowed, fails and is retried.
    h.refused(&["task", "message", &one, "hello?"], 409, "")
        .await;
    let said = h.ok(&["task", "answer", &gate, "allow"]).await;
    assert!(
        said.starts_with(&format!("Answered {gate} with allow")),
        "{said}"
    );
    let none = h.ok(&["task", "permissions"]).await;
    assert_eq!(
        none.trim(),
        "No permission request is waiting for an answer."
    );
    h.wait_for_session(id, 3, "failed").await;
    let retried = h.ok(&["task", "retry", &three]).await;
    assert!(
        retried.starts_with(&format!("Retrying {three}")),
        "{retried}"
    );
    h.refused(
        &["task", "retry", &one, "--json"],
        409,
        "invalid_transition",
    )
    .await;
    h.stop().await;
}

on_both_databases!(
    /// The implementation from the command line.
    work_scenario: sqlite_the_work_commands_steer_an_implementation,
    postgres_the_work_commands_steer_an_implementation
);

/// Exit codes without a server: 2 for usage, 1 for a server that cannot be reached.
#[tokio::test]
async fn usage_errors_exit_2_and_an_unreachable_server_exits_1() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let mut cmd = support::command(cwd.path());
        cmd.args(args).stdout(Stdio::piped());
        async move { cmd.output().await.unwrap() }
    };
    let missing = run(&["task", "approve"]).await;
    assert_eq!(missing.status.code(), Some(2));
    let bad_doc = run(&["task", "specs", "spt_x", "--doc", "poem"]).await;
    assert_eq!(bad_doc.status.code(), Some(2));
    let bad_server = run(&["task", "list", "--server", "ftp://example.org"]).await;
    assert_eq!(bad_server.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_server.stderr).contains("http://"));
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let unreachable = run(&[
        "task",
        "sessions",
        "spt_x",
        "--server",
        "http://127.0.0.1:9",
    ])
    .await;
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("cannot reach the spectask server"),
        "{stderr}"
    );
    let answer = run(&[
        "task",
        "answer",
        "prq_x",
        "allow",
        "--server",
        "http://127.0.0.1:9",
    ])
    .await;
    assert_eq!(answer.status.code(), Some(1));
}
