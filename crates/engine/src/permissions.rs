//! The permission desk: answers agents' `ask`-policy permission requests (of work sessions and of
//! planning sessions) by recording them for a human (`GET/POST /spec-tasks/{id}/permission-requests`,
//! or per work session) and waiting for the answer, up to
//! a timeout after which the request expires and the agent is told `cancelled` (nothing granted).
//! The wait re-reads the database, so an answer given through any replica reaches the agent.

use std::time::Duration;

use async_trait::async_trait;
use spectask_domain::{PermissionOption, PermissionRequestStatus};
use spectask_runtimes::agent::{PermissionAsk, PermissionBroker};
use spectask_store::{NewPermissionRequest, Store, StoreError};

#[derive(Debug, Clone)]
pub struct PermissionDesk {
    store: Store,
    timeout: Duration,
    poll: Duration,
}

impl PermissionDesk {
    /// A desk giving humans `timeout` to answer.
    pub fn new(store: Store, timeout: Duration) -> Self {
        Self {
            store,
            timeout,
            poll: Duration::from_millis(500),
        }
    }
}

#[async_trait]
impl PermissionBroker for PermissionDesk {
    async fn ask(&self, ask: PermissionAsk) -> Option<String> {
        let new = NewPermissionRequest {
            zed_thread_id: ask.thread_id.to_string(),
            tool_call_id: ask.tool_call_id.clone(),
            title: ask.title.clone(),
            options: ask
                .options
                .iter()
                .map(|o| PermissionOption {
                    option_id: o.option_id.clone(),
                    name: o.name.clone(),
                    kind: o.kind.clone(),
                })
                .collect(),
            tool_kind: ask.kind.clone(),
            command: ask.command.clone(),
            raw_input: ask.raw_input.clone(),
            locations: ask.locations.clone(),
            timeout: self.timeout,
        };
        // Subscribe first so an answer committed right after the insert is not missed.
        let mut commits = self.store.subscribe_commits();
        let request = match self.store.create_permission_request(&new).await {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(%err, thread = %ask.thread_id, "could not record a permission request; rejecting it");
                return None;
            }
        };
        tracing::info!(request = %request.id, session_id = %request.session_id, work_session_id = ?request.work_session_id, title = %request.title, "permission request waiting for a human");
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match self.store.get_permission_request(&request.id).await {
                Ok(current) if current.status == PermissionRequestStatus::Answered => {
                    return current.choice;
                }
                Ok(current) if current.status == PermissionRequestStatus::TimedOut => return None,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, request = %request.id, "could not read a permission request; retrying")
                }
            }
            if tokio::time::Instant::now() >= deadline {
                match self
                    .store
                    .settle_permission_request(&request.id, None, "timeout")
                    .await
                {
                    Ok(_) => {
                        tracing::info!(request = %request.id, "permission request timed out; the agent is told cancelled");
                        return None;
                    }
                    // Answered at the last moment: the next read returns it.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(err) => {
                        tracing::warn!(%err, request = %request.id, "could not expire a permission request");
                        return None;
                    }
                }
            }
            tokio::select! {
                _ = commits.recv() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
