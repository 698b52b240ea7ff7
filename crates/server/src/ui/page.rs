//! The HTML shell every page shares: the header (navigation, the permission badge, the live
//! connection state), an empty `<main>` the page's script fills from the API, the permission
//! panel, and a boot block of JSON data. Scripts come only from `/ui/assets/` (the
//! Content-Security-Policy forbids inline ones), so text an agent wrote can never run as code.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::json;
use spectask_domain::{EventKind, SpecTaskStatus};

/// Scripts and styles from this server only; no inline script, no plugin, no framing, forms and
/// fetches only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// Which page, and what its script needs to know.
#[derive(Debug, Clone)]
pub enum Page {
    Board,
    /// A task's view: `spec`, `implementation` or `review`; `None` lets the script pick by status.
    Task {
        id: String,
        view: Option<&'static str>,
    },
    Agents,
    Login,
    NotFound,
}

impl Page {
    fn title(&self) -> String {
        match self {
            Page::Board => "Board".into(),
            Page::Task { id, .. } => format!("Task {id}"),
            Page::Agents => "Agents".into(),
            Page::Login => "Sign in".into(),
            Page::NotFound => "Not found".into(),
        }
    }

    /// The page's script under `/ui/assets/js/`.
    pub fn script(&self) -> &'static str {
        match self {
            Page::Board => "board.js",
            Page::Task { .. } => "task.js",
            Page::Agents => "agents.js",
            Page::Login => "login.js",
            Page::NotFound => "shell.js",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Page::Board => "board",
            Page::Task { .. } => "task",
            Page::Agents => "agents",
            Page::Login => "login",
            Page::NotFound => "not_found",
        }
    }

    /// Every page, for the test that checks each shell names an embedded script.
    pub fn all() -> Vec<Page> {
        vec![
            Page::Board,
            Page::Task {
                id: "spt_x".into(),
                view: None,
            },
            Page::Agents,
            Page::Login,
            Page::NotFound,
        ]
    }
}

/// The boot data a page's script reads from `<script type="application/json" id="boot">`.
fn boot(page: &Page, token_required: bool) -> String {
    let (task_id, view) = match page {
        Page::Task { id, view } => (Some(id.as_str()), *view),
        _ => (None, None),
    };
    let data = json!({
        "page": page.name(),
        "task_id": task_id,
        "view": view,
        "event_kinds": EventKind::names(),
        "statuses": SpecTaskStatus::names(),
        "token_required": token_required,
        "version": env!("CARGO_PKG_VERSION"),
    });
    // `<` escaped so no string in the data can close the script element.
    data.to_string().replace('<', "\\u003c")
}

fn shell(page: &Page, token_required: bool) -> Markup {
    let current = |name: &str| (page.name() == name).then_some("page");
    let chrome = !matches!(page, Page::Login);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (page.title()) " · spectask" }
                link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/app.css";
                script type="module" src={ "/ui/assets/js/" (page.script()) } {}
            }
            body data-page=(page.name()) {
                a class="skip-link" href="#main" { "Skip to content" }
                header class="topbar" {
                    a class="brand" href="/" { "spectask" }
                    @if chrome {
                        nav aria-label="Main" {
                            a href="/" aria-current=[current("board")] { "Board" }
                            a href="/agents" aria-current=[current("agents")] { "Agents" }
                        }
                        span class="live" id="live-status" role="status" aria-live="polite" {}
                        button type="button" class="permissions-button" id="permissions-button"
                            aria-controls="permissions-panel" aria-expanded="false" {
                            "Permissions "
                            span class="badge" id="permissions-count" aria-label="pending" { "0" }
                        }
                        @if token_required {
                            button type="button" class="link" id="logout-button" { "Sign out" }
                        }
                    }
                }
                @if chrome {
                    aside id="permissions-panel" class="panel" aria-label="Permission requests" hidden {
                        div class="panel-head" {
                            h2 { "Permission requests" }
                            button type="button" class="icon" id="permissions-close" aria-label="Close the permission requests" { "×" }
                        }
                        div id="permissions-list" {}
                    }
                }
                main id="main" tabindex="-1" {
                    @if matches!(page, Page::NotFound) {
                        h1 { "Not found" }
                        p { "Nothing lives at this address. " a href="/" { "Go to the board" } "." }
                    } @else {
                        p class="loading" { "Loading…" }
                        noscript { p { "spectask's web UI needs JavaScript; the API is at /api/v1." } }
                    }
                }
                div id="toasts" class="toasts" role="status" aria-live="polite" {}
                script type="application/json" id="boot" { (PreEscaped(boot(page, token_required))) }
            }
        }
    }
}

/// The page as a response: 200 (404 for [`Page::NotFound`]) with the security headers.
pub fn render(page: Page, token_required: bool) -> Response {
    let status = if matches!(page, Page::NotFound) {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let mut response = (status, shell(&page, token_required)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}
