//! What every handler shares: the store, the resolved configuration and the shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spectask_engine::Engine;
use spectask_store::Store;
use tokio_util::sync::CancellationToken;

/// Settings the handlers need, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// When set, `project_path` must lie inside this directory (canonical).
    pub workspace_root: Option<PathBuf>,
    /// How often a live stream re-reads the events table when no commit nudge arrives (covers
    /// commits made by other replicas).
    pub stream_poll_interval: Duration,
    /// The API token (`--api-token`, or generated into the data directory). A request presenting
    /// another one is refused (401).
    pub api_token: Option<crate::guard::ApiToken>,
    /// Whether every request must present the token. Always so on a non-loopback bind, which
    /// `Server::bind` refuses without a token.
    pub require_api_token: bool,
    /// Host names beyond IP literals and `localhost` that requests may name (`--allowed-host`),
    /// each with or without a port.
    pub allowed_hosts: Vec<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            workspace_root: None,
            stream_poll_interval: Duration::from_secs(1),
            api_token: None,
            require_api_token: false,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// The workflows (planning, approval) and their background worker.
    pub engine: Engine,
    pub settings: Arc<ApiSettings>,
    /// Cancelled on shutdown so long-lived responses (event streams) end and the server can drain.
    pub shutdown: CancellationToken,
}
