//! The client duties spectask owes an ACP agent: `fs/read_text_file` and `fs/write_text_file`
//! confined to the instance's workspace, and answers to `session/request_permission` from the
//! profile's policy.
//!
//! Confinement works on resolved paths: `~/…` is expanded against the agent's `HOME` (as the
//! agent's own tools would; `~user` is refused), the longest existing prefix of the path is
//! canonicalised (so symlinks anywhere in it are followed) and the rest may only name new plain
//! components. Anything that lands outside the workspace is refused and logged as a security
//! event.
//!
//! Protected paths (git's internals under `.git/`, `.envrc`, which direnv runs, and `.husky/`,
//! whose hooks git runs) are refused under every policy, through `fs/write_text_file` and in
//! permission requests that name them, unless the profile sets `allow_protected_paths`.
//!
//! `fs/write_text_file` obeys the policy: `deny` refuses it; `allow_workspace_edits` writes;
//! `ask` writes without asking again when a human already granted a permission request of the
//! same session that named this path (agents such as claude-agent-acp ask first, then write), and
//! otherwise puts the write itself to the human as an `edit` request.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use agent_client_protocol::v1::schema::{
    PermissionOptionKind, ReadTextFileRequest, ReadTextFileResponse, RequestPermissionOutcome,
    RequestPermissionRequest, RequestPermissionResponse, SelectedPermissionOutcome,
    WriteTextFileRequest, WriteTextFileResponse,
};

use super::profiles::PermissionPolicy;

/// What the client side of one instance needs to answer the agent.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) instance_id: crate::agent::InstanceId,
    /// Canonical, so a resolved path can be compared with `starts_with`.
    pub(crate) workspace: PathBuf,
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

/// The largest raw input shown to a human as JSON; a larger one is shown as a cut string.
const MAX_ASK_RAW_INPUT: usize = 16 * 1024;

/// Why `resolved` (inside `workspace`) is a protected path, if it is: files that git or other
/// tools execute or trust, so a write there runs code outside any review.
pub(crate) fn protected_reason(workspace: &Path, resolved: &Path) -> Option<&'static str> {
    let relative = resolved.strip_prefix(workspace).unwrap_or(resolved);
    let names: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    if names.iter().any(|name| *name == ".git") {
        return Some("git's internals (hooks, config) under .git");
    }
    if names.iter().any(|name| *name == ".husky") {
        return Some("git hooks run by husky (.husky)");
    }
    if names.last().is_some_and(|name| *name == ".envrc") {
        return Some(".envrc, which direnv runs");
    }
    None
}

/// Words in a command that point at a protected path (a heuristic for commands, which name paths
/// in free text; the OS sandbox is what actually confines them).
const PROTECTED_IN_COMMANDS: [&str; 4] = [".git/hooks", ".git/config", ".envrc", ".husky/"];

/// `requested` with a leading `~` expanded against `home`, as a shell would for the agent.
/// `~user` forms are refused: resolving another user's home is not something spectask does.
pub(crate) fn expand_home(home: Option<&Path>, requested: &Path) -> Result<PathBuf, String> {
    let mut components = requested.components();
    let Some(Component::Normal(first)) = components.next() else {
        return Ok(requested.to_path_buf());
    };
    let Some(first) = first.to_str() else {
        return Ok(requested.to_path_buf());
    };
    if first == "~" {
        let home = home.ok_or_else(|| {
            format!(
                "{} names the home directory, and the agent has no HOME",
                requested.display()
            )
        })?;
        Ok(home.join(components.as_path()))
    } else if first.starts_with('~') {
        Err(format!(
            "{}: `~user` paths are not supported",
            requested.display()
        ))
    } else {
        Ok(requested.to_path_buf())
    }
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
    /// Resolves `requested` (after `~` expansion) inside the workspace.
    fn resolve(&self, requested: &Path) -> Result<PathBuf, String> {
        let expanded = expand_home(self.home.as_deref(), requested)?;
        resolve_in_workspace(&self.workspace, &expanded)
    }

    fn confine(
        &self,
        operation: &str,
        requested: &Path,
    ) -> Result<PathBuf, agent_client_protocol::Error> {
        self.resolve(requested).map_err(|reason| {
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

    /// Why a write of `path` (resolved) is refused whatever the policy, if it is.
    fn protected(&self, path: &Path) -> Option<&'static str> {
        if self.allow_protected_paths {
            return None;
        }
        protected_reason(&self.workspace, path)
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
        let path = self.confine("write", &request.path)?;
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
            if let Ok(resolved) = self.resolve(&path)
                && let Some(reason) = protected_reason(&self.workspace, &resolved)
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
            if let Ok(resolved) = self.resolve(&path) {
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
            .find_map(|path| self.resolve(path).err())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The instance every test's client belongs to.
    fn instance() -> crate::agent::InstanceId {
        crate::agent::InstanceId::parse("zin_00000000000000000000000001").unwrap()
    }

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
            instance_id: instance(),
            workspace: ws.clone(),
            policy: PermissionPolicy::Ask,
            broker: Some(std::sync::Arc::new(FixedBroker(broker))),
            home: None,
            allow_protected_paths: false,
            grants: Mutex::default(),
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
            instance_id: instance(),
            workspace: ws.clone(),
            policy,
            broker: None,
            home: None,
            allow_protected_paths: false,
            grants: Mutex::default(),
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

    /// Answers every `ask` with `answer` and counts the asks, keeping the last one.
    #[derive(Debug, Default)]
    struct CountingBroker {
        answer: Option<&'static str>,
        asks: Mutex<Vec<crate::agent::PermissionAsk>>,
    }

    #[async_trait::async_trait]
    impl crate::agent::PermissionBroker for CountingBroker {
        async fn ask(&self, ask: crate::agent::PermissionAsk) -> Option<String> {
            self.asks.lock().unwrap().push(ask);
            self.answer.map(str::to_owned)
        }
    }

    fn state_in(
        ws: &Path,
        policy: PermissionPolicy,
        broker: Option<std::sync::Arc<CountingBroker>>,
    ) -> ClientState {
        ClientState {
            instance_id: instance(),
            workspace: ws.to_path_buf(),
            policy,
            broker: broker.map(|b| b as std::sync::Arc<dyn crate::agent::PermissionBroker>),
            home: Some(ws.join("home")),
            allow_protected_paths: false,
            grants: Mutex::default(),
            sandbox_active: true,
        }
    }

    async fn write(state: &ClientState, path: &str) -> bool {
        state
            .write_text_file(&WriteTextFileRequest::new("s1", path, "x"))
            .await
            .is_ok()
    }

    fn request_for(locations: &[&str], raw_input: serde_json::Value) -> RequestPermissionRequest {
        use agent_client_protocol::v1::schema::{
            PermissionOption, ToolCallLocation, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
        };
        RequestPermissionRequest::new(
            "s1",
            ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new()
                    .title("Tool")
                    .kind(ToolKind::Execute)
                    .raw_input(raw_input)
                    .locations(
                        locations
                            .iter()
                            .map(ToolCallLocation::new)
                            .collect::<Vec<_>>(),
                    ),
            ),
            vec![
                PermissionOption::new("yes", "Allow", PermissionOptionKind::AllowOnce),
                PermissionOption::new("no", "Reject", PermissionOptionKind::RejectOnce),
            ],
        )
    }

    #[tokio::test]
    async fn file_writes_obey_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        assert!(
            write(
                &state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None),
                "a.txt"
            )
            .await
        );
        assert!(ws.join("a.txt").exists());
        assert!(!write(&state_in(&ws, PermissionPolicy::Deny, None), "b.txt").await);
        assert!(!ws.join("b.txt").exists(), "deny writes nothing");
        assert!(
            !write(&state_in(&ws, PermissionPolicy::Ask, None), "c.txt").await,
            "ask without a broker refuses"
        );

        let rejecting = std::sync::Arc::new(CountingBroker::default());
        assert!(
            !write(
                &state_in(&ws, PermissionPolicy::Ask, Some(rejecting.clone())),
                "d.txt"
            )
            .await
        );
        assert!(!ws.join("d.txt").exists());
        let ask = rejecting.asks.lock().unwrap()[0].clone();
        assert_eq!(ask.kind.as_deref(), Some("edit"));
        assert_eq!(ask.locations, [ws.join("d.txt").display().to_string()]);

        let allowing = std::sync::Arc::new(CountingBroker {
            answer: Some("allow"),
            ..Default::default()
        });
        assert!(
            write(
                &state_in(&ws, PermissionPolicy::Ask, Some(allowing.clone())),
                "e.txt"
            )
            .await
        );
        assert!(ws.join("e.txt").exists());
    }

    #[tokio::test]
    async fn a_write_the_human_already_granted_is_not_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let broker = std::sync::Arc::new(CountingBroker {
            answer: Some("yes"),
            ..Default::default()
        });
        let state = state_in(&ws, PermissionPolicy::Ask, Some(broker.clone()));
        let path = ws.join("f.txt");
        let request = request_for(
            &[path.to_str().unwrap()],
            serde_json::json!({"file_path": path}),
        );
        let outcome = state.answer_permission(&request).await.outcome;
        assert_eq!(
            outcome,
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("yes".to_owned()))
        );
        assert!(write(&state, "f.txt").await);
        assert_eq!(
            broker.asks.lock().unwrap().len(),
            1,
            "the write after the grant asks nothing"
        );
        // Granted once: a second write of the same path is asked again (the broker's "yes" is
        // not an option of the write's own request, so it is refused).
        assert!(!write(&state, "f.txt").await);
        assert_eq!(broker.asks.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_ask_shows_kind_command_raw_input_and_locations() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let broker = std::sync::Arc::new(CountingBroker::default());
        let state = state_in(&ws, PermissionPolicy::Ask, Some(broker.clone()));
        let request = request_for(&["src"], serde_json::json!({"command": "cargo test"}));
        state.answer_permission(&request).await;
        let ask = broker.asks.lock().unwrap()[0].clone();
        assert_eq!(ask.kind.as_deref(), Some("execute"));
        assert_eq!(ask.command.as_deref(), Some("cargo test"));
        assert_eq!(
            ask.raw_input,
            Some(serde_json::json!({"command": "cargo test"}))
        );
        assert_eq!(ask.locations, ["src"]);
    }

    #[tokio::test]
    async fn protected_paths_are_refused_under_every_policy_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
        let no =
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("no".to_owned()));
        for policy in [
            PermissionPolicy::AllowWorkspaceEdits,
            PermissionPolicy::Ask,
            PermissionPolicy::Deny,
        ] {
            let broker = std::sync::Arc::new(CountingBroker {
                answer: Some("yes"),
                ..Default::default()
            });
            let state = state_in(&ws, policy, Some(broker.clone()));
            for path in [
                ".git/hooks/pre-commit",
                ".git/config",
                "sub/.envrc",
                ".husky/pre-push",
            ] {
                assert!(!write(&state, path).await, "{path} under {policy:?}");
                let request = request_for(&[path], serde_json::json!({}));
                assert_eq!(
                    state.answer_permission(&request).await.outcome,
                    no,
                    "{path} under {policy:?}"
                );
            }
            let command = request_for(
                &[],
                serde_json::json!({"command": "echo x > .git/hooks/post-checkout"}),
            );
            assert_eq!(state.answer_permission(&command).await.outcome, no);
            assert!(
                broker.asks.lock().unwrap().is_empty(),
                "nobody is asked about protected paths"
            );
        }
        assert!(!ws.join(".git/hooks/pre-commit").exists());
        let mut allowed = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
        allowed.allow_protected_paths = true;
        assert!(write(&allowed, ".git/hooks/pre-commit").await);
        assert!(write(&allowed, ".envrc").await);
        // `.github` and `.gitignore` are ordinary files.
        let plain = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
        assert!(write(&plain, ".github/workflows/ci.yml").await);
        assert!(write(&plain, ".gitignore").await);
    }

    #[tokio::test]
    async fn home_relative_paths_resolve_against_the_agents_home() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let ws = root.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let mut state = state_in(&ws, PermissionPolicy::AllowWorkspaceEdits, None);
        // HOME outside the workspace: `~/x` lands outside and is refused, not written as `ws/~/x`.
        state.home = Some(root.join("home"));
        assert!(!write(&state, "~/x").await);
        assert!(!ws.join("~").exists());
        let request = request_for(&["~/.bashrc"], serde_json::json!({}));
        let no =
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new("no".to_owned()));
        assert_eq!(state.answer_permission(&request).await.outcome, no);
        // HOME is the workspace: `~/x` is the workspace's x.
        state.home = Some(ws.clone());
        assert!(write(&state, "~/x").await);
        assert!(ws.join("x").exists());
        assert!(!write(&state, "~root/x").await, "~user is not supported");
        assert_eq!(
            expand_home(Some(Path::new("/h")), Path::new("~/a/b")).unwrap(),
            PathBuf::from("/h/a/b")
        );
        assert!(expand_home(Some(Path::new("/h")), Path::new("~bob/a")).is_err());
        assert!(expand_home(None, Path::new("~/a")).is_err());
        assert_eq!(
            expand_home(None, Path::new("a/~")).unwrap(),
            PathBuf::from("a/~")
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
            instance_id: instance(),
            workspace: ws.clone(),
            policy: PermissionPolicy::AllowWorkspaceEdits,
            broker: broker.map(|answer| {
                std::sync::Arc::new(CountingBroker {
                    answer: Some(answer),
                    asks: Mutex::default(),
                }) as std::sync::Arc<dyn crate::agent::PermissionBroker>
            }),
            home: None,
            allow_protected_paths: false,
            grants: Mutex::default(),
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
}
