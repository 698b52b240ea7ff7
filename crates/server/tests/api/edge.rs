//! The API's edge as another origin meets it: cross-site browser requests, foreign `Host` names
//! (DNS rebinding), bodies that are not JSON and the API token. Each refusal is checked to change
//! nothing. The real server on a random port; every test runs on both databases.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use spectask_server::ApiSettings;
use spectask_server::guard::ApiToken;
use spectask_testkit::{TestApp, backend_tests};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Sends `request`, returning its status, error code (if any) and the response's headers.
async fn send(
    request: reqwest::RequestBuilder,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, headers)
}

/// How many tasks exist, archived or not.
async fn task_count(app: &TestApp) -> u64 {
    let list = app.get("/api/v1/spec-tasks?archived=all").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["total"].as_u64().unwrap()
}

fn create(app: &TestApp) -> reqwest::RequestBuilder {
    app.client.post(app.url("/api/v1/spec-tasks/from-prompt"))
}

const PROMPT: &str = r#"{"prompt":"Start an agent in my home directory"}"#;

backend_tests! {
    async fn a_cross_site_browser_request_is_refused_and_creates_nothing(db) {
        let app = TestApp::spawn(db).await;
        // What a page on another site can send without a CORS preflight: a text/plain POST (the
        // browser adds Origin and Sec-Fetch-Site), a form, multipart.
        let refused = [
            (create(&app).header(CONTENT_TYPE, "text/plain").header(ORIGIN, "http://evil.example").header("sec-fetch-site", "cross-site").body(PROMPT), "cross_origin"),
            (create(&app).header(CONTENT_TYPE, "text/plain").header(ORIGIN, "http://evil.example").body(PROMPT), "cross_origin"),
            (create(&app).header(CONTENT_TYPE, "application/json").header(ORIGIN, "null").body(PROMPT), "cross_origin"),
            // Another port of the same host is another origin, and the same site.
            (create(&app).header(CONTENT_TYPE, "application/json").header(ORIGIN, "http://127.0.0.1:1").body(PROMPT), "cross_origin"),
            (create(&app).header(CONTENT_TYPE, "application/json").header("sec-fetch-site", "cross-site").body(PROMPT), "cross_origin"),
            (create(&app).header(CONTENT_TYPE, "application/json").header("sec-fetch-site", "same-site").body(PROMPT), "cross_origin"),
            (app.client.get(app.url("/api/v1/spec-tasks")).header(ORIGIN, "https://evil.example"), "cross_origin"),
        ];
        for (request, code) in refused {
            let (status, got, _) = send(request).await;
            assert_eq!((status, got.as_str()), (StatusCode::FORBIDDEN, code));
        }
        // Answering a permission request is refused the same way, before the route is looked at.
        let (status, code, _) = send(
            app.client
                .post(app.url("/api/v1/work-sessions/stws_01arz3ndektsv4rrffq69g5fav/permission-requests/prq_01arz3ndektsv4rrffq69g5fav"))
                .header(CONTENT_TYPE, "text/plain")
                .header(ORIGIN, "http://evil.example")
                .body(r#"{"option_id":"allow"}"#),
        )
        .await;
        assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "cross_origin"));
        assert_eq!(task_count(&app).await, 0, "a refused request created a task");

        // The server's own origin (a same-origin page, the coming web UI) is served.
        let own = format!("http://{}", app.addr);
        let (status, _, _) = send(create(&app).header(CONTENT_TYPE, "application/json").header(ORIGIN, own).header("sec-fetch-site", "same-origin").body(PROMPT)).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(task_count(&app).await, 1);
    }

    async fn bodies_must_be_json_except_the_plan_parsers_markdown(db) {
        let app = TestApp::spawn(db).await;
        let cases = [
            ("text/plain", PROMPT.to_owned()),
            ("text/plain; charset=utf-8", PROMPT.to_owned()),
            ("application/x-www-form-urlencoded", "prompt=hello".to_owned()),
            ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhello\r\n--x--\r\n".to_owned()),
            ("text/markdown", PROMPT.to_owned()),
        ];
        for (content_type, body) in cases {
            let (status, code, _) = send(create(&app).header(CONTENT_TYPE, content_type).body(body)).await;
            assert_eq!((status, code.as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"), "{content_type}");
        }
        let (status, code, _) = send(create(&app).body(PROMPT)).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"), "no Content-Type");
        assert_eq!(task_count(&app).await, 0);

        // JSON with parameters is JSON; a body-less POST needs no type.
        let (status, _, _) = send(create(&app).header(CONTENT_TYPE, "Application/JSON; charset=utf-8").body(PROMPT)).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = app.get("/api/v1/spec-tasks").await.body["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
        let (status, _, _) = send(app.client.post(app.url(&format!("/api/v1/spec-tasks/{id}/archive")))).await;
        assert_eq!(status, StatusCode::OK);

        // The plan parser takes Markdown, and only Markdown.
        let plan = "- [ ] 1. Do it\n";
        let (status, _, _) = send(app.client.post(app.url("/api/v1/plans/parse")).header(CONTENT_TYPE, "text/markdown").body(plan)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, code, _) = send(app.client.post(app.url("/api/v1/plans/parse")).header(CONTENT_TYPE, "text/plain").body(plan)).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    }

    async fn a_foreign_host_is_refused(db) {
        let settings = ApiSettings { allowed_hosts: vec!["spectask.internal".into()], ..ApiSettings::default() };
        let app = TestApp::spawn_with(db, settings).await;
        let port = app.addr.port();
        // A DNS-rebound name reaches this server with the attacker's name in Host.
        for host in [format!("evil.example:{port}"), "evil.example".to_owned(), format!("127.0.0.1.evil.example:{port}")] {
            let (status, code, _) = send(create(&app).header(HOST, host.as_str()).json(&json!({"prompt": "x"}))).await;
            assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "forbidden_host"), "{host}");
        }
        assert_eq!(task_count(&app).await, 0);
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}"), "spectask.internal".to_owned(), format!("SPECTASK.internal:{port}")] {
            let (status, _, _) = send(app.client.get(app.url("/api/v1/spec-tasks")).header(HOST, host.as_str())).await;
            assert_eq!(status, StatusCode::OK, "{host}");
        }
    }

    async fn a_required_token_is_checked_on_every_route_but_health(db) {
        let settings = ApiSettings { api_token: Some(ApiToken::new(TOKEN)), require_api_token: true, ..ApiSettings::default() };
        let app = TestApp::spawn_with(db, settings).await;
        let list = || app.client.get(app.url("/api/v1/spec-tasks"));
        for (request, why) in [
            (list(), "no token"),
            (list().header(AUTHORIZATION, "Bearer wrong"), "wrong token"),
            (list().header(AUTHORIZATION, format!("Basic {TOKEN}")), "not a bearer token"),
            (app.client.get(app.url("/api/v1/openapi.json")), "the document too"),
            (create(&app).header(CONTENT_TYPE, "application/json").body(PROMPT), "a write"),
        ] {
            let (status, code, headers) = send(request).await;
            assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"), "{why}");
            assert!(headers.contains_key(WWW_AUTHENTICATE), "{why}");
        }
        let (status, _, _) = send(create(&app).header(AUTHORIZATION, format!("Bearer {TOKEN}")).json(&json!({"prompt": "x"}))).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _, _) = send(list().header(AUTHORIZATION, format!("bearer {TOKEN}"))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(app.client.get(app.url("/healthz"))).await;
        assert_eq!(status, StatusCode::OK, "liveness probes carry no credentials");
        // /mcp has its own agent tokens: the API token's check leaves it to them.
        let (status, code, _) = send(app.client.post(app.url("/mcp")).json(&json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code, "unauthorized");

        // The event stream also takes the token as a query parameter (EventSource cannot send
        // headers), which the stream's own strict query parsing never sees.
        let stream = |query: &str| app.client.get(app.url(&format!("/api/v1/events/stream?{query}")));
        let (status, code, _) = send(stream("access_token=wrong&after=0")).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
        let response = stream(&format!("after=0&access_token={TOKEN}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
        // Elsewhere a query token is just an unknown parameter, not a credential.
        let (status, _, _) = send(app.client.get(app.url(&format!("/api/v1/spec-tasks?access_token={TOKEN}")))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    async fn on_loopback_the_token_is_optional_but_a_wrong_one_is_refused(db) {
        let settings = ApiSettings { api_token: Some(ApiToken::new(TOKEN)), ..ApiSettings::default() };
        let app = TestApp::spawn_with(db, settings).await;
        let list = || app.client.get(app.url("/api/v1/spec-tasks"));
        assert_eq!(send(list()).await.0, StatusCode::OK);
        assert_eq!(send(list().header(AUTHORIZATION, format!("Bearer {TOKEN}"))).await.0, StatusCode::OK);
        let (status, code, _) = send(create(&app).header(AUTHORIZATION, "Bearer not-the-token").json(&json!({"prompt": "x"}))).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
        assert_eq!(task_count(&app).await, 0);
    }

    async fn the_document_states_the_edges_refusals(db) {
        let app = TestApp::spawn(db).await;
        let doc = app.get("/api/v1/openapi.json").await.body;
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_token"]["scheme"], "bearer");
        assert_eq!(schemes["api_token_query"]["in"], "query");
        let create = &doc["paths"]["/api/v1/spec-tasks/from-prompt"]["post"];
        for status in ["400", "401", "403", "415"] {
            assert!(create["responses"][status].is_object(), "from-prompt lacks {status}");
        }
        assert_eq!(create["security"], json!([{}, {"api_token": []}]));
        let health = &doc["paths"]["/healthz"]["get"];
        assert!(health["responses"]["401"].is_null() && health["security"].is_null());
        let list = &doc["paths"]["/api/v1/spec-tasks"]["get"]["parameters"];
        let limit = list.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!((limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()), (Some(1), Some(200)));
        let statuses = &doc["components"]["schemas"]["PlanTaskStatus"]["enum"];
        assert!(statuses.as_array().unwrap().contains(&json!("none")), "{statuses}");
        let kinds = &doc["components"]["schemas"]["EventKind"]["enum"];
        assert!(kinds.as_array().unwrap().contains(&json!("spec_task.created")), "{kinds}");
    }
}
