//! Bearer tokens for spectask's MCP server: one per thread set-up (`session/new` or
//! `session/load`) of a work session, 256 random bits shown once to the agent and stored only as
//! their SHA-256.
//!
//! A token authenticates, on any replica, while all of these hold:
//! - it is not revoked. Revocation is a stored time, never undone: minting a token for a work
//!   session revokes the session's earlier ones (a newer set-up of the thread replaced them); a
//!   work session that ends (completed, failed, cancelled) revokes its tokens in the transaction
//!   of that status change (`transition.rs`); a restarted process revokes what its dead
//!   predecessor minted; a stopped instance revokes what was minted for it;
//! - it has not expired (minted at + the TTL the minting process was configured with);
//! - its work session is not finished (a second check, for tokens of any age).
//!
//! A retried or reopened session therefore never revives an old token: its next turn finds no
//! live token and sets the thread up again, which mints a fresh one ([`Store::agent_token_state`]).

use std::time::Duration;

use sha2::{Digest, Sha256};
use spectask_domain::{SpecTaskId, WorkSessionId};

use crate::Store;
use crate::backend::Dialect;
use crate::db::{query, query_as};
use crate::error::{StoreError, StoreResult};
use crate::ids::now;

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentGrant {
    pub work_session_id: WorkSessionId,
    pub spec_task_id: SpecTaskId,
}

/// Where and by whom a token is minted, and for how long it lives.
#[derive(Debug, Clone, Copy)]
pub struct TokenMint<'a> {
    /// The instance whose thread gets the token.
    pub instance_id: &'a str,
    /// The claim owner of the minting process (its tokens die with it).
    pub minted_by: &'a str,
    /// How long the token lives at most.
    pub ttl: Duration,
}

/// Whether a work session's thread holds a token that still authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTokenState {
    /// No token was ever minted for it (its agent gets no MCP tools).
    NeverMinted,
    /// At least one token authenticates.
    Live,
    /// Tokens were minted, and every one is revoked or expired: the thread must be set up again
    /// to get a fresh one.
    Dead,
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

/// `expires_at > $n` for the dialect (SQLite keeps timestamps as text of varying width).
fn unexpired(d: Dialect, param: usize) -> String {
    if d == Dialect::Postgres {
        format!("t.expires_at > ${param}")
    } else {
        format!("julianday(t.expires_at) > julianday(${param})")
    }
}

impl Store {
    /// Mints a token for a thread set-up of work session `ws` and returns it; only its hash is
    /// kept. Earlier tokens of `ws` are revoked in the same transaction: the newest set-up of the
    /// session's one thread is the only one that speaks for it.
    pub async fn issue_agent_token(
        &self,
        ws: &WorkSessionId,
        mint: TokenMint<'_>,
    ) -> StoreResult<String> {
        let token = fresh_token()?;
        let hash = hash_agent_token(&token);
        let now = now();
        let expires =
            now + chrono::Duration::from_std(mint.ttl).unwrap_or(chrono::Duration::days(1));
        self.write(async |tx| {
            let row: Option<(String, String)> =
                query_as("SELECT spec_task_id, status FROM spec_task_work_sessions WHERE id = $1")
                    .bind(ws.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let (task, status) = row.ok_or_else(|| StoreError::not_found("work session", ws))?;
            // A finished session's token is born revoked: a later retry must not bring it to life.
            let revoked = ["completed", "failed", "cancelled"]
                .contains(&status.as_str())
                .then_some(now);
            query(
                    "UPDATE agent_tokens SET revoked_at = $1 WHERE work_session_id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await?;
            query(
                    "INSERT INTO agent_tokens (token_hash, work_session_id, spec_task_id, created_at, \
                     expires_at, instance_id, minted_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&hash)
                .bind(ws.as_str())
                .bind(&task)
                .bind(now)
                .bind(expires)
                .bind(mint.instance_id)
                .bind(mint.minted_by)
                .bind(revoked)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    /// The work session a token speaks for, or `None` when the token is unknown, revoked,
    /// expired, or its work session is finished (completed, failed or cancelled).
    pub async fn authenticate_agent_token(&self, token: &str) -> StoreResult<Option<AgentGrant>> {
        let hash = hash_agent_token(token);
        let now = now();
        let row: Option<(String, String)> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.work_session_id, t.spec_task_id FROM agent_tokens t \
                 JOIN spec_task_work_sessions ws ON ws.id = t.work_session_id \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND {} \
                 AND ws.status NOT IN ('completed', 'failed', 'cancelled')",
            unexpired(self.backend.dialect(), 2)
        )))
        .bind(&hash)
        .bind(now)
        .fetch_optional(self.backend.reader())
        .await?;
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

    /// Whether work session `ws` has a token that authenticates now (see [`AgentTokenState`]).
    pub async fn agent_token_state(&self, ws: &WorkSessionId) -> StoreResult<AgentTokenState> {
        let now = now();
        let (minted, live): (i64, i64) = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN t.revoked_at IS NULL AND {} THEN 1 ELSE 0 END), 0) \
             FROM agent_tokens t WHERE t.work_session_id = $1",
            unexpired(self.backend.dialect(), 2)
        )))
        .bind(ws.as_str())
        .bind(now)
        .fetch_one(self.backend.reader())
        .await?;
        Ok(match (minted, live) {
            (0, _) => AgentTokenState::NeverMinted,
            (_, 0) => AgentTokenState::Dead,
            _ => AgentTokenState::Live,
        })
    }

    /// Revokes every live token minted by the process `minted_by` (a process known dead: the
    /// predecessor on this data directory). Returns how many.
    pub async fn revoke_agent_tokens_minted_by(&self, minted_by: &str) -> StoreResult<u64> {
        self.revoke_agent_tokens_where("minted_by", minted_by).await
    }

    /// Revokes every live token minted for the threads of instance `instance_id` (the instance
    /// was stopped). Returns how many.
    pub async fn revoke_instance_agent_tokens(&self, instance_id: &str) -> StoreResult<u64> {
        self.revoke_agent_tokens_where("instance_id", instance_id)
            .await
    }

    async fn revoke_agent_tokens_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> StoreResult<u64> {
        let now = now();
        self.write(async |tx| {
            let revoked = query(sqlx::AssertSqlSafe(format!(
                "UPDATE agent_tokens SET revoked_at = $1 WHERE {column} = $2 AND revoked_at IS NULL"
            )))
            .bind(now)
            .bind(value)
            .execute(&mut *tx)
            .await?;
            Ok(revoked.rows_affected())
        })
        .await
    }
}
