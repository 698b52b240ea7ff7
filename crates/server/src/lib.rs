//! spectask's HTTP server: the REST API under `/api/v1`, the live event stream, the OpenAPI
//! document, `/healthz` and the web UI (`ui`), wired to the store.
//!
//! Architecture invariants:
//! - Handlers are thin: parse and validate input, call the store, map the result. No SQL here.
//! - Every error leaves through [`error::ApiError`], so every failure has the JSON error shape.
//! - Every API route is registered through an `OpenApiRouter`, so every route under `/api/v1`
//!   is in the OpenAPI document (the web UI's pages and assets are not the API).

pub mod error;
pub mod extract;
pub mod guard;
pub mod mcp;
mod openapi;
pub mod routes;
pub mod state;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use spectask_engine::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use state::{ApiSettings, AppState};

use crate::error::ApiError;

/// Builds the complete router for `state`, every request passing `guard` first.
pub fn app(state: AppState, guard: Arc<guard::Guard>) -> Router {
    let (router, openapi) = openapi::split(state.clone());
    router
        .merge(openapi)
        .merge(mcp::router(state.clone()))
        .merge(ui::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(
            spectask_domain::limits::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// No route: the HTML not-found page for a browser asking for a page outside the API, the JSON
/// error otherwise.
async fn route_not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    uri: Uri,
) -> Response {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let outside_api = !uri.path().starts_with("/api/") && uri.path() != mcp::MCP_PATH;
    if wants_html && outside_api {
        return ui::not_found(&state);
    }
    ApiError::RouteNotFound(uri.path().to_owned()).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and prepares the app over `engine` and its store.
    /// Refuses a non-loopback address without an API token, before listening.
    pub async fn bind(
        addr: SocketAddr,
        engine: Engine,
        settings: ApiSettings,
    ) -> std::io::Result<Self> {
        if !addr.ip().is_loopback() && settings.api_token.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refusing to serve {addr}, a non-loopback address, without an API token"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        engine.attach_agent_tools(&mcp_url(listener.local_addr()?));
        let state = AppState {
            store: engine.store().clone(),
            engine,
            settings: Arc::new(settings),
            shutdown: CancellationToken::new(),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and runs the background worker until `shutdown` resolves, then ends live streams,
    /// drains in-flight requests and hands running turns back to the queue.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.state.shutdown.clone();
        let worker = tokio::spawn(self.state.engine.clone().run_worker(token.clone()));
        let guard = Arc::new(guard::Guard::new(
            self.listener.local_addr()?,
            &self.state.settings,
        ));
        let router = app(self.state, guard);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown({
                let token = token.clone();
                async move {
                    shutdown.await;
                    token.cancel();
                }
            })
            .await;
        token.cancel();
        if let Err(err) = worker.await {
            tracing::error!(%err, "background worker panicked");
        }
        served
    }
}

/// The URL agents on this machine reach the MCP server at: the bound address, with an unspecified
/// one (`0.0.0.0`, `::`) replaced by loopback.
fn mcp_url(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!(
        "http://{}{}",
        SocketAddr::new(ip, bound.port()),
        mcp::MCP_PATH
    )
}

/// Resolves on Ctrl-C or SIGTERM: the signal for a graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
