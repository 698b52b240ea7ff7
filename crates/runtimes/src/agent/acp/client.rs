//! The client duties spectask owes an ACP agent: `fs/read_text_file` and `fs/write_text_file`
//! confined to the instance's workspace, and answers to `session/request_permission` from the
//! profile's policy.
//!
//! Confinement works on resolved paths: the longest existing prefix of the requested path is
//! canonicalised (so symlinks anywhere in it are followed) and the rest may only name new plain
//! components. Anything that lands outside the workspace is refused and logged as a security
//! event.

use std::path::{Component, Path, PathBuf};

use agent_client_protocol::v1::schema::{
    PermissionOptionKind, ReadTextFileRequest, ReadTextFileResponse, RequestPermissionOutcome,
    RequestPermissionRequest, RequestPermissionResponse, SelectedPermissionOutcome,
    WriteTextFileRequest, WriteTextFileResponse,
};

use super::profiles::PermissionPolicy;

/// What the client side of one instance needs to answer the agent.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) instance_id: String,
    /// Canonical, so a resolved path can be compared with `starts_with`.
    pub(crate) workspace: PathBuf,
    pub(crate) policy: PermissionPolicy,
    pub(crate) broker: Option<std::sync::Arc<dyn crate::agent::PermissionBroker>>,
    /// The agent runs in the OS sandbox (`agent::sandbox`), so a granted command cannot write
    /// outside the workspace; without it, `allow_workspace_edits` asks about commands.
    pub(crate) sandbox_active: bool,
}

/// Resolves `requested` (absolute, or relative to the workspace) to the real path it names, and
/// fails if that path is outside `workspace` (which must be canonical). The file need not exist,
/// but its longest existing ancestor is resolved, and what follows may not contain `..`.
pub(crate) fn resolve_in_workspace(workspace: &Path, requested: &Path) -> Result<PathBuf, String> {
    let path = if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        workspace.join(requested)
    };
    let mut existing = path.as_path();
    let resolved_prefix = loop {
        if existing.symlink_metadata().is_ok() {
            break existing
                .canonicalize()
                .map_err(|err| format!("cannot resolve {}: {err}", existing.display()))?;
        }
        existing = existing
            .parent()
            .ok_or_else(|| format!("{} has no existing ancestor", path.display()))?;
    };
    let rest = path.strip_prefix(existing).map_err(|err| err.to_string())?;
    let mut resolved = resolved_prefix;
    for component in rest.components() {
        match component {
            Component::Normal(name) => resolved.push(name),
            Component::CurDir => {}
            // `..` after a directory that does not exist cannot be resolved by the file system;
            // refusing it is simpler than reasoning about it lexically.
            _ => return Err(format!("{} is not a plain path", path.display())),
        }
    }
    if resolved.starts_with(workspace) {
        Ok(resolved)
    } else {
        Err(format!(
            "{} resolves to {}, outside the workspace {}",
            path.display(),
            resolved.display(),
            workspace.display()
        ))
    }
}

impl ClientState {
    fn confine(
        &self,
        operation: &str,
        requested: &Path,
    ) -> Result<PathBuf, agent_client_protocol::Error> {
        resolve_in_workspace(&self.workspace, requested).map_err(|reason| {
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
        let path = self.confine("read", &request.path)?;
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

    /// `fs/write_text_file`: writes the file, creating missing directories inside the workspace.
    pub(crate) async fn write_text_file(
        &self,
        request: &WriteTextFileRequest,
    ) -> Result<WriteTextFileResponse, agent_client_protocol::Error> {
        let path = self.confine("write", &request.path)?;
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

    /// `session/request_permission`, answered by the profile's policy; `ask` waits for a human
    /// through the broker.
    pub(crate) async fn answer_permission(
        &self,
        request: &RequestPermissionRequest,
    ) -> RequestPermissionResponse {
        let title = request.tool_call.fields.title.as_deref().unwrap_or("");
        let policy = self.policy_for(request);
        if let (PermissionPolicy::Ask, Some(broker)) = (policy, &self.broker) {
            let ask = crate::agent::PermissionAsk {
                instance_id: self.instance_id.clone(),
                thread_id: request.session_id.to_string(),
                tool_call_id: request.tool_call.tool_call_id.to_string(),
                title: title.to_owned(),
                options: request
                    .options
                    .iter()
                    .map(|option| crate::agent::PermissionChoice {
                        option_id: option.option_id.to_string(),
                        name: option.name.clone(),
                        kind: serde_json::to_value(option.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    })
                    .collect(),
            };
            let chosen = broker.ask(ask).await.and_then(|id| {
                request
                    .options
                    .iter()
                    .find(|o| o.option_id.to_string() == id)
                    .map(|o| o.option_id.clone())
            });
            tracing::info!(instance_id = %self.instance_id, title, ?chosen, "permission answered by a human");
            let outcome = match chosen {
                Some(id) => RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id)),
                None => RequestPermissionOutcome::Cancelled,
            };
            return RequestPermissionResponse::new(outcome);
        }
        let allow = match policy {
            PermissionPolicy::AllowWorkspaceEdits => match self.outside_path(request) {
                Some(reason) => {
                    tracing::warn!(
                        security_event = "permission_outside_workspace",
                        instance_id = %self.instance_id,
                        session_id = %request.session_id,
                        title,
                        %reason,
                        "rejected a permission request naming a path outside the workspace"
                    );
                    false
                }
                None => true,
            },
            PermissionPolicy::Deny => false,
            PermissionPolicy::Ask => {
                tracing::info!(
                    instance_id = %self.instance_id,
                    session_id = %request.session_id,
                    title,
                    "permission policy `ask` but no broker: rejecting"
                );
                false
            }
        };
        let kinds: &[PermissionOptionKind] = if allow {
            &[
                PermissionOptionKind::AllowOnce,
                PermissionOptionKind::AllowAlways,
            ]
        } else {
            &[
                PermissionOptionKind::RejectOnce,
                PermissionOptionKind::RejectAlways,
            ]
        };
        let chosen = kinds.iter().find_map(|kind| {
            request
                .options
                .iter()
                .find(|option| option.kind == *kind)
                .map(|option| option.option_id.clone())
        });
        tracing::debug!(instance_id = %self.instance_id, title, allow, ?chosen, "permission answered");
        let outcome = match chosen {
            Some(id) => RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id)),
            // No option of the wanted kind: `cancelled` is the one answer that grants nothing.
            None => RequestPermissionOutcome::Cancelled,
        };
        RequestPermissionResponse::new(outcome)
    }

    /// The policy that answers `request`: the profile's, except that without the OS sandbox
    /// `allow_workspace_edits` cannot vouch for commands and fetches (a command names no path it
    /// will write), so those fall back to `ask` (rejected when no human can answer).
    fn policy_for(&self, request: &RequestPermissionRequest) -> PermissionPolicy {
        use agent_client_protocol::v1::schema::ToolKind;
        let unconfinable = matches!(
            request.tool_call.fields.kind,
            Some(ToolKind::Execute | ToolKind::Fetch)
        );
        if self.policy == PermissionPolicy::AllowWorkspaceEdits
            && unconfinable
            && !self.sandbox_active
        {
            tracing::info!(
                instance_id = %self.instance_id,
                kind = ?request.tool_call.fields.kind,
                "no OS sandbox: a command or fetch is asked about instead of granted"
            );
            PermissionPolicy::Ask
        } else {
            self.policy
        }
    }

    /// The first path the tool call names (locations, or the usual path fields of its raw input)
    /// that resolves outside the workspace, with the reason.
    fn outside_path(&self, request: &RequestPermissionRequest) -> Option<String> {
        let fields = &request.tool_call.fields;
        let mut paths: Vec<PathBuf> = fields
            .locations
            .iter()
            .flatten()
            .map(|location| location.path.clone())
            .collect();
        if let Some(serde_json::Value::Object(input)) = &fields.raw_input {
            for key in ["file_path", "filePath", "path", "notebook_path"] {
                if let Some(serde_json::Value::String(path)) = input.get(key) {
                    paths.push(PathBuf::from(path));
                }
            }
        }
        paths
            .iter()
            .find_map(|path| resolve_in_workspace(&self.workspace, path).err())
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn permission(state: &ClientState, path: &Path) -> RequestPermissionOutcome {
        use agent_client_protocol::v1::schema::{
            PermissionOption, ToolCallLocation, ToolCallUpdate, ToolCallUpdateFields,
        };
        let request = RequestPermissionRequest::new(
            "s1",
            ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new()
                    .title("Write")
                    .locations(vec![ToolCallLocation::new(path)]),
            ),
            vec![
                PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
                PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
            ],
        );
        state.answer_permission(&request).await.outcome
    }

    /// Answers every `ask` with a fixed choice.
    #[derive(Debug)]
    struct FixedBroker(Option<&'static str>);

    #[async_trait::async_trait]
    impl crate::agent::PermissionBroker for FixedBroker {
        async fn ask(&self, ask: crate::agent::PermissionAsk) -> Option<String> {
            assert_eq!(
                ask.options
                    .iter()
                    .map(|o| o.kind.as_str())
                    .collect::<Vec<_>>(),
                ["allow_once", "reject_once"]
            );
            self.0.map(str::to_owned)
        }
    }

    #[tokio::test]
    async fn ask_waits_for_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let state = |broker: Option<&'static str>| ClientState {
            instance_id: "i1".to_owned(),
            workspace: ws.clone(),
            policy: PermissionPolicy::Ask,
            broker: Some(std::sync::Arc::new(FixedBroker(broker))),
            sandbox_active: true,
        };
        let selected =
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("yes".to_owned()));
        assert_eq!(
            permission(&state(Some("yes")), &ws.join("a.txt")).await,
            selected
        );
        assert_eq!(
            permission(&state(None), &ws.join("a.txt")).await,
            RequestPermissionOutcome::Cancelled
        );
        // An answer the agent did not offer grants nothing.
        assert_eq!(
            permission(&state(Some("maybe")), &ws.join("a.txt")).await,
            RequestPermissionOutcome::Cancelled
        );
    }

    #[tokio::test]
    async fn allowing_workspace_edits_rejects_paths_outside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let state = |policy| ClientState {
            instance_id: "i1".to_owned(),
            workspace: ws.clone(),
            policy,
            broker: None,
            sandbox_active: true,
        };
        let selected = |id: &str| {
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id.to_owned()))
        };
        let allow = state(PermissionPolicy::AllowWorkspaceEdits);
        assert_eq!(permission(&allow, &ws.join("a.txt")).await, selected("yes"));
        assert_eq!(
            permission(&allow, &ws.join("../a.txt")).await,
            selected("no")
        );
        assert_eq!(
            permission(&allow, Path::new("/etc/passwd")).await,
            selected("no")
        );
        let deny = state(PermissionPolicy::Deny);
        assert_eq!(permission(&deny, &ws.join("a.txt")).await, selected("no"));
        let ask = state(PermissionPolicy::Ask);
        assert_eq!(permission(&ask, &ws.join("a.txt")).await, selected("no"));
    }

    #[tokio::test]
    async fn without_the_sandbox_commands_are_asked_about_not_granted() {
        use agent_client_protocol::v1::schema::{
            PermissionOption, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
        };
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let request = |kind: ToolKind| {
            RequestPermissionRequest::new(
                "s1",
                ToolCallUpdate::new(
                    "t1",
                    ToolCallUpdateFields::new().title("python3 -c …").kind(kind),
                ),
                vec![
                    PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
                    PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
                ],
            )
        };
        let state = |sandbox_active, broker: Option<&'static str>| ClientState {
            instance_id: "i1".to_owned(),
            workspace: ws.clone(),
            policy: PermissionPolicy::AllowWorkspaceEdits,
            broker: broker.map(|answer| {
                std::sync::Arc::new(FixedBroker(Some(answer)))
                    as std::sync::Arc<dyn crate::agent::PermissionBroker>
            }),
            sandbox_active,
        };
        let selected = |id: &str| {
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id.to_owned()))
        };
        let answer = |state: ClientState, kind| async move {
            state.answer_permission(&request(kind)).await.outcome
        };
        // Sandboxed: a command cannot write outside, so the policy grants it.
        assert_eq!(
            answer(state(true, None), ToolKind::Execute).await,
            selected("yes")
        );
        // Unsandboxed: commands and fetches go to a human, or are rejected without one.
        assert_eq!(
            answer(state(false, None), ToolKind::Execute).await,
            selected("no")
        );
        assert_eq!(
            answer(state(false, None), ToolKind::Fetch).await,
            selected("no")
        );
        assert_eq!(
            answer(state(false, Some("yes")), ToolKind::Execute).await,
            selected("yes")
        );
        // Edits still follow the path check either way.
        assert_eq!(
            answer(state(false, None), ToolKind::Edit).await,
            selected("yes")
        );
    }

    #[test]
    fn confinement_follows_symlinks_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let ws = root.join("ws");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();

        assert_eq!(
            resolve_in_workspace(&ws, &ws.join("src/new/file.rs")).unwrap(),
            ws.join("src/new/file.rs")
        );
        assert_eq!(
            resolve_in_workspace(&ws, Path::new("a.txt")).unwrap(),
            ws.join("a.txt")
        );
        assert!(resolve_in_workspace(&ws, &root.join("outside/x")).is_err());
        assert!(resolve_in_workspace(&ws, &ws.join("../outside/x")).is_err());
        assert!(resolve_in_workspace(&ws, &ws.join("nope/../../outside/x")).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("outside"), ws.join("link")).unwrap();
            assert!(resolve_in_workspace(&ws, &ws.join("link/x")).is_err());
            std::os::unix::fs::symlink(ws.join("src"), ws.join("inner")).unwrap();
            assert_eq!(
                resolve_in_workspace(&ws, &ws.join("inner/y")).unwrap(),
                ws.join("src/y")
            );
        }
    }
}
