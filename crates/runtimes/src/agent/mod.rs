//! The agent runtime interface: what spectask needs from whatever hosts a task's threads (an ACP
//! agent process, a Zed instance).
//!
//! One instance per SpecTask, many threads per instance, one turn at a time per thread. A turn is
//! a single call, [`AgentRuntime::run_turn`], that streams what the agent produces through a
//! channel and returns the stop reason: events are tied to the call that caused them, so output
//! can never be attributed to the wrong turn. Failures of the thread or of the whole instance come
//! back as errors of the calls in flight.
//!
//! Ids are the domain's typed ids ([`InstanceId`], [`AgentThreadId`], and a [`ThreadOwner`] that
//! says whether a thread serves a work session or a planning session); the runtime knows nothing
//! of the store: the engine maps them.

pub mod acp;
pub mod catalog;
pub mod checks;
pub mod sandbox;
pub mod shim;
pub mod tools;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
pub use spectask_domain::{
    AgentPlanStep, AgentThreadId, InstanceId, ThreadOwner, ToolCallContent, ToolCallEntry,
    ToolCallLocation, UsageEntry,
};
use tokio::sync::mpsc;

pub use catalog::{AgentCatalog, AgentCheck};
pub use checks::{CheckCommand, CheckOutput};
pub use sandbox::SandboxStatus;
pub use tools::{AgentToolServer, McpEndpoint};

/// What an instance is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    /// The instance id spectask stored on the task (`zed_instance_id`).
    pub instance_id: InstanceId,
    pub spec_task_id: String,
    /// The workspace the agent works in (the task's `project_path`), if any.
    pub workspace: Option<PathBuf>,
    /// The implementation agent profile the task names, if any.
    pub agent: Option<String>,
    /// The task's `workspace_config`.
    pub config: serde_json::Value,
    /// More directories the agent may read and write besides the workspace (the task's worktree
    /// root, which must exist). A running instance started with other roots is restarted.
    pub extra_roots: Vec<PathBuf>,
}

/// One prompt for one thread.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    pub instance_id: InstanceId,
    /// The runtime's thread id, as returned by [`AgentRuntime::create_thread`].
    pub thread_id: AgentThreadId,
    /// spectask's turn id, for logs and the runtime's own bookkeeping.
    pub turn_id: String,
    pub prompt: String,
}

/// What an agent produces during a turn, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// A piece of the agent's reply.
    MessageChunk(String),
    /// A piece of the agent's visible reasoning.
    Thought(String),
    /// A tool call started or changed: its whole state with the change merged in.
    ToolCall(ToolCallEntry),
    /// The agent's plan; each report replaces the previous one.
    Plan(Vec<AgentPlanStep>),
    /// How much of its context window the agent uses.
    Usage(UsageEntry),
}

/// Why a turn ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The agent finished its work for this prompt.
    EndTurn,
    /// The turn was cancelled on request.
    Cancelled,
    /// The agent refused to continue.
    Refusal,
    /// The model ran out of output tokens.
    MaxTokens,
    /// The agent hit its own limit of model requests.
    MaxTurnRequests,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::Cancelled => "cancelled",
            StopReason::Refusal => "refusal",
            StopReason::MaxTokens => "max_tokens",
            StopReason::MaxTurnRequests => "max_turn_requests",
        }
    }
}

/// A runtime failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The instance is not running (never started, or shut down).
    #[error("agent instance `{0}` is not running")]
    UnknownInstance(String),
    /// The thread is not known to the instance and cannot be resumed.
    #[error("thread `{0}` cannot be resumed by the agent")]
    UnknownThread(String),
    /// The agent failed the turn or the thread.
    #[error("the agent failed: {0}")]
    Failed(String),
    /// The instance went away while the call was in flight (process exit, lost connection).
    #[error("the agent instance disconnected: {0}")]
    Disconnected(String),
    /// The runtime is misconfigured (unknown agent profile, unusable workspace).
    #[error("agent runtime misconfigured: {0}")]
    Config(String),
}

pub type AgentResult<T> = Result<T, AgentError>;

/// An instance that went away on its own: its process exited, or it stopped answering and was
/// terminated. An intentional shutdown is not a loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLoss {
    pub instance_id: InstanceId,
    pub reason: String,
}

/// A permission request an agent made, for a human to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAsk {
    pub instance_id: InstanceId,
    /// The thread (ACP session) that asked.
    pub thread_id: AgentThreadId,
    pub tool_call_id: String,
    pub title: String,
    pub options: Vec<PermissionChoice>,
    /// The tool call's kind (`edit`, `execute`, `fetch`, `other`…), if the agent said.
    pub kind: Option<String>,
    /// The command a shell tool call would run (`rawInput.command`), if any.
    pub command: Option<String>,
    /// The tool call's raw input as the agent sent it (cut to a string preview when large).
    pub raw_input: Option<serde_json::Value>,
    /// The paths the tool call names (`locations`).
    pub locations: Vec<String>,
}

/// One answer an agent offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PermissionChoice {
    pub option_id: String,
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

/// Puts permission requests in front of a human and waits for the answer (the `ask` policy).
#[async_trait]
pub trait PermissionBroker: Send + Sync + std::fmt::Debug {
    /// The chosen option id, or `None` when nobody answered in time (the agent is told
    /// `cancelled`, which grants nothing).
    async fn ask(&self, ask: PermissionAsk) -> Option<String>;
}

/// Hosts the threads of SpecTask instances.
#[async_trait]
pub trait AgentRuntime: Send + Sync + std::fmt::Debug {
    /// A short name for logs (`acp`, `zed`, `scripted`).
    fn kind(&self) -> &'static str;

    /// Whether a task may name `agent` as its implementation agent (a configured profile).
    /// Runtimes without named agents accept any name.
    fn knows_agent(&self, agent: &str) -> bool {
        let _ = agent;
        true
    }

    /// The agent profiles this runtime can run, with the default agent. Runtimes without named
    /// agents describe none.
    fn describe_agents(&self) -> AgentCatalog {
        AgentCatalog::default()
    }

    /// Starts a throw-away agent of profile `name` the way an instance's is started, runs the
    /// handshake (`initialize`, and `authenticate` when the profile says), and stops it with its
    /// whole process tree, within a bounded time. `check_id` is a fresh id for that process (its
    /// records, its private directory). A failed start or handshake is a negative result, not an
    /// error; `None` when the runtime has no profile `name` (runtimes without named agents have
    /// none to check).
    async fn check_agent(&self, name: &str, check_id: &InstanceId) -> Option<AgentCheck> {
        let _ = (name, check_id);
        None
    }

    /// Starts the instance, or does nothing if it is running. Called before every dispatch, so a
    /// runtime that restarted (or a new replica) brings instances back on demand.
    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()>;

    /// Opens a new thread for `owner` in a running instance and returns its id. The thread works
    /// in `cwd`, which must be the workspace or inside one of the instance's roots (else
    /// [`AgentError::Config`]); `None` is the instance's workspace.
    async fn create_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        cwd: Option<&Path>,
    ) -> AgentResult<AgentThreadId>;

    /// Makes an existing thread of `owner` usable in a (possibly restarted) instance, keeping its
    /// id and its history. Never creates a different thread: if the thread cannot be resumed this
    /// fails with [`AgentError::UnknownThread`]. `cwd` as for [`AgentRuntime::create_thread`];
    /// `None` keeps the working directory the thread had in this runtime (the workspace if it
    /// had none).
    async fn resume_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()>;

    /// Sets an existing, possibly loaded thread up again (ACP `session/load`), so it gets fresh
    /// tool-server credentials: the engine calls this when the thread's MCP token died (its
    /// session was retried or reopened, or the token expired). Runtimes that pass no tools to
    /// agents, or cannot load a thread twice, just resume it. `cwd` as for
    /// [`AgentRuntime::resume_thread`].
    async fn refresh_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()> {
        self.resume_thread(instance_id, owner, thread_id, cwd).await
    }

    /// Gives the runtime spectask's tool server, once the server knows its own address. Runtimes
    /// that pass no tools to agents ignore it.
    fn attach_tool_server(&self, tools: std::sync::Arc<dyn AgentToolServer>) {
        let _ = tools;
    }

    /// Runs one turn to its end, sending the agent's output through `events` as it arrives, and
    /// returns why it stopped. A closed `events` receiver does not stop the turn.
    async fn run_turn(
        &self,
        request: &TurnRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> AgentResult<StopReason>;

    /// Asks the agent to stop the turn running on `thread_id`; the pending `run_turn` then returns
    /// `StopReason::Cancelled`.
    async fn cancel_turn(
        &self,
        instance_id: &InstanceId,
        thread_id: &AgentThreadId,
    ) -> AgentResult<()>;

    /// Instances lost since the last call, oldest first. The engine marks their active threads
    /// disconnected; nothing depends on this for recovery (a lost instance is restarted, and its
    /// threads resumed, on their next dispatch). Runtimes that never lose instances report none.
    fn take_lost_instances(&self) -> Vec<InstanceLoss> {
        Vec::new()
    }

    /// Whether `thread_id` is usable right now (created or resumed by the running instance), so
    /// a loss reported earlier must not mark it disconnected.
    fn thread_is_live(&self, instance_id: &InstanceId, thread_id: &AgentThreadId) -> bool {
        let _ = (instance_id, thread_id);
        false
    }

    /// The instances this runtime holds (running, starting, or stopped but not yet forgotten), so
    /// the engine can stop those whose task has ended. Runtimes without processes report none.
    fn running_instances(&self) -> Vec<InstanceId> {
        Vec::new()
    }

    /// Whether the running instance's agent is sandboxed (`agent::sandbox`); `None` when the
    /// instance is not running here or the runtime has no sandbox.
    fn sandbox_status(&self, instance_id: &InstanceId) -> Option<SandboxStatus> {
        let _ = instance_id;
        None
    }

    /// Runs `check` (a plan task's or the project's check command) for the instance of `spec`:
    /// inside the OS sandbox its agent gets, where the runtime has one. Runtimes without a
    /// sandbox run it directly, with the agents' allow-listed environment.
    async fn run_check(
        &self,
        spec: &InstanceSpec,
        check: &CheckCommand,
    ) -> AgentResult<CheckOutput> {
        let _ = spec;
        checks::run_unsandboxed(check).await
    }

    /// Stops the instance and everything it runs.
    async fn shutdown_instance(&self, instance_id: &InstanceId) -> AgentResult<()>;
}
