//! One agent process and what spectask knows of it: its start (spawned under the shim in the
//! workspace, with the client state that answers its requests), the `initialize` handshake and the
//! optional `authenticate`, requests with their errors mapped, and its shutdown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    ClientCapabilities, FileSystemCapabilities, Implementation, InitializeRequest,
    InitializeResponse,
};
use agent_client_protocol::{
    JsonRpcRequest, is_connection_terminated, is_incoming_transport_closed,
};

use super::client::ClientState;
use super::connection::Connection;
use super::process::{self, AgentProcess, TERMINATE_GRACE};
use super::stdout::{StdoutLimits, UPDATE_BACKLOG};
use super::supervisor::InstanceSupervision;
use super::{AcpProfile, AcpRuntime, SETUP_TIMEOUT};
use crate::agent::catalog::{AgentHandshake, AgentInfo, AuthMethodInfo};
use crate::agent::{AgentError, AgentResult, InstanceId, InstanceSpec};

/// How long the connection gets to wind down after stop before its driver is aborted.
pub(super) const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// One running agent process and what spectask knows of it.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) id: InstanceId,
    pub(super) profile: String,
    pub(super) workspace: PathBuf,
    /// The spec's extra roots, canonical, sorted: writable in the sandbox, open to the client's
    /// `fs/*` methods, and where threads' working directories may be.
    pub(super) extra_roots: Vec<PathBuf>,
    /// What answers the agent's requests; it keeps each session's working directory.
    pub(super) client: Arc<ClientState>,
    pub(super) process: AgentProcess,
    pub(super) connection: Connection,
    /// `agentCapabilities.loadSession` from `initialize`.
    pub(super) load_session: bool,
    /// Sessions created or loaded by this process: the only ones a turn may run on.
    pub(super) loaded: Mutex<HashSet<String>>,
    /// Uptime, whether it ended, prompts in flight.
    pub(super) supervision: InstanceSupervision,
    /// `agentCapabilities.mcpCapabilities.http` from `initialize`.
    pub(super) mcp_http: bool,
    /// Whether "this agent gets no MCP tools" was logged already.
    pub(super) warned_no_mcp: AtomicBool,
    /// Whether (and how) the agent runs sandboxed.
    pub(super) sandbox: crate::agent::SandboxStatus,
    /// Set when a request saw the transport end. The connection's own closed flag is set only once
    /// its driver has wound down and the process is reaped later still: without this, a dispatch
    /// right after a `Disconnected` turn could find the lost process "alive" and reuse it.
    pub(super) went_away: AtomicBool,
    /// What the agent answered to `initialize`, once it did.
    pub(super) handshake: Option<AgentHandshake>,
}

impl Instance {
    pub(super) fn is_alive(&self) -> bool {
        !self.went_away.load(Ordering::SeqCst)
            && !self.process.has_exited()
            && !self.connection.is_closed()
    }

    /// Records that the agent is gone, whatever the connection and the process show yet.
    pub(super) fn mark_gone(&self) {
        self.went_away.store(true, Ordering::SeqCst);
    }

    pub(super) fn loaded(&self) -> MutexGuard<'_, HashSet<String>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes stdin (by ending the connection), then terminates the process group. Intentional:
    /// not reported as a loss.
    pub(super) async fn shutdown(&self) {
        self.supervision.end();
        self.connection.close(CLOSE_GRACE).await;
        self.process.terminate(TERMINATE_GRACE).await;
    }

    /// Sends a request and waits for its response, mapping a lost agent to `Disconnected`.
    pub(super) async fn request<R: JsonRpcRequest>(
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

    pub(super) fn error(&self, what: &str, err: &agent_client_protocol::Error) -> AgentError {
        if let Some(reason) = self.connection.failure() {
            // Not a transient loss: the agent broke a bound, and would again on a re-run.
            AgentError::Failed(format!("{what}: {reason}"))
        } else if is_incoming_transport_closed(err)
            || is_connection_terminated(err)
            || !self.is_alive()
        {
            self.mark_gone();
            AgentError::Disconnected(format!("{what}: the agent went away ({err})"))
        } else {
            AgentError::Failed(format!("{what}: {err}"))
        }
    }
}

impl AcpRuntime {
    /// Starts an instance's agent and runs its handshake; a failed handshake stops the agent.
    pub(super) async fn start(
        &self,
        spec: &InstanceSpec,
        profile: &AcpProfile,
        workspace: PathBuf,
        extra_roots: Vec<PathBuf>,
    ) -> AgentResult<Instance> {
        let mut instance = self.launch(spec, profile, workspace, extra_roots).await?;
        if let Err(err) = instance.handshake(profile, SETUP_TIMEOUT).await {
            instance.shutdown().await;
            return Err(err);
        }
        Ok(instance)
    }

    /// Spawns the agent of `profile` under the shim, sandboxed, and connects to it; nothing is
    /// sent yet ([`Instance::handshake`] comes next).
    pub(super) async fn launch(
        &self,
        spec: &InstanceSpec,
        profile: &AcpProfile,
        workspace: PathBuf,
        extra_roots: Vec<PathBuf>,
    ) -> AgentResult<Instance> {
        let ports = self
            .tool_server
            .get()
            .map(|tools| tools.tcp_ports())
            .unwrap_or_default();
        let launch = self.sandboxing.launch(
            spec.instance_id.as_str(),
            profile,
            &workspace,
            &extra_roots,
            &ports,
        )?;
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
            extra_roots: extra_roots.clone(),
            session_cwds: Mutex::default(),
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
        let connection = match Connection::start(pipes, client.clone(), limits).await {
            Ok(connection) => connection,
            Err(err) => {
                process.terminate(TERMINATE_GRACE).await;
                return Err(err);
            }
        };
        Ok(Instance {
            id: spec.instance_id.clone(),
            profile: profile.name.clone(),
            workspace,
            extra_roots,
            client,
            process,
            connection,
            load_session: false,
            loaded: Mutex::new(HashSet::new()),
            supervision: InstanceSupervision::default(),
            mcp_http: false,
            warned_no_mcp: AtomicBool::new(false),
            sandbox: launch.status,
            went_away: AtomicBool::new(false),
            handshake: None,
        })
    }
}

impl Instance {
    /// `initialize` (recording the answer in `handshake`), the protocol version check, then the
    /// profile's `authenticate`, each request given `timeout`. The caller stops the agent when
    /// this fails.
    pub(super) async fn handshake(
        &mut self,
        profile: &AcpProfile,
        timeout: Duration,
    ) -> AgentResult<()> {
        let initialize = InitializeRequest::new(ProtocolVersion::V1)
            .client_capabilities(
                ClientCapabilities::new().fs(FileSystemCapabilities::new()
                    .read_text_file(true)
                    .write_text_file(true)),
            )
            .client_info(Implementation::new("spectask", env!("CARGO_PKG_VERSION")));
        let response = self
            .request(initialize, "initialize", Some(timeout))
            .await?;
        self.handshake = Some(summarize(&response));
        if response.protocol_version != ProtocolVersion::V1 {
            return Err(AgentError::Failed(format!(
                "agent `{}` speaks ACP protocol version {}, spectask needs 1",
                profile.name,
                response.protocol_version.as_u16()
            )));
        }
        self.load_session = response.agent_capabilities.load_session;
        self.mcp_http = response.agent_capabilities.mcp_capabilities.http;
        if let Some(method) = &profile.authenticate {
            authenticate(self, profile, method, &response.auth_methods, timeout).await?;
        }
        tracing::info!(
            instance_id = %self.id,
            profile = %self.profile,
            agent = ?response.agent_info.as_ref().map(|info| (&info.name, &info.version)),
            load_session = self.load_session,
            mcp_http = self.mcp_http,
            "agent instance initialized"
        );
        Ok(())
    }
}

/// What people are shown of an `initialize` answer.
fn summarize(response: &InitializeResponse) -> AgentHandshake {
    let capabilities = &response.agent_capabilities;
    AgentHandshake {
        protocol_version: response.protocol_version.as_u16(),
        agent_info: response.agent_info.as_ref().map(|info| AgentInfo {
            name: info.name.clone(),
            title: info.title.clone(),
            version: info.version.clone(),
        }),
        load_session: capabilities.load_session,
        prompt_image: capabilities.prompt_capabilities.image,
        prompt_audio: capabilities.prompt_capabilities.audio,
        prompt_embedded_context: capabilities.prompt_capabilities.embedded_context,
        mcp_http: capabilities.mcp_capabilities.http,
        mcp_sse: capabilities.mcp_capabilities.sse,
        auth_methods: response
            .auth_methods
            .iter()
            .map(|method| AuthMethodInfo {
                id: method.id().to_string(),
                name: method.name().to_owned(),
                description: method.description().map(str::to_owned),
            })
            .collect(),
    }
}

/// Sends `authenticate` with `method`, which must be one the agent offers.
async fn authenticate(
    instance: &Instance,
    profile: &AcpProfile,
    method: &str,
    offered: &[agent_client_protocol::v1::schema::AuthMethod],
    timeout: Duration,
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
        .request(request, "authenticate", Some(timeout))
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
