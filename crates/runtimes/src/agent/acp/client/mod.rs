//! The client duties spectask owes an ACP agent: `fs/read_text_file` and `fs/write_text_file`
//! confined to the instance's workspace and extra roots (the task's worktrees), and answers to
//! `session/request_permission` from the profile's policy.
//!
//! Confinement works on resolved paths: `~/…` is expanded against the agent's `HOME` (as the
//! agent's own tools would; `~user` is refused), the longest existing prefix of the path is
//! canonicalised (so symlinks anywhere in it are followed) and the rest may only name new plain
//! components. A relative path is taken against the session's working directory (its `cwd`, or
//! the workspace). Anything that lands outside the workspace and the extra roots is refused and
//! logged as a security event.
//!
//! Protected paths (git's internals under `.git/`, `.envrc`, which direnv runs, and `.husky/`,
//! whose hooks git runs) are refused under every policy, through `fs/write_text_file` and in
//! permission requests that name them, unless the profile sets `allow_protected_paths`; in each
//! root, and in each worktree beneath one, whose `.git` is a file.
//!
//! `fs/write_text_file` obeys the policy: `deny` refuses it; `allow_workspace_edits` writes;
//! `ask` writes without asking again when a human already granted a permission request of the
//! same session that named this path (agents such as claude-agent-acp ask first, then write), and
//! otherwise puts the write itself to the human as an `edit` request.
//!
//! This module holds the instance's client state and the `fs/*` methods; [`paths`] resolves and
//! classifies the paths they name, and [`permission`] answers `session/request_permission`.

mod paths;
mod permission;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use agent_client_protocol::v1::schema::{
    ReadTextFileRequest, ReadTextFileResponse, WriteTextFileRequest, WriteTextFileResponse,
};

use self::paths::{expand_home, protected_reason, resolve_in_roots};
use super::profiles::PermissionPolicy;

/// What the client side of one instance needs to answer the agent.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) instance_id: crate::agent::InstanceId,
    /// Canonical, so a resolved path can be compared with `starts_with`.
    pub(crate) workspace: PathBuf,
    /// More canonical directories the agent may read and write (the task's worktree root).
    pub(crate) extra_roots: Vec<PathBuf>,
    /// Each session's working directory (canonical, inside a root), by session id: relative
    /// paths of that session are taken against it.
    pub(crate) session_cwds: Mutex<HashMap<String, PathBuf>>,
    pub(crate) policy: PermissionPolicy,
    pub(crate) broker: Option<std::sync::Arc<dyn crate::agent::PermissionBroker>>,
    /// The agent runs in the OS sandbox (`agent::sandbox`), so a granted command cannot write
    /// outside the workspace; without it, `allow_workspace_edits` asks about commands.
    pub(crate) sandbox_active: bool,
    /// The agent's `HOME`, against which `~/…` paths are resolved.
    pub(crate) home: Option<PathBuf>,
    /// Whether the profile lets the agent write protected paths.
    pub(crate) allow_protected_paths: bool,
    /// Paths a human granted under `ask`, by session: a later `fs/write_text_file` of the same
    /// path in the same session is not asked again (`true`: granted always, else once).
    pub(crate) grants: Mutex<HashMap<(String, PathBuf), bool>>,
}

impl ClientState {
    /// The workspace, then the extra roots.
    fn roots(&self) -> Vec<PathBuf> {
        std::iter::once(self.workspace.clone())
            .chain(self.extra_roots.iter().cloned())
            .collect()
    }

    /// Records the working directory of `session_id` (canonical, inside a root).
    pub(crate) fn set_session_cwd(&self, session_id: &str, cwd: PathBuf) {
        self.session_cwds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.to_owned(), cwd);
    }

    /// Resolves `requested` (after `~` expansion, relative to `session_id`'s working directory)
    /// inside the workspace or an extra root.
    fn resolve(&self, session_id: &str, requested: &Path) -> Result<PathBuf, String> {
        let expanded = expand_home(self.home.as_deref(), requested)?;
        let base = self
            .session_cwds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .cloned()
            .unwrap_or_else(|| self.workspace.clone());
        resolve_in_roots(&self.roots(), &base, &expanded)
    }

    fn confine(
        &self,
        operation: &str,
        session_id: &str,
        requested: &Path,
    ) -> Result<PathBuf, agent_client_protocol::Error> {
        self.resolve(session_id, requested).map_err(|reason| {
            tracing::warn!(
                security_event = "path_outside_workspace",
                instance_id = %self.instance_id,
                operation,
                path = %requested.display(),
                %reason,
                "refused an agent file access outside its workspace"
            );
            agent_client_protocol::Error::invalid_params().data(
                serde_json::json!({ "reason": "path outside the workspace", "path": requested }),
            )
        })
    }

    /// `fs/read_text_file`: the file's text, from 1-based `line` for `limit` lines when given.
    pub(crate) async fn read_text_file(
        &self,
        request: &ReadTextFileRequest,
    ) -> Result<ReadTextFileResponse, agent_client_protocol::Error> {
        let path = self.confine("read", &request.session_id.0, &request.path)?;
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|err| read_error(&path, &err))?;
        let skip = request.line.map_or(0, |line| line.saturating_sub(1)) as usize;
        let take = request.limit.map_or(usize::MAX, |limit| limit as usize);
        let content = if skip == 0 && take == usize::MAX {
            text
        } else {
            text.split_inclusive('\n').skip(skip).take(take).collect()
        };
        Ok(ReadTextFileResponse::new(content))
    }

    /// Why a write of `path` (resolved) is refused whatever the policy, if it is.
    fn protected(&self, path: &Path) -> Option<&'static str> {
        if self.allow_protected_paths {
            return None;
        }
        protected_reason(&self.roots(), path)
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<(String, PathBuf), bool>> {
        // Each critical section is one map operation: a poisoned map is still consistent.
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a human's earlier grant in `session_id` covers writing `path`; a grant for once
    /// is used up.
    fn take_grant(&self, session_id: &str, path: &Path) -> bool {
        let mut grants = self.grants();
        let key = (session_id.to_owned(), path.to_path_buf());
        match grants.get(&key).copied() {
            Some(true) => true,
            Some(false) => {
                grants.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Under `ask`: whether the human lets the agent write `path` (granted before in this
    /// session, or granted now).
    async fn ask_for_write(&self, request: &WriteTextFileRequest, path: &Path) -> bool {
        let session_id = request.session_id.to_string();
        if self.take_grant(&session_id, path) {
            return true;
        }
        let Some(broker) = &self.broker else {
            return false;
        };
        let ask = crate::agent::PermissionAsk {
            instance_id: self.instance_id.clone(),
            thread_id: crate::agent::AgentThreadId::new(session_id),
            tool_call_id: "fs/write_text_file".to_owned(),
            title: format!("Write {}", path.display()),
            options: vec![
                crate::agent::PermissionChoice {
                    option_id: "allow".to_owned(),
                    name: "Allow".to_owned(),
                    kind: "allow_once".to_owned(),
                },
                crate::agent::PermissionChoice {
                    option_id: "reject".to_owned(),
                    name: "Reject".to_owned(),
                    kind: "reject_once".to_owned(),
                },
            ],
            kind: Some("edit".to_owned()),
            command: None,
            raw_input: Some(serde_json::json!({
                "path": path,
                "bytes": request.content.len(),
            })),
            locations: vec![path.display().to_string()],
        };
        broker.ask(ask).await.as_deref() == Some("allow")
    }

    /// `fs/write_text_file`: writes the file, creating missing directories inside the workspace,
    /// if the path is not protected and the policy allows it.
    pub(crate) async fn write_text_file(
        &self,
        request: &WriteTextFileRequest,
    ) -> Result<WriteTextFileResponse, agent_client_protocol::Error> {
        let path = self.confine("write", &request.session_id.0, &request.path)?;
        if let Some(reason) = self.protected(&path) {
            tracing::warn!(
                security_event = "protected_path_write",
                instance_id = %self.instance_id,
                path = %path.display(),
                reason,
                "refused an agent write of a protected path"
            );
            return Err(refused(&path, &format!("protected path: {reason}")));
        }
        let allowed = match self.policy {
            PermissionPolicy::AllowWorkspaceEdits => true,
            PermissionPolicy::Deny => false,
            PermissionPolicy::Ask => self.ask_for_write(request, &path).await,
        };
        if !allowed {
            tracing::info!(instance_id = %self.instance_id, path = %path.display(), policy = ?self.policy, "refused an agent write by the permission policy");
            return Err(refused(&path, "refused by the permission policy"));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|err| io_error(&path, &err))?;
        }
        tokio::fs::write(&path, &request.content)
            .await
            .map_err(|err| io_error(&path, &err))?;
        tracing::debug!(instance_id = %self.instance_id, path = %path.display(), "agent wrote a file");
        Ok(WriteTextFileResponse::new())
    }
}

/// The error for a write spectask refuses.
fn refused(path: &Path, reason: &str) -> agent_client_protocol::Error {
    agent_client_protocol::Error::invalid_params()
        .data(serde_json::json!({ "reason": reason, "path": path }))
}

fn io_error(path: &Path, err: &std::io::Error) -> agent_client_protocol::Error {
    agent_client_protocol::Error::internal_error()
        .data(serde_json::json!({ "path": path, "error": err.to_string() }))
}

fn read_error(path: &Path, err: &std::io::Error) -> agent_client_protocol::Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        // ACP's "resource not found"; the crate has no constructor for it.
        agent_client_protocol::Error::new(-32002, "resource not found")
            .data(serde_json::json!({ "path": path }))
    } else {
        io_error(path, err)
    }
}
