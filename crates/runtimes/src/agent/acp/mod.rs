//! `AcpRuntime`: the production [`AgentRuntime`], hosting a SpecTask's threads in an agent that
//! speaks the Agent Client Protocol over stdio. spectask plays the client role Zed plays.
//!
//! One agent process per instance, started in the task's workspace (`process`), `initialize`d
//! once; one ACP session per thread (its `sessionId` is the thread id); one `session/prompt` per
//! turn, whose `session/update`s become [`AgentEvent`]s (`updates`). The agent's requests for
//! files and permissions are answered in `client`, over the connection in `connection`.
//!
//! Threads are only usable in the process that created or loaded them: after a restart,
//! `resume_thread` loads the same session with `session/load`, or fails, never opening another.
//! `supervisor` notices dead or hung agents, reports them, and paces restarts.
//!
//! Each `session/new` and `session/load` of a work session's thread names spectask's MCP server
//! (from the attached [`AgentToolServer`], with a fresh token) in `mcpServers`, if the agent
//! said in `initialize` that it speaks HTTP MCP.

pub mod profiles;

mod client;
mod connection;
mod process;
mod sandboxing;
mod stderr;
mod stdout;
mod supervisor;
mod updates;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    CancelNotification, ClientCapabilities, ContentBlock, FileSystemCapabilities, HttpHeader,
    Implementation, InitializeRequest, LoadSessionRequest, McpServer, McpServerHttp,
    NewSessionRequest, PromptRequest, SessionId, StopReason as AcpStopReason, TextContent,
};
use agent_client_protocol::{
    JsonRpcRequest, is_connection_terminated, is_incoming_transport_closed,
};
use async_trait::async_trait;
use tokio::sync::mpsc;

pub use profiles::{AcpProfile, PermissionPolicy};
pub use stdout::DEFAULT_MAX_LINE_BYTES;
pub use supervisor::SupervisionSettings;

use self::client::ClientState;
use self::connection::{Connection, TurnRouter};
use self::process::{AgentProcess, TERMINATE_GRACE};
use self::stdout::{StdoutLimits, UPDATE_BACKLOG};
use self::supervisor::{InstanceSupervision, Supervisor};
use self::updates::TurnEvents;
use super::shim::AgentShim;
use super::{
    AgentError, AgentEvent, AgentResult, AgentRuntime, AgentThreadId, AgentToolServer, InstanceId,
    InstanceLoss, InstanceSpec, StopReason, ThreadOwner, TurnRequest,
};

/// How long set-up requests (`initialize`, `session/new`, `session/load`) may take. Real agents
/// answer in a second or two; a stuck one must not hold a dispatch forever.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the connection gets to wind down after stop before its driver is aborted.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How long a turn waits for the prompt to fail after the agent process exited, so that output
/// the agent flushed before dying is still delivered.
const EXIT_DRAIN: Duration = Duration::from_secs(5);

/// The resource bounds of an ACP runtime's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// The longest line an agent may write to stdout; a longer one ends the agent with that
    /// reason instead of growing the server's memory.
    pub max_line_bytes: usize,
    /// An instance with no turn running for this long is shut down (and restarted on its next
    /// dispatch, resuming its threads with `session/load`); `None` keeps instances until their
    /// task ends.
    pub idle_timeout: Option<Duration>,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

/// How long an instance may sit without a turn before it is shut down, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Hosts instances on ACP agents described by profiles.
#[derive(Debug)]
pub struct AcpRuntime {
    profiles: BTreeMap<String, AcpProfile>,
    /// Every agent starts under this supervisor shim.
    shim: AgentShim,
    default_profile: Option<String>,
    /// One slot per instance id; the slot's async lock serialises starts and restarts.
    instances: Mutex<HashMap<InstanceId, Slot>>,
    /// Answers `ask`-policy permission requests; without one they are rejected.
    broker: Option<Arc<dyn super::PermissionBroker>>,
    /// Liveness probes, loss reports and restart backoff.
    supervisor: Arc<Supervisor>,
    /// The latest started instance of each id, readable without the slot's lock (which a
    /// restart holds while it backs off).
    latest: Mutex<HashMap<InstanceId, Weak<Instance>>>,
    /// spectask's MCP server for agents; set once the server knows its address.
    tool_server: OnceLock<Arc<dyn AgentToolServer>>,
    limits: AgentLimits,
    /// Where instances' private directories go and which secrets agents must not read.
    sandboxing: sandboxing::Sandboxing,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Instance>>>>;

/// One running agent process and what spectask knows of it.
#[derive(Debug)]
struct Instance {
    id: InstanceId,
    profile: String,
    workspace: PathBuf,
    process: AgentProcess,
    connection: Connection,
    /// `agentCapabilities.loadSession` from `initialize`.
    load_session: bool,
    /// Sessions created or loaded by this process: the only ones a turn may run on.
    loaded: Mutex<HashSet<String>>,
    /// Uptime, whether it ended, prompts in flight.
    supervision: InstanceSupervision,
    /// `agentCapabilities.mcpCapabilities.http` from `initialize`.
    mcp_http: bool,
    /// Whether "this agent gets no MCP tools" was logged already.
    warned_no_mcp: AtomicBool,
    /// Whether (and how) the agent runs sandboxed.
    sandbox: super::SandboxStatus,
}

impl Instance {
    fn is_alive(&self) -> bool {
        !self.process.has_exited() && !self.connection.is_closed()
    }

    fn loaded(&self) -> MutexGuard<'_, HashSet<String>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes stdin (by ending the connection), then terminates the process group. Intentional:
    /// not reported as a loss.
    async fn shutdown(&self) {
        self.supervision.end();
        self.connection.close(CLOSE_GRACE).await;
        self.process.terminate(TERMINATE_GRACE).await;
    }

    /// Sends a request and waits for its response, mapping a lost agent to `Disconnected`.
    async fn request<R: JsonRpcRequest>(
        &self,
        request: R,
        what: &str,
        timeout: Option<Duration>,
    ) -> AgentResult<R::Response> {
        let response = self.connection.cx.send_request(request).block_task();
        let result = match timeout {
            Some(timeout) => match tokio::time::timeout(timeout, response).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(AgentError::Failed(format!(
                        "{what}: no answer within {}s",
                        timeout.as_secs()
                    )));
                }
            },
            None => response.await,
        };
        result.map_err(|err| self.error(what, &err))
    }

    fn error(&self, what: &str, err: &agent_client_protocol::Error) -> AgentError {
        if let Some(reason) = self.connection.failure() {
            // Not a transient loss: the agent broke a bound, and would again on a re-run.
            AgentError::Failed(format!("{what}: {reason}"))
        } else if is_incoming_transport_closed(err)
            || is_connection_terminated(err)
            || !self.is_alive()
        {
            AgentError::Disconnected(format!("{what}: the agent went away ({err})"))
        } else {
            AgentError::Failed(format!("{what}: {err}"))
        }
    }
}

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

impl AcpRuntime {
    /// A runtime choosing among `profiles` by name; `default_profile` serves instances whose spec
    /// names no agent. Every agent runs under `shim`, which kills the agent's whole tree when the
    /// agent exits, when the instance is shut down and when the server dies.
    pub fn new(
        profiles: Vec<AcpProfile>,
        default_profile: Option<String>,
        shim: AgentShim,
    ) -> Self {
        Self {
            profiles: profiles
                .into_iter()
                .map(|profile| (profile.name.clone(), profile))
                .collect(),
            shim,
            default_profile,
            instances: Mutex::new(HashMap::new()),
            broker: None,
            supervisor: Arc::new(Supervisor::new(SupervisionSettings::default())),
            latest: Mutex::new(HashMap::new()),
            tool_server: OnceLock::new(),
            limits: AgentLimits::default(),
            sandboxing: sandboxing::Sandboxing::default(),
        }
    }

    /// The same runtime, bounding its agents as `limits` say.
    #[must_use]
    pub fn with_limits(mut self, limits: AgentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same runtime, keeping instances' private directories (temp dir, private home) in
    /// `data_dir/instances/` and hiding the data directory's secrets from sandboxed agents.
    /// Without it they go to the system's temp directory.
    #[must_use]
    pub fn with_data_dir(mut self, data_dir: PathBuf) -> Self {
        self.sandboxing = sandboxing::Sandboxing::new(Some(data_dir));
        self
    }

    /// The same runtime, probing and restarting its agents as `settings` say.
    #[must_use]
    pub fn with_supervision(mut self, settings: SupervisionSettings) -> Self {
        self.supervisor = Arc::new(Supervisor::new(settings));
        self
    }

    /// The same runtime, giving work-session threads the MCP servers `tools` names.
    #[must_use]
    pub fn with_tool_server(self, tools: Arc<dyn AgentToolServer>) -> Self {
        self.attach_tool_server(tools);
        self
    }

    /// The same runtime, asking `broker` whenever a profile's policy is `ask`.
    #[must_use]
    pub fn with_broker(mut self, broker: Arc<dyn super::PermissionBroker>) -> Self {
        self.broker = Some(broker);
        self
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<InstanceId, Slot>> {
        // Critical sections are single map operations; a poisoned map is still consistent.
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn profile_for(&self, spec: &InstanceSpec) -> AgentResult<&AcpProfile> {
        let name = spec
            .agent
            .as_ref()
            .or(self.default_profile.as_ref())
            .ok_or_else(|| {
                AgentError::Config("the task names no agent and there is no default".to_owned())
            })?;
        self.profiles
            .get(name)
            .ok_or_else(|| AgentError::Config(format!("unknown agent profile `{name}`")))
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

    async fn instance(&self, instance_id: &InstanceId) -> AgentResult<Arc<Instance>> {
        let slot = self.slots().get(instance_id).cloned();
        let instance = match slot {
            Some(slot) => slot.lock().await.clone(),
            None => None,
        };
        instance.ok_or_else(|| AgentError::UnknownInstance(instance_id.to_string()))
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

    async fn start(
        &self,
        spec: &InstanceSpec,
        profile: &AcpProfile,
        workspace: PathBuf,
    ) -> AgentResult<Instance> {
        let ports = self
            .tool_server
            .get()
            .map(|tools| tools.tcp_ports())
            .unwrap_or_default();
        let launch =
            self.sandboxing
                .launch(spec.instance_id.as_str(), profile, &workspace, &ports)?;
        let (process, pipes) = process::spawn(
            profile,
            &workspace,
            spec.instance_id.as_str(),
            &self.shim,
            &launch,
        )?;
        let client = Arc::new(ClientState {
            instance_id: spec.instance_id.clone(),
            workspace: workspace.clone(),
            policy: profile.permission_policy,
            broker: self.broker.clone(),
            sandbox_active: launch.status.active,
            // The HOME the agent really gets (a private one from the sandbox first).
            home: launch
                .env
                .get("HOME")
                .or_else(|| profile.env.get("HOME"))
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(PathBuf::from)),
            allow_protected_paths: profile.allow_protected_paths,
            grants: Mutex::default(),
        });
        let limits = Arc::new(StdoutLimits::new(
            self.limits.max_line_bytes,
            UPDATE_BACKLOG,
        ));
        let connection = match Connection::start(pipes, client, limits).await {
            Ok(connection) => connection,
            Err(err) => {
                process.terminate(TERMINATE_GRACE).await;
                return Err(err);
            }
        };
        let mut instance = Instance {
            id: spec.instance_id.clone(),
            profile: profile.name.clone(),
            workspace,
            process,
            connection,
            load_session: false,
            loaded: Mutex::new(HashSet::new()),
            supervision: InstanceSupervision::default(),
            mcp_http: false,
            warned_no_mcp: AtomicBool::new(false),
            sandbox: launch.status,
        };
        let initialize = InitializeRequest::new(ProtocolVersion::V1)
            .client_capabilities(
                ClientCapabilities::new().fs(FileSystemCapabilities::new()
                    .read_text_file(true)
                    .write_text_file(true)),
            )
            .client_info(Implementation::new("spectask", env!("CARGO_PKG_VERSION")));
        let response = match instance
            .request(initialize, "initialize", Some(SETUP_TIMEOUT))
            .await
        {
            Ok(response) if response.protocol_version == ProtocolVersion::V1 => response,
            Ok(response) => {
                instance.shutdown().await;
                return Err(AgentError::Failed(format!(
                    "agent `{}` speaks ACP protocol version {}, spectask needs 1",
                    profile.name,
                    response.protocol_version.as_u16()
                )));
            }
            Err(err) => {
                instance.shutdown().await;
                return Err(err);
            }
        };
        instance.load_session = response.agent_capabilities.load_session;
        instance.mcp_http = response.agent_capabilities.mcp_capabilities.http;
        if let Some(method) = &profile.authenticate
            && let Err(err) = authenticate(&instance, profile, method, &response.auth_methods).await
        {
            instance.shutdown().await;
            return Err(err);
        }
        tracing::info!(
            instance_id = %instance.id,
            profile = %instance.profile,
            agent = ?response.agent_info.as_ref().map(|info| (&info.name, &info.version)),
            load_session = instance.load_session,
            mcp_http = instance.mcp_http,
            "agent instance initialized"
        );
        Ok(instance)
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

    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()> {
        let profile = self.profile_for(spec)?;
        let requested = spec.workspace.as_ref().ok_or_else(|| {
            AgentError::Config(format!("instance `{}` has no workspace", spec.instance_id))
        })?;
        let workspace = requested.canonicalize().map_err(|err| {
            AgentError::Config(format!("workspace {}: {err}", requested.display()))
        })?;
        if !workspace.is_dir() {
            return Err(AgentError::Config(format!(
                "workspace {} is not a directory",
                workspace.display()
            )));
        }
        let slot = self
            .slots()
            .entry(spec.instance_id.clone())
            .or_default()
            .clone();
        let mut current = slot.lock().await;
        if let Some(instance) = current.as_ref() {
            if instance.is_alive()
                && instance.workspace == workspace
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
        match self.start(spec, profile, workspace).await {
            Ok(instance) => {
                let instance = Arc::new(instance);
                supervisor::spawn_watchdog(
                    self.supervisor.clone(),
                    &instance,
                    self.limits.idle_timeout,
                );
                self.latest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
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
    ) -> AgentResult<AgentThreadId> {
        let instance = self.instance(instance_id).await?;
        instance.supervision.touch();
        let request = NewSessionRequest::new(instance.workspace.clone())
            .mcp_servers(self.mcp_servers_for_session(&instance, owner).await?);
        let response = instance
            .request(request, "session/new", Some(SETUP_TIMEOUT))
            .await?;
        let session_id = response.session_id.0.to_string();
        self.leave_auto_mode(&instance, &session_id, response.modes.as_ref())
            .await?;
        instance.loaded().insert(session_id.clone());
        tracing::info!(%instance_id, %owner, %session_id, "ACP session created");
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
    ) -> AgentResult<()> {
        let thread_id = thread_id.as_str();
        let instance = self.instance(instance_id).await?;
        instance.supervision.touch();
        if instance.loaded().contains(thread_id) {
            return Ok(());
        }
        if !instance.load_session {
            return Err(AgentError::UnknownThread(thread_id.to_owned()));
        }
        let request =
            LoadSessionRequest::new(SessionId::new(thread_id), instance.workspace.clone())
                .mcp_servers(self.mcp_servers_for_session(&instance, owner).await?);
        match instance
            .request(request, "session/load", Some(SETUP_TIMEOUT))
            .await
        {
            Ok(response) => {
                self.leave_auto_mode(&instance, thread_id, response.modes.as_ref())
                    .await?;
                instance.loaded().insert(thread_id.to_owned());
                tracing::info!(%instance_id, session_id = %thread_id, "ACP session loaded");
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
    ) -> AgentResult<()> {
        let instance = self.instance(instance_id).await?;
        if instance.load_session {
            // Forgetting the thread makes the resume below send `session/load`, which carries the
            // MCP servers with freshly minted credentials.
            instance.loaded().remove(thread_id.as_str());
        } else {
            tracing::warn!(%instance_id, session_id = %thread_id, "the agent cannot load sessions; the thread keeps its expired MCP credentials");
        }
        self.resume_thread(instance_id, owner, thread_id).await
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
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance_id)
            .and_then(Weak::upgrade);
        latest.is_some_and(|instance| {
            instance.is_alive() && instance.loaded().contains(thread_id.as_str())
        })
    }

    fn sandbox_status(&self, instance_id: &InstanceId) -> Option<super::SandboxStatus> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance_id)
            .and_then(Weak::upgrade);
        latest
            .filter(|instance| instance.is_alive())
            .map(|instance| instance.sandbox.clone())
    }

    async fn shutdown_instance(&self, instance_id: &InstanceId) -> AgentResult<()> {
        self.supervisor.forget(instance_id.as_str());
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(instance_id);
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

impl Drop for AcpRuntime {
    fn drop(&mut self) {
        for slot in self.slots().values() {
            // Nothing else can hold a slot while the runtime is being dropped.
            if let Ok(current) = slot.try_lock()
                && let Some(instance) = current.as_ref()
            {
                instance.supervision.end();
                instance.connection.abort();
                instance.process.terminate_detached();
            }
        }
    }
}

/// Sends `authenticate` with `method`, which must be one the agent offers.
async fn authenticate(
    instance: &Instance,
    profile: &AcpProfile,
    method: &str,
    offered: &[agent_client_protocol::v1::schema::AuthMethod],
) -> AgentResult<()> {
    if !offered.iter().any(|m| m.id().to_string() == method) {
        let offered: Vec<String> = offered.iter().map(|m| m.id().to_string()).collect();
        return Err(AgentError::Config(format!(
            "agent `{}`: authenticate method `{method}` is not offered by the agent (it offers: {})",
            profile.name,
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )));
    }
    let request = agent_client_protocol::v1::schema::AuthenticateRequest::new(method.to_owned());
    match instance
        .request(request, "authenticate", Some(SETUP_TIMEOUT))
        .await
    {
        Ok(_) => {
            tracing::info!(instance_id = %instance.id, %method, "agent authenticated");
            Ok(())
        }
        Err(AgentError::Failed(reason)) => Err(AgentError::Failed(format!(
            "agent `{}` refused authentication with `{method}`: {reason}",
            profile.name
        ))),
        Err(other) => Err(other),
    }
}
