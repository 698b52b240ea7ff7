//! The spec review gate bound to the revision on screen (`approve-specs` with `revision`: a
//! stale one is refused with 409 `stale_revision` and changes nothing), and the UI's rendering of
//! a revision's documents as safe HTML.

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_domain::SpecTaskId;
use spectask_testkit::{FakeOpenAi, TestApp, backend_tests};

use super::planning::spec_reply;

/// A task in `spec_review` with revision 1 from the planner, and the app.
async fn reviewed_task(db: spectask_testkit::TestDatabase, fake: &FakeOpenAi) -> (TestApp, String) {
    fake.push_text_reply(&spec_reply("Review me", 2));
    let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
    let task = app
        .post(
            "/api/v1/spec-tasks/from-prompt",
            &json!({"prompt": "review me"}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    let id = task.body["id"].as_str().unwrap().to_owned();
    app.wait_for_task_status(&id, "spec_review").await;
    (app, id)
}

/// Records revision 2 directly (as a planner's revision would, without a review round).
async fn add_revision(app: &TestApp, id: &str, title: &str) {
    let reply = spec_reply(title, 3);
    let (requirements, rest) = reply.split_once("# Design").unwrap();
    let (design, plan) = rest.split_once("# Implementation Plan").unwrap();
    app.store
        .add_revision(
            &SpecTaskId::parse(id).unwrap(),
            &spectask_store::NewRevision {
                requirements_spec: requirements
                    .trim_start_matches("Here you go.\n\n")
                    .trim()
                    .into(),
                technical_design: format!("# Design{design}").trim().into(),
                implementation_plan: format!("# Implementation Plan{plan}").trim().into(),
                feedback: None,
                interaction_id: None,
            },
            "tester",
        )
        .await
        .unwrap();
}

/// What a refused decision must leave as it was.
async fn snapshot(app: &TestApp, id: &str) -> Value {
    let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
    let turns = app
        .get(&format!("/api/v1/spec-tasks/{id}/turns"))
        .await
        .body["turns"]
        .as_array()
        .unwrap()
        .len();
    let tasks = app
        .get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks"))
        .await
        .body["implementation_tasks"]
        .clone();
    json!({
        "status": task["status"], "spec_revision_count": task["spec_revision_count"],
        "spec_approved_by": task["spec_approved_by"], "spec_approved_revision": task["spec_approved_revision"],
        "turns": turns, "implementation_tasks": tasks,
    })
}

backend_tests! {
    async fn a_stale_revision_is_refused_and_the_latest_is_approved(db) {
        let fake = FakeOpenAi::start().await;
        let (app, id) = reviewed_task(db, &fake).await;
        add_revision(&app, &id, "Newer").await;
        let path = format!("/api/v1/spec-tasks/{id}/approve-specs");
        let before = snapshot(&app, &id).await;

        for body in [
            json!({"approved": true, "revision": 1}),
            json!({"approved": false, "revision": 1, "comments": "change it"}),
            json!({"approved": true, "revision": 3}),
        ] {
            let refused = app.post(&path, &body).await;
            assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, "stale_revision"), "{body}: {}", refused.body);
            assert_eq!(refused.body["error"]["latest_revision"], 2, "{}", refused.body);
            let message = refused.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("revision 2 is the latest"), "{message}");
            assert_eq!(snapshot(&app, &id).await, before, "{body} changed nothing");
        }

        let approved = app.post(&path, &json!({"approved": true, "revision": 2})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        assert_eq!(approved.body["spec_approved_revision"], 2);
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body["implementation_tasks"].as_array().unwrap().len(), 3,
            "the plan of revision 2 became the tasks");
    }

    async fn request_changes_on_the_latest_revision_works(db) {
        let fake = FakeOpenAi::start().await;
        let (app, id) = reviewed_task(db, &fake).await;
        fake.push_text_reply(&spec_reply("Revised", 2));
        let changes = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": false, "revision": 1, "comments": "More detail."})).await;
        assert_eq!(changes.status, StatusCode::OK, "{}", changes.body);
        assert_eq!(changes.body["spec_revision_count"], 1);
        app.wait_for_task_status(&id, "spec_review").await;
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}/specs")).await.body["revision"], 2);
        // Without `revision` the decision applies to the latest, as before.
        let approved = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        assert_eq!((approved.status, approved.body["spec_approved_revision"].clone()), (StatusCode::OK, json!(2)), "{}", approved.body);
    }

    async fn a_bad_revision_number_is_refused(db) {
        let fake = FakeOpenAi::start().await;
        let (app, id) = reviewed_task(db, &fake).await;
        let path = format!("/api/v1/spec-tasks/{id}/approve-specs");
        let before = snapshot(&app, &id).await;
        for (body, status, code) in [
            (json!({"approved": true, "revision": 0}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"approved": true, "revision": -3}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"approved": true, "revision": 4_000_000_000_i64}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"approved": true, "revision": 1.5}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"approved": true, "revision": "1"}), StatusCode::BAD_REQUEST, "invalid_body"),
        ] {
            let refused = app.post(&path, &body).await;
            assert_eq!((refused.status, refused.error_code()), (status, code), "{body}: {}", refused.body);
        }
        assert_eq!(snapshot(&app, &id).await, before);
        let approved = app.post(&path, &json!({"approved": true, "revision": 1.0})).await;
        assert_eq!(approved.status, StatusCode::OK, "an integral float is an integer: {}", approved.body);
    }

    async fn a_revision_document_renders_as_safe_html(db) {
        let fake = FakeOpenAi::start().await;
        let (app, id) = reviewed_task(db, &fake).await;
        app.store.add_revision(&SpecTaskId::parse(&id).unwrap(), &spectask_store::NewRevision {
            requirements_spec: "# Requirements: x\n\n<script>alert(1)</script>\n\n[go](javascript:alert(1))\n".into(),
            technical_design: "# Design: x\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n".into(),
            implementation_plan: "# Implementation Plan: x\n\n- [ ] 1. Do it\n".into(),
            feedback: None, interaction_id: None,
        }, "tester").await.unwrap();
        let fetch = |path: String| {
            let app = &app;
            async move {
                let response = app.client.get(app.url(&path)).send().await.unwrap();
                let status = response.status();
                let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                (status, kind, response.text().await.unwrap())
            }
        };
        let base = format!("/ui/render/spec-tasks/{id}/revisions");
        let (status, kind, html) = fetch(format!("{base}/2/requirements")).await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/html; charset=utf-8"), "{html}");
        assert!(html.contains("<h2 id=\"requirements-requirements-x\">"), "{html}");
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        let (_, _, design) = fetch(format!("{base}/2/design")).await;
        assert!(design.contains("<table>") && design.contains("class=\"hl-"), "{design}");
        let (_, _, first) = fetch(format!("{base}/1/plan")).await;
        assert!(first.contains("Review me step 2"), "revision 1 is still there: {first}");

        for path in [
            format!("{base}/2/readme"),
            format!("{base}/9/plan"),
            format!("{base}/0/plan"),
            format!("{base}/x/plan"),
            "/ui/render/spec-tasks/spt_01J00000000000000000000000/revisions/1/plan".to_owned(),
            "/ui/render/spec-tasks/nope/revisions/1/plan".to_owned(),
        ] {
            let (status, kind, body) = fetch(path.clone()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(kind.starts_with("application/json"), "{path}: {kind}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], "not_found", "{path}: {body}");
        }
    }
}
