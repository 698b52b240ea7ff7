//! The web UI as HTTP serves it: page shells with their security headers and boot data, embedded
//! assets with ETags, the HTML not-found page, the login that turns the API token into a session
//! cookie (and what the guard makes of cookies), and the permission requests across tasks that
//! the UI's badge reads. What the pages do in a browser is `crates/cli/tests/cli/browser.rs`.

use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, LOCATION,
    ORIGIN, SET_COOKIE,
};
use serde_json::{Value, json};
use spectask_server::ApiSettings;
use spectask_server::guard::ApiToken;
use spectask_testkit::{TestApp, backend_tests};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The boot data of a page's HTML.
fn boot(html: &str) -> Value {
    let start = html
        .find(r#"<script type="application/json" id="boot">"#)
        .unwrap();
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</script>").unwrap();
    serde_json::from_str(&rest[open..close]).unwrap()
}

/// The page's script path, from its `<script type="module" src=…>`.
fn script_src(html: &str) -> String {
    let at = html.find(r#"<script type="module" src=""#).unwrap()
        + r#"<script type="module" src=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn token_settings() -> ApiSettings {
    ApiSettings {
        api_token: Some(ApiToken::new(TOKEN)),
        require_api_token: true,
        ..ApiSettings::default()
    }
}

backend_tests! {
    async fn pages_are_html_shells_with_a_strict_policy_and_their_scripts(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("Add dark mode").await;
        let id = task["id"].as_str().unwrap();
        for (path, page) in [
            ("/".to_owned(), "board"),
            ("/agents".to_owned(), "agents"),
            ("/login".to_owned(), "login"),
            (format!("/tasks/{id}"), "task"),
            (format!("/tasks/{id}/spec"), "task"),
            (format!("/tasks/{id}/implementation"), "task"),
            (format!("/tasks/{id}/review"), "task"),
        ] {
            let response = app.client.get(app.url(&path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers().clone();
            assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{path}");
            let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            let html = response.text().await.unwrap();
            let data = boot(&html);
            assert_eq!(data["page"], page, "{path}");
            if page == "task" {
                assert_eq!(data["task_id"], id);
            }
            assert!(data["event_kinds"].as_array().unwrap().iter().any(|k| k == "spec_task.status_changed"));
            let script = app.client.get(app.url(&script_src(&html))).send().await.unwrap();
            assert_eq!(script.status(), StatusCode::OK, "{path}'s script");
            assert!(script.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
        }
        let view = app.client.get(app.url(&format!("/tasks/{id}/implementation"))).send().await.unwrap();
        assert_eq!(boot(&view.text().await.unwrap())["view"], "implementation");
    }

    async fn assets_carry_etags_and_revalidate(db) {
        let app = TestApp::spawn(db).await;
        let first = app.client.get(app.url("/ui/assets/app.css")).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[CACHE_CONTROL], "no-cache");
        assert!(first.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
        let etag = first.headers()[ETAG].clone();
        let again = app.client.get(app.url("/ui/assets/app.css")).header(IF_NONE_MATCH, etag.clone()).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], etag);
        let missing = app.get("/ui/assets/js/nope.js").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.error_code(), "not_found");
    }

    async fn unknown_pages_are_html_not_found_for_browsers_and_json_for_the_api(db) {
        let app = TestApp::spawn(db).await;
        for path in ["/tasks/spt_01JZZZZZZZZZZZZZZZZZZZZZZZ", "/tasks/not-an-id", "/nowhere"] {
            let response = app.client.get(app.url(path)).header("accept", "text/html").send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(response.text().await.unwrap().contains("Not found"), "{path}");
        }
        let task = app.create_task("Add dark mode").await;
        let bad_view = app.client.get(app.url(&format!("/tasks/{}/elsewhere", task["id"].as_str().unwrap())))
            .send().await.unwrap();
        assert_eq!(bad_view.status(), StatusCode::NOT_FOUND);
        let api = app.get("/api/v1/nowhere").await;
        assert_eq!(api.error_code(), "route_not_found");
    }

    async fn a_page_without_the_required_token_goes_to_the_login_page(db) {
        let app = TestApp::spawn_with(db, token_settings()).await;
        let client = no_redirects();
        let page = client.get(app.url("/tasks/spt_x/spec?rev=2")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[LOCATION], "/login?next=/tasks/spt_x/spec%3Frev%3D2");
        // The login page and its assets are open; the API is not.
        assert_eq!(client.get(app.url("/login")).send().await.unwrap().status(), StatusCode::OK);
        assert_eq!(client.get(app.url("/ui/assets/js/login.js")).send().await.unwrap().status(), StatusCode::OK);
        let api = client.get(app.url("/api/v1/spec-tasks")).send().await.unwrap();
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    }

    async fn signing_in_sets_a_session_cookie_the_guard_accepts(db) {
        let app = TestApp::spawn_with(db, token_settings()).await;
        let client = no_redirects();
        let login = |token: &str| client.post(app.url("/ui/login")).json(&json!({"token": token})).send();
        let wrong = login("wrong").await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(wrong.headers().get(SET_COOKIE).is_none());

        let right = login(TOKEN).await.unwrap();
        assert_eq!(right.status(), StatusCode::NO_CONTENT);
        let cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains(TOKEN), "the cookie must not carry the token: {cookie}");
        let pair = cookie.split(';').next().unwrap().to_owned();

        let with_cookie = client.get(app.url("/api/v1/spec-tasks")).header(COOKIE, &pair).send().await.unwrap();
        assert_eq!(with_cookie.status(), StatusCode::OK);
        let page = client.get(app.url("/")).header(COOKIE, &pair).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        // A cookie that is not this server's counts as no token (another local app may plant
        // one): the page redirects, the API answers 401.
        let planted = "spectask_session=0000";
        let page = client.get(app.url("/")).header(COOKIE, planted).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        let api = client.get(app.url("/api/v1/spec-tasks")).header(COOKIE, planted).send().await.unwrap();
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        // Signing in from another origin is refused before the token is looked at.
        let foreign = client.post(app.url("/ui/login")).header(ORIGIN, "http://evil.example")
            .json(&json!({"token": TOKEN})).send().await.unwrap();
        assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
        assert!(foreign.headers().get(SET_COOKIE).is_none());

        let logout = client.post(app.url("/ui/logout")).header(COOKIE, &pair).send().await.unwrap();
        assert_eq!(logout.status(), StatusCode::NO_CONTENT);
        assert!(logout.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    }

    async fn login_is_refused_when_the_server_has_no_token(db) {
        let app = TestApp::spawn(db).await;
        let response = app.post("/ui/login", &json!({"token": "anything"})).await;
        assert_eq!(response.status, StatusCode::CONFLICT);
        let malformed = app.post("/ui/login", &json!({"password": "x"})).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.body);
    }

    async fn permission_requests_are_listed_across_tasks_by_status(db) {
        let app = TestApp::spawn(db).await;
        let pending = app.get("/api/v1/permission-requests").await;
        assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);
        assert_eq!(pending.body["permission_requests"], json!([]));
        let answered = app.get("/api/v1/permission-requests?status=answered&limit=500").await;
        assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
        let bad = app.get("/api/v1/permission-requests?status=maybe").await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
        let too_many = app.get("/api/v1/permission-requests?limit=501").await;
        assert_eq!(too_many.status, StatusCode::BAD_REQUEST, "{}", too_many.body);
    }
}
