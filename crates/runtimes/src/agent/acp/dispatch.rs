//! `AgentRuntime` for [`AcpRuntime`]: instances ensured (restarted when dead or reconfigured),
//! threads as ACP sessions (created, loaded after a restart, refreshed for new MCP credentials)
//! in their own working directories, turns as `session/prompt` with their updates routed to the
//! caller, and cancels.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, HttpHeader, LoadSessionRequest, McpServer, McpServerHttp,
    NewSessionRequest, PromptRequest, SessionId, StopReason as AcpStopReason, TextContent,
};
use async_trait::async_trait;
use tokio::sync::mpsc;

use super::connection::TurnRouter;
use super::instance::Instance;
use super::updates::TurnEvents;
use super::{AcpRuntime, SETUP_TIMEOUT, supervisor};
use crate::agent::{
    AgentCatalog, AgentCheck, AgentError, AgentEvent, AgentResult, AgentRuntime, AgentThreadId,
    AgentToolServer, CheckCommand, CheckOutput, InstanceId, InstanceLoss, InstanceSpec, StopReason,
    ThreadOwner, TurnRequest,
};

/// How long a turn waits for the prompt to fail after the agent process exited, so that output
/// the agent flushed before dying is still delivered.
const EXIT_DRAIN: Duration = Duration::from_secs(5);

/// Removes a turn's update route however the turn ends (including its future being dropped).
struct RouteGuard<'a> {
    router: &'a TurnRouter,
    session_id: &'a str,
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        self.router.unregister(self.session_id);
    }
}

/// `path` canonicalised, or a configuration error naming `what`.
fn canonical_dir(what: &str, path: &Path) -> AgentResult<PathBuf> {
    let canonical = path
        .canonicalize()
        .map_err(|err| AgentError::Config(format!("{what} {}: {err}", path.display())))?;
    if canonical.is_dir() {
        Ok(canonical)
    } else {
        Err(AgentError::Config(format!(
            "{what} {} is not a directory",
            canonical.display()
        )))
    }
}

impl super::AcpRuntime {
    /// The profile, canonical workspace and sorted extra roots an instance of `spec` runs with.
    pub(super) fn placement(
        &self,
        spec: &InstanceSpec,
    ) -> AgentResult<(&super::profiles::AcpProfile, PathBuf, Vec<PathBuf>)> {
        let profile = self.profile_for(spec)?;
        let requested = spec.workspace.as_ref().ok_or_else(|| {
            AgentError::Config(format!("instance `{}` has no workspace", spec.instance_id))
        })?;
        let workspace = canonical_dir("workspace", requested)?;
        let mut extra_roots = spec
            .extra_roots
            .iter()
            .map(|root| canonical_dir("extra root", root))
            .collect::<AgentResult<Vec<_>>>()?;
        extra_roots.sort();
        extra_roots.dedup();
        Ok((profile, workspace, extra_roots))
    }
}

impl AcpRuntime {
    /// The working directory a session of `instance` gets: `requested` (canonicalised), else the
    /// one `thread_id` had in this runtime, else the workspace. It must be the workspace or lie
    /// inside it or an extra root.
    fn session_cwd(
        &self,
        instance: &Instance,
        thread_id: Option<&str>,
        requested: Option<&Path>,
    ) -> AgentResult<PathBuf> {
        let cwd = match requested {
            Some(requested) => canonical_dir("thread working directory", requested)?,
            None => {
                let remembered = thread_id.and_then(|thread_id| {
                    self.thread_cwds()
                        .get(&instance.id)
                        .and_then(|threads| threads.get(thread_id).cloned())
                });
                match remembered {
                    Some(remembered) => canonical_dir("thread working directory", &remembered)?,
                    None => return Ok(instance.workspace.clone()),
                }
            }
        };
        let inside = std::iter::once(&instance.workspace)
            .chain(&instance.extra_roots)
            .any(|root| cwd.starts_with(root));
        if inside {
            Ok(cwd)
        } else {
            Err(AgentError::Config(format!(
                "thread working directory {} is outside the workspace and the task's roots of \
                 instance `{}`",
                cwd.display(),
                instance.id
            )))
        }
    }

    /// Records that session `session_id` of `instance` works in `cwd`: for the client's relative
    /// paths, and for later `session/load`s, even by a restarted agent.
    fn remember_cwd(&self, instance: &Instance, session_id: &str, cwd: PathBuf) {
        instance.client.set_session_cwd(session_id, cwd.clone());
        self.thread_cwds()
            .entry(instance.id.clone())
            .or_default()
            .insert(session_id.to_owned(), cwd);
    }

    /// Agents with session modes may start in one that acts without asking (claude-agent-acp's
    /// `auto`); spectask's permission policies only hold if the agent asks, so a session whose
    /// agent offers a `default` mode is switched to it.
    async fn leave_auto_mode(
        &self,
        instance: &Instance,
        session_id: &str,
        modes: Option<&agent_client_protocol::v1::schema::SessionModeState>,
    ) -> AgentResult<()> {
        let Some(modes) = modes else { return Ok(()) };
        let current = modes.current_mode_id.to_string();
        if current == "default"
            || !modes
                .available_modes
                .iter()
                .any(|m| m.id.to_string() == "default")
        {
            return Ok(());
        }
        let request = agent_client_protocol::v1::schema::SetSessionModeRequest::new(
            SessionId::new(session_id),
            agent_client_protocol::v1::schema::SessionModeId::new("default"),
        );
        instance
            .request(request, "session/set_mode", Some(SETUP_TIMEOUT))
            .await?;
        tracing::info!(instance_id = %instance.id, %session_id, from = %current, "session switched to the agent's default (asking) mode");
        Ok(())
    }

    /// The MCP servers a session of `owner` is given: the tool server's, with fresh credentials,
    /// when a work session owns it and the agent speaks HTTP MCP; none for planning threads.
    async fn mcp_servers_for_session(
        &self,
        instance: &Instance,
        owner: &ThreadOwner,
    ) -> AgentResult<Vec<McpServer>> {
        let Some(tools) = self.tool_server.get() else {
            return Ok(Vec::new());
        };
        let Some(work_session_id) = owner.work_session() else {
            return Ok(Vec::new());
        };
        if !instance.mcp_http {
            if !instance.warned_no_mcp.swap(true, Ordering::Relaxed) {
                tracing::warn!(instance_id = %instance.id, profile = %instance.profile, "the agent does not support HTTP MCP servers; its threads get no spectask tools");
            }
            return Ok(Vec::new());
        }
        let endpoints = tools
            .endpoints_for_thread(&instance.id, work_session_id)
            .await?;
        Ok(endpoints
            .into_iter()
            .map(|endpoint| {
                McpServer::Http(
                    McpServerHttp::new(endpoint.name, endpoint.url).headers(
                        endpoint
                            .headers
                            .into_iter()
                            .map(|(name, value)| HttpHeader::new(name, value))
                            .collect(),
                    ),
                )
            })
            .collect())
    }
}

#[async_trait]
impl AgentRuntime for AcpRuntime {
    fn kind(&self) -> &'static str {
        "acp"
    }

    fn knows_agent(&self, agent: &str) -> bool {
        self.profiles.contains_key(agent)
    }

    fn describe_agents(&self) -> AgentCatalog {
        self.catalog()
    }

    async fn check_agent(&self, name: &str, check_id: &InstanceId) -> Option<AgentCheck> {
        self.check(name, check_id).await
    }

    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()> {
        let (profile, workspace, extra_roots) = self.placement(spec)?;
        let slot = self
            .slots()
            .entry(spec.instance_id.clone())
            .or_default()
            .clone();
        let mut current = slot.lock().await;
        if let Some(instance) = current.as_ref() {
            if instance.is_alive()
                && instance.workspace == workspace
                && instance.extra_roots == extra_roots
                && instance.profile == profile.name
            {
                instance.supervision.touch();
                return Ok(());
            }
            if instance.is_alive() {
                tracing::warn!(instance_id = %spec.instance_id, "instance configuration changed; restarting its agent");
            } else {
                // Usually the watchdog reported it already; then this is a no-op.
                self.supervisor
                    .lost(instance, "found dead at dispatch".to_owned());
            }
            instance.shutdown().await;
            *current = None;
        }
        self.supervisor
            .before_start(spec.instance_id.as_str())
            .await;
        match self.start(spec, profile, workspace, extra_roots).await {
            Ok(instance) => {
                let instance = Arc::new(instance);
                supervisor::spawn_watchdog(
                    self.supervisor.clone(),
                    &instance,
                    self.limits.idle_timeout,
                );
                self.latest()
                    .insert(spec.instance_id.clone(), Arc::downgrade(&instance));
                *current = Some(instance);
                Ok(())
            }
            Err(err) => {
                // Only the agent's own failures back off: a misconfiguration (an unknown
                // program, an unoffered auth method) fails the same way at once every time.
                if !matches!(err, AgentError::Config(_)) {
                    self.supervisor.start_failed(spec.instance_id.as_str());
                }
                Err(err)
            }
        }
    }

    async fn create_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        cwd: Option<&Path>,
    ) -> AgentResult<AgentThreadId> {
        let instance = self.instance(instance_id).await?;
        instance.supervision.touch();
        let cwd = self.session_cwd(&instance, None, cwd)?;
        let request = NewSessionRequest::new(cwd.clone())
            .mcp_servers(self.mcp_servers_for_session(&instance, owner).await?);
        let response = instance
            .request(request, "session/new", Some(SETUP_TIMEOUT))
            .await?;
        let session_id = response.session_id.0.to_string();
        self.leave_auto_mode(&instance, &session_id, response.modes.as_ref())
            .await?;
        tracing::info!(%instance_id, %owner, %session_id, cwd = %cwd.display(), "ACP session created");
        self.remember_cwd(&instance, &session_id, cwd);
        instance.loaded().insert(session_id.clone());
        Ok(AgentThreadId::new(session_id))
    }

    fn attach_tool_server(&self, tools: Arc<dyn AgentToolServer>) {
        if self.tool_server.set(tools).is_err() {
            tracing::warn!("a tool server is already attached; keeping the first");
        }
    }

    async fn resume_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()> {
        let thread_id = thread_id.as_str();
        let instance = self.instance(instance_id).await?;
        instance.supervision.touch();
        let cwd = self.session_cwd(&instance, Some(thread_id), cwd)?;
        if instance.loaded().contains(thread_id) {
            let current = self
                .thread_cwds()
                .get(&instance.id)
                .and_then(|threads| threads.get(thread_id).cloned());
            if current.as_ref().unwrap_or(&instance.workspace) == &cwd {
                return Ok(());
            }
            if !instance.load_session {
                return Err(AgentError::Config(format!(
                    "thread `{thread_id}` cannot move to {}: the agent cannot load sessions",
                    cwd.display()
                )));
            }
            // A session's cwd is set by `session/new` or `session/load` only: load it again.
            instance.loaded().remove(thread_id);
        }
        if !instance.load_session {
            return Err(AgentError::UnknownThread(thread_id.to_owned()));
        }
        let request = LoadSessionRequest::new(SessionId::new(thread_id), cwd.clone())
            .mcp_servers(self.mcp_servers_for_session(&instance, owner).await?);
        match instance
            .request(request, "session/load", Some(SETUP_TIMEOUT))
            .await
        {
            Ok(response) => {
                self.leave_auto_mode(&instance, thread_id, response.modes.as_ref())
                    .await?;
                tracing::info!(%instance_id, session_id = %thread_id, cwd = %cwd.display(), "ACP session loaded");
                self.remember_cwd(&instance, thread_id, cwd);
                instance.loaded().insert(thread_id.to_owned());
                Ok(())
            }
            Err(AgentError::Failed(reason)) => {
                tracing::warn!(%instance_id, session_id = %thread_id, %reason, "the agent could not load the session");
                Err(AgentError::UnknownThread(thread_id.to_owned()))
            }
            Err(other) => Err(other),
        }
    }

    async fn refresh_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()> {
        let instance = self.instance(instance_id).await?;
        if instance.load_session {
            // Forgetting the thread makes the resume below send `session/load`, which carries the
            // MCP servers with freshly minted credentials.
            instance.loaded().remove(thread_id.as_str());
        } else {
            tracing::warn!(%instance_id, session_id = %thread_id, "the agent cannot load sessions; the thread keeps its expired MCP credentials");
        }
        self.resume_thread(instance_id, owner, thread_id, cwd).await
    }

    async fn run_turn(
        &self,
        request: &TurnRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> AgentResult<StopReason> {
        let thread_id = request.thread_id.as_str();
        let instance = self.instance(&request.instance_id).await?;
        if !instance.is_alive() {
            return Err(AgentError::Disconnected(format!(
                "agent instance `{}` is not running",
                instance.id
            )));
        }
        if !instance.loaded().contains(thread_id) {
            return Err(AgentError::UnknownThread(thread_id.to_owned()));
        }
        let router = &instance.connection.router;
        let Some(mut updates) = router.register(thread_id) else {
            return Err(AgentError::Failed(format!(
                "thread `{}` is already running a turn",
                request.thread_id
            )));
        };
        let guard = RouteGuard {
            router,
            session_id: thread_id,
        };
        let pending = instance.supervision.prompt_sent(thread_id);
        tracing::debug!(instance_id = %instance.id, thread = %request.thread_id, turn_id = %request.turn_id, "prompt sent");
        let prompt = instance
            .connection
            .cx
            .send_request(PromptRequest::new(
                SessionId::new(thread_id),
                vec![ContentBlock::Text(TextContent::new(
                    request.prompt.as_str(),
                ))],
            ))
            .block_task();
        tokio::pin!(prompt);
        let mut converter = TurnEvents::default();
        let mut exited = false;
        let result = loop {
            tokio::select! {
                biased;
                Some(update) = updates.recv() => {
                    if let Some(event) = converter.convert(update) {
                        // A closed receiver does not stop the turn.
                        let _ = events.send(event).await;
                    }
                }
                result = &mut prompt => {
                    pending.answered();
                    break Some(result);
                }
                status = instance.process.wait_exit(), if !exited => {
                    // The prompt fails once the agent's stdout closes; give it the time to
                    // deliver what the agent flushed before dying.
                    tracing::warn!(instance_id = %instance.id, %status, turn_id = %request.turn_id, "agent exited mid-turn");
                    exited = true;
                }
                () = tokio::time::sleep(EXIT_DRAIN), if exited => break None,
            }
        };
        drop(guard);
        drop(pending);
        // The route is gone, so the channel ends after what the dispatch loop already sent.
        while let Some(update) = updates.recv().await {
            if let Some(event) = converter.convert(update) {
                let _ = events.send(event).await;
            }
        }
        let response = match result {
            Some(Ok(response)) => response,
            Some(Err(err)) => return Err(instance.error("session/prompt", &err)),
            None => {
                return Err(match instance.connection.failure() {
                    Some(reason) => AgentError::Failed(format!("session/prompt: {reason}")),
                    None => {
                        instance.mark_gone();
                        AgentError::Disconnected("the agent process exited mid-turn".to_owned())
                    }
                });
            }
        };
        tracing::debug!(instance_id = %instance.id, turn_id = %request.turn_id, stop_reason = ?response.stop_reason, "turn ended");
        match response.stop_reason {
            AcpStopReason::EndTurn => Ok(StopReason::EndTurn),
            AcpStopReason::Cancelled => Ok(StopReason::Cancelled),
            AcpStopReason::Refusal => Ok(StopReason::Refusal),
            AcpStopReason::MaxTokens => Ok(StopReason::MaxTokens),
            AcpStopReason::MaxTurnRequests => Ok(StopReason::MaxTurnRequests),
            other => Err(AgentError::Failed(format!("unknown stop reason {other:?}"))),
        }
    }

    async fn cancel_turn(
        &self,
        instance_id: &InstanceId,
        thread_id: &AgentThreadId,
    ) -> AgentResult<()> {
        let thread_id = thread_id.as_str();
        let instance = self.instance(instance_id).await?;
        instance
            .connection
            .cx
            .send_notification(CancelNotification::new(SessionId::new(thread_id)))
            .map_err(|err| instance.error("session/cancel", &err))?;
        supervisor::expect_cancel_answer(self.supervisor.clone(), &instance, thread_id);
        tracing::info!(%instance_id, %thread_id, "turn cancel requested");
        Ok(())
    }

    fn take_lost_instances(&self) -> Vec<InstanceLoss> {
        self.supervisor.take_losses()
    }

    fn running_instances(&self) -> Vec<InstanceId> {
        self.slots().keys().cloned().collect()
    }

    fn thread_is_live(&self, instance_id: &InstanceId, thread_id: &AgentThreadId) -> bool {
        self.latest_instance(instance_id).is_some_and(|instance| {
            instance.is_alive() && instance.loaded().contains(thread_id.as_str())
        })
    }

    fn sandbox_status(&self, instance_id: &InstanceId) -> Option<crate::agent::SandboxStatus> {
        self.latest_instance(instance_id)
            .filter(|instance| instance.is_alive())
            .map(|instance| instance.sandbox.clone())
    }

    async fn run_check(
        &self,
        spec: &InstanceSpec,
        check: &CheckCommand,
    ) -> AgentResult<CheckOutput> {
        self.run_check_sandboxed(spec, check).await
    }

    async fn shutdown_instance(&self, instance_id: &InstanceId) -> AgentResult<()> {
        self.supervisor.forget(instance_id.as_str());
        self.latest().remove(instance_id);
        self.thread_cwds().remove(instance_id);
        let slot = self.slots().remove(instance_id);
        if let Some(slot) = slot
            && let Some(instance) = slot.lock().await.take()
        {
            instance.shutdown().await;
            tracing::info!(%instance_id, "agent instance shut down");
        }
        Ok(())
    }
}
