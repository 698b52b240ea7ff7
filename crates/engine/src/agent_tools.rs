//! The [`AgentToolServer`] of a spectask server: every thread of a work session gets spectask's
//! own MCP server (`<server>/mcp`) with a fresh bearer token minted in the store, so any replica
//! can check it. The token is bound to this set-up of the thread: it carries the instance, this
//! process's claim owner and the configured TTL, and minting it revokes the session's older ones
//! (the lifetime rules are in `spectask_store`'s `agent_tokens`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spectask_domain::{InstanceId, WorkSessionId};
use spectask_runtimes::agent::{AgentError, AgentResult, AgentToolServer, McpEndpoint};
use spectask_store::{Store, TokenMint};

use crate::Engine;

/// The name agents see for spectask's MCP server.
pub const MCP_SERVER_NAME: &str = "spectask";

/// Mints a token per thread and points agents at `url`.
#[derive(Debug)]
pub struct McpToolServer {
    store: Store,
    url: String,
    /// The claim owner of this process, recorded on every token it mints.
    owner: String,
    ttl: Duration,
}

impl McpToolServer {
    pub fn new(
        store: Store,
        url: impl Into<String>,
        owner: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            url: url.into(),
            owner: owner.into(),
            ttl,
        }
    }
}

#[async_trait]
impl AgentToolServer for McpToolServer {
    async fn endpoints_for_thread(
        &self,
        instance_id: &InstanceId,
        ws: &WorkSessionId,
    ) -> AgentResult<Vec<McpEndpoint>> {
        let mint = TokenMint {
            instance_id: instance_id.as_str(),
            minted_by: &self.owner,
            ttl: self.ttl,
        };
        let token = self
            .store
            .issue_agent_token(ws, mint)
            .await
            .map_err(|err| AgentError::Failed(format!("minting an MCP token for {ws}: {err}")))?;
        tracing::debug!(%instance_id, work_session_id = %ws, "MCP token issued for a thread");
        Ok(vec![McpEndpoint {
            name: MCP_SERVER_NAME.to_owned(),
            url: self.url.clone(),
            headers: vec![("Authorization".to_owned(), format!("Bearer {token}"))],
        }])
    }

    fn tcp_ports(&self) -> Vec<u16> {
        spectask_runtimes::agent::tools::url_port(&self.url)
            .into_iter()
            .collect()
    }
}

impl Engine {
    /// Gives the agent runtime (if any) spectask's MCP server at `url`, once the server is bound.
    pub fn attach_agent_tools(&self, url: &str) {
        if let Some(runtime) = &self.inner.runtime {
            runtime.attach_tool_server(Arc::new(McpToolServer::new(
                self.inner.store.clone(),
                url,
                self.inner.owner.clone(),
                self.inner.settings.mcp_token_ttl,
            )));
            tracing::info!(%url, "agents get spectask's MCP server");
        }
    }
}

impl Engine {
    /// Revokes the MCP tokens minted for the threads of instance `instance_id`: call it when the
    /// instance is stopped (its agent process is gone; a restart sets its threads up again with
    /// fresh tokens).
    pub async fn revoke_instance_tokens(
        &self,
        instance_id: &str,
    ) -> Result<u64, crate::EngineError> {
        Ok(self
            .inner
            .store
            .revoke_instance_agent_tokens(instance_id)
            .await?)
    }
}
