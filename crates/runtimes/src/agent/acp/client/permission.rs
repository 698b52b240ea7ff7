//! `session/request_permission`, answered by the profile's policy: requests naming protected
//! paths are rejected, `ask` goes to a human through the broker (a grant is remembered for the
//! agent's following write), and `allow_workspace_edits` checks the named paths and, without the
//! OS sandbox, sends commands and fetches to a human instead.

use std::path::PathBuf;

use agent_client_protocol::v1::schema::{
    PermissionOptionKind, RequestPermissionOutcome, RequestPermissionRequest,
    RequestPermissionResponse, SelectedPermissionOutcome,
};

use super::ClientState;
use super::paths::{PROTECTED_IN_COMMANDS, protected_reason};
use crate::agent::acp::profiles::PermissionPolicy;

/// The largest raw input shown to a human as JSON; a larger one is shown as a cut string.
const MAX_ASK_RAW_INPUT: usize = 16 * 1024;

impl ClientState {
    /// `session/request_permission`, answered by the profile's policy; `ask` waits for a human
    /// through the broker.
    pub(crate) async fn answer_permission(
        &self,
        request: &RequestPermissionRequest,
    ) -> RequestPermissionResponse {
        let title = request.tool_call.fields.title.as_deref().unwrap_or("");
        if let Some(reason) = self.names_protected_path(request) {
            tracing::warn!(
                security_event = "permission_protected_path",
                instance_id = %self.instance_id,
                session_id = %request.session_id,
                title,
                %reason,
                "rejected a permission request naming a protected path"
            );
            return choose(request, false);
        }
        let policy = self.policy_for(request);
        if let (PermissionPolicy::Ask, Some(broker)) = (policy, &self.broker) {
            let fields = &request.tool_call.fields;
            let raw_input = fields.raw_input.as_ref().map(|raw| {
                let text = raw.to_string();
                if text.len() <= MAX_ASK_RAW_INPUT {
                    raw.clone()
                } else {
                    let mut end = MAX_ASK_RAW_INPUT;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    serde_json::Value::String(format!("{}…", &text[..end]))
                }
            });
            let ask = crate::agent::PermissionAsk {
                instance_id: self.instance_id.clone(),
                thread_id: crate::agent::AgentThreadId::new(request.session_id.to_string()),
                tool_call_id: request.tool_call.tool_call_id.to_string(),
                title: title.to_owned(),
                kind: fields.kind.and_then(|kind| {
                    serde_json::to_value(kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                }),
                command: command_of(request).map(str::to_owned),
                raw_input,
                locations: fields
                    .locations
                    .iter()
                    .flatten()
                    .map(|location| location.path.display().to_string())
                    .collect(),
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
            if let Some(id) = &chosen
                && let Some(option) = request.options.iter().find(|o| &o.option_id == id)
            {
                self.remember_grant(request, option.kind);
            }
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
        tracing::debug!(instance_id = %self.instance_id, title, allow, "permission answered");
        choose(request, allow)
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

    /// The paths a permission request names: its locations and the usual path fields of its raw
    /// input, as the agent wrote them.
    fn named_paths(request: &RequestPermissionRequest) -> Vec<PathBuf> {
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
    }

    /// Why the request touches a protected path, if it does: a named path that resolves to one,
    /// or a command that mentions one.
    fn names_protected_path(&self, request: &RequestPermissionRequest) -> Option<String> {
        if self.allow_protected_paths {
            return None;
        }
        for path in Self::named_paths(request) {
            if let Ok(resolved) = self.resolve(&request.session_id.0, &path)
                && let Some(reason) = protected_reason(&self.roots(), &resolved)
            {
                return Some(format!("{}: {reason}", path.display()));
            }
        }
        let command = command_of(request)?;
        PROTECTED_IN_COMMANDS
            .iter()
            .find(|word| command.contains(*word))
            .map(|word| format!("the command mentions {word}"))
    }

    /// Records the paths of a request a human allowed, so the agent's following
    /// `fs/write_text_file` of them is not asked again.
    fn remember_grant(&self, request: &RequestPermissionRequest, kind: PermissionOptionKind) {
        let always = match kind {
            PermissionOptionKind::AllowOnce => false,
            PermissionOptionKind::AllowAlways => true,
            _ => return,
        };
        let session_id = request.session_id.to_string();
        let mut grants = self.grants();
        for path in Self::named_paths(request) {
            if let Ok(resolved) = self.resolve(&session_id, &path) {
                let entry = grants
                    .entry((session_id.clone(), resolved))
                    .or_insert(always);
                *entry |= always;
            }
        }
    }

    /// The first path the tool call names (locations, or the usual path fields of its raw input)
    /// that resolves outside the workspace, with the reason.
    fn outside_path(&self, request: &RequestPermissionRequest) -> Option<String> {
        Self::named_paths(request)
            .iter()
            .find_map(|path| self.resolve(&request.session_id.0, path).err())
    }
}

/// The command of a shell tool call (`rawInput.command`), if the request carries one.
fn command_of(request: &RequestPermissionRequest) -> Option<&str> {
    match &request.tool_call.fields.raw_input {
        Some(serde_json::Value::Object(input)) => input.get("command")?.as_str(),
        _ => None,
    }
}

/// Picks an allow option (`allow`) or a reject option of the request; `cancelled` when it offers
/// none of the wanted kind, the one answer that grants nothing.
fn choose(request: &RequestPermissionRequest, allow: bool) -> RequestPermissionResponse {
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
    let outcome = match chosen {
        Some(id) => RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id)),
        None => RequestPermissionOutcome::Cancelled,
    };
    RequestPermissionResponse::new(outcome)
}
