//! Bearer tokens for spectask's MCP server: one per thread set-up (`session/new` or
//! `session/load`) of a work session, 256 random bits shown once to the agent and stored only as
//! their SHA-256. A token authenticates while its work session is not finished, on any replica.

use sha2::{Digest, Sha256};
use spectask_domain::{SpecTaskId, WorkSessionId};

use crate::Store;
use crate::backend::on_backend;
use crate::error::{StoreError, StoreResult};
use crate::ids::now;

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentGrant {
    pub work_session_id: WorkSessionId,
    pub spec_task_id: SpecTaskId,
}

/// The stored form of a token: its SHA-256, lowercase hex.
pub fn hash_agent_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn fresh_token() -> StoreResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| StoreError::Conflict(format!("no randomness for an agent token: {err}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Store {
    /// Mints a token for a thread of work session `ws` and returns it; only its hash is kept.
    pub async fn issue_agent_token(&self, ws: &WorkSessionId) -> StoreResult<String> {
        let token = fresh_token()?;
        let hash = hash_agent_token(&token);
        let now = now();
        on_backend!(&*self.backend, |w, r, d| {
            let task: Option<String> = sqlx::query_scalar(
                "SELECT spec_task_id FROM spec_task_work_sessions WHERE id = $1",
            )
            .bind(ws.as_str())
            .fetch_optional(w)
            .await?;
            let task = task.ok_or_else(|| StoreError::not_found("work session", ws))?;
            sqlx::query(
                "INSERT INTO agent_tokens (token_hash, work_session_id, spec_task_id, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(ws.as_str())
            .bind(&task)
            .bind(now)
            .execute(w)
            .await?;
        });
        Ok(token)
    }

    /// The work session a token speaks for, or `None` when the token is unknown or its work
    /// session is finished (completed, failed or cancelled).
    pub async fn authenticate_agent_token(&self, token: &str) -> StoreResult<Option<AgentGrant>> {
        let hash = hash_agent_token(token);
        let row: Option<(String, String)> = on_backend!(&*self.backend, |w, r, d| {
            sqlx::query_as(
                "SELECT t.work_session_id, t.spec_task_id FROM agent_tokens t \
                 JOIN spec_task_work_sessions ws ON ws.id = t.work_session_id \
                 WHERE t.token_hash = $1 AND ws.status NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(&hash)
            .fetch_optional(r)
            .await?
        });
        row.map(|(ws, task)| {
            Ok(AgentGrant {
                work_session_id: WorkSessionId::parse(&ws)
                    .map_err(|e| StoreError::corrupt("agent_tokens", e))?,
                spec_task_id: SpecTaskId::parse(&task)
                    .map_err(|e| StoreError::corrupt("agent_tokens", e))?,
            })
        })
        .transpose()
    }
}
