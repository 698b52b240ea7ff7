//! `spectask task import` and `task export` as a user runs them against `spectask serve`: the
//! Kiro and spec-kit fixture folders (`tests/fixtures/`: EARS criteria, `_Requirements:_` lines,
//! phases, `[P]` markers) become tasks in `spec_review` with revision 1 and the files' documents;
//! approved and exported in the same layout they come back as the same files but for the
//! checkboxes (implementation may have started: the server's agent ticks them), and importing the
//! export gives exactly the exported documents again.
//! Exit codes: 0, 3 with the server's `plan_invalid`, 2 for a folder of neither layout or a file
//! export would overwrite.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support::{command, get_json, on_both_databases, post_json, start};

fn fixture(layout: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    match layout {
        "kiro" => root.join("kiro/.kiro/specs/bookmark-sync"),
        _ => root.join("speckit/specs/002-bookmark-sync"),
    }
}

fn files(layout: &str) -> [&'static str; 3] {
    match layout {
        "kiro" => ["requirements.md", "design.md", "tasks.md"],
        _ => ["spec.md", "plan.md", "tasks.md"],
    }
}

/// `text` with every task checkbox unticked: what progress cannot change.
fn unticked(text: &str) -> String {
    ["[x]", "[X]", "[-]", "[~]"]
        .iter()
        .fold(text.to_owned(), |text, mark| {
            text.replace(&format!("- {mark}"), "- [ ]")
        })
}

/// Runs `spectask task <args> --server <url> --json` in `cwd`.
async fn task(cwd: &Path, url: &str, args: &[&str]) -> Output {
    command(cwd)
        .arg("task")
        .args(args)
        .args(["--server", url, "--json"])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Imports `dir` and checks the task: `spec_review`, revision 1, the files' documents.
async fn import_and_check(
    cwd: &Path,
    url: &str,
    dir: &Path,
    layout: &str,
    originals: &[String; 3],
) -> String {
    let task = json_of(&task(cwd, url, &["import", dir.to_str().unwrap()]).await);
    assert_eq!(task["status"], "spec_review");
    assert_eq!(task["import_format"], layout);
    let id = task["id"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let specs = get_json(&client, format!("{url}/api/v1/spec-tasks/{id}/specs")).await;
    assert_eq!(specs["revision"], 1);
    let stored = [
        &specs["requirements_spec"],
        &specs["technical_design"],
        &specs["implementation_plan"],
    ];
    for (stored, original) in stored.iter().zip(originals) {
        assert_eq!(stored.as_str(), Some(original.as_str()));
    }
    id
}

async fn round_trip(extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    let (_server, url) = start(cwd, extra).await;
    let client = reqwest::Client::new();
    for layout in ["kiro", "speckit"] {
        let source = fixture(layout);
        let originals = files(layout).map(|f| std::fs::read_to_string(source.join(f)).unwrap());
        let id = import_and_check(cwd, &url, &source, layout, &originals).await;
        let approved = post_json(
            &client,
            format!("{url}/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": true, "revision": 1}),
        )
        .await;
        assert_eq!(approved["status"], "spec_approved", "{approved}");

        let out = cwd.join(format!("exported-{layout}"));
        let exported = json_of(
            &task(
                cwd,
                &url,
                &["export", &id, "--format", layout, out.to_str().unwrap()],
            )
            .await,
        );
        assert_eq!(
            (
                exported["revision"].as_i64(),
                exported["approved"].as_bool()
            ),
            (Some(1), Some(true))
        );
        for (file, original) in files(layout).iter().zip(&originals) {
            let written = std::fs::read_to_string(out.join(file)).unwrap();
            assert_eq!(unticked(&written), *original, "{layout} {file}");
        }
        // An export does not overwrite files unless told to.
        let again = task(
            cwd,
            &url,
            &["export", &id, "--format", layout, out.to_str().unwrap()],
        )
        .await;
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        let forced = task(
            cwd,
            &url,
            &[
                "export",
                &id,
                "--format",
                layout,
                out.to_str().unwrap(),
                "--force",
            ],
        )
        .await;
        assert_eq!(forced.status.code(), Some(0));

        // The export imports as the same documents.
        let exported_docs = files(layout).map(|f| std::fs::read_to_string(out.join(f)).unwrap());
        let second = import_and_check(cwd, &url, &out, layout, &exported_docs).await;
        assert_ne!(second, id);
    }
}

async fn refusals(extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    let (_server, url) = start(cwd, extra).await;
    // A Kiro folder whose plan has no task: the server refuses, exit 3 with its code.
    let bad = cwd.join("bad-spec");
    std::fs::create_dir(&bad).unwrap();
    for file in files("kiro") {
        std::fs::copy(fixture("kiro").join(file), bad.join(file)).unwrap();
    }
    std::fs::write(
        bad.join("tasks.md"),
        "# Implementation Plan\n\nWe will do it soon.\n",
    )
    .unwrap();
    let refused = task(cwd, &url, &["import", bad.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("plan_invalid"), "{stderr}");
    // A folder of neither layout: a usage error naming both, nothing sent.
    std::fs::remove_file(bad.join("design.md")).unwrap();
    let neither = task(cwd, &url, &["import", bad.to_str().unwrap()]).await;
    assert_eq!(neither.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(
        stderr.contains("requirements.md, design.md, tasks.md")
            && stderr.contains("spec.md, plan.md, tasks.md"),
        "{stderr}"
    );
    let client = reqwest::Client::new();
    let listed = get_json(&client, format!("{url}/api/v1/spec-tasks")).await;
    assert_eq!(listed["total"], 0);
    // Exporting a task that does not exist is the server's 404.
    let missing = task(
        cwd,
        &url,
        &[
            "export",
            "spt_01hzzzzzzzzzzzzzzzzzzzzzzz",
            "--format",
            "kiro",
            cwd.join("x").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(missing.status.code(), Some(3));
    assert!(!cwd.join("x").exists());
}

on_both_databases!(round_trip: kiro_and_speckit_folders_round_trip_on_sqlite, kiro_and_speckit_folders_round_trip_on_postgres);
on_both_databases!(refusals: bad_folders_are_refused_on_sqlite, bad_folders_are_refused_on_postgres);
