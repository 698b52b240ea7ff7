//! The web UI, served by the same binary as the API: `/` the board, `/tasks/{id}` a task (with
//! `/spec`, `/implementation` and `/review` views), `/agents`, `/login`.
//!
//! Each page is a small HTML shell ([`page`]) whose script, embedded from `crates/server/ui/`
//! ([`assets`]), reads and drives the JSON API under `/api/v1` and follows the live event stream,
//! like any other client: the UI has no private data path, so everything it shows is also in the
//! API. The one exception is [`markdown`], HTML rendered from the spec documents.
//! [`login`] turns the API token into a cookie for servers that require it.
//!
//! These routes are not part of the OpenAPI document (they are not the API), but pass the same
//! [`crate::guard`]: Host and Origin checks, and the token (a page without it redirects to
//! `/login`).

pub mod assets;
pub mod login;
pub mod markdown;
pub mod page;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;
use page::Page;

/// The UI's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(board))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/{view}", get(task_view))
        .route("/agents", get(agents))
        .route("/login", get(login_page))
        .route(login::LOGIN_PATH, post(login::login))
        .route(login::LOGOUT_PATH, post(login::logout))
        .route("/ui/assets/{*path}", get(assets::serve))
        .route(
            markdown::RENDER_PATH,
            get(markdown::render_revision_document),
        )
}

/// Whether `path` is a page (an HTML document a person opens), as opposed to the API, an asset or
/// an endpoint: a page that needs the token redirects to `/login` instead of answering 401.
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/agents" || path.starts_with("/tasks/")
}

/// Paths open without the token: the login page and what it needs.
pub fn is_open(path: &str) -> bool {
    path == "/login" || path == login::LOGIN_PATH || path.starts_with("/ui/assets/")
}

fn token_required(state: &AppState) -> bool {
    state.settings.require_api_token
}

async fn board(State(state): State<AppState>) -> Response {
    page::render(Page::Board, token_required(&state))
}

async fn agents(State(state): State<AppState>) -> Response {
    page::render(Page::Agents, token_required(&state))
}

async fn login_page(State(state): State<AppState>) -> Response {
    page::render(Page::Login, token_required(&state))
}

async fn task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    task_page(&state, id, None).await
}

async fn task_view(
    State(state): State<AppState>,
    Path((id, view)): Path<(String, String)>,
) -> Response {
    let view = match view.as_str() {
        "spec" => "spec",
        "implementation" => "implementation",
        "review" => "review",
        _ => return not_found(&state),
    };
    task_page(&state, id, Some(view)).await
}

/// A task's page, or the not-found page when no such task exists (a deleted task's link). A
/// database that cannot answer now still gets the page: its script reports the API's error.
async fn task_page(state: &AppState, id: String, view: Option<&'static str>) -> Response {
    let missing = match id.parse::<spectask_domain::SpecTaskId>() {
        Ok(task) => matches!(
            state.store.get_spec_task(&task).await,
            Err(spectask_store::StoreError::NotFound { .. })
        ),
        Err(_) => true,
    };
    if missing {
        return not_found(state);
    }
    page::render(Page::Task { id, view }, token_required(state))
}

/// The HTML not-found page.
pub fn not_found(state: &AppState) -> Response {
    page::render(Page::NotFound, token_required(state)).into_response()
}
