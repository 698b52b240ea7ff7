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
//!
//! An instance may have extra roots besides its workspace (the task's worktree root): its agent
//! may write there (sandbox and `fs/*`), and each thread's session may work in its own `cwd`
//! beneath one, remembered per session so every later `session/load` sends it again.

//!
//! This module holds the runtime and its instance table; `instance` starts one agent process and
//! talks to it, `dispatch` implements [`AgentRuntime`] on top (instances, threads, turns), and
//! `check` describes the profiles and checks one with a throw-away agent's handshake.

mod check;
mod check_runs;
mod client;
mod connection;
mod dispatch;
mod instance;
mod process;
pub mod profiles;
mod sandboxing;
mod stderr;
mod stdout;
mod supervisor;
mod updates;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

pub use profiles::{AcpProfile, PermissionPolicy};
pub use stdout::DEFAULT_MAX_LINE_BYTES;
pub use supervisor::SupervisionSettings;

use self::instance::{CLOSE_GRACE, Instance};
use self::supervisor::Supervisor;
use super::shim::AgentShim;
use super::{AgentError, AgentResult, AgentRuntime, AgentToolServer, InstanceId, InstanceSpec};

/// How long set-up requests (`initialize`, `session/new`, `session/load`) may take. Real agents
/// answer in a second or two; a stuck one must not hold a dispatch forever.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Whether `default_profile` was detected on `PATH` rather than configured.
    default_detected: bool,
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
    /// The working directory each thread was given, by instance and session id, so a later
    /// `session/load` (after a restart of the agent, or a refresh) sends the same one.
    thread_cwds: Mutex<HashMap<InstanceId, HashMap<String, PathBuf>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Instance>>>>;

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
            default_detected: false,
            instances: Mutex::new(HashMap::new()),
            broker: None,
            supervisor: Arc::new(Supervisor::new(SupervisionSettings::default())),
            latest: Mutex::new(HashMap::new()),
            tool_server: OnceLock::new(),
            limits: AgentLimits::default(),
            sandboxing: sandboxing::Sandboxing::default(),
            thread_cwds: Mutex::new(HashMap::new()),
        }
    }

    /// The same runtime, reporting its default profile as detected on `PATH` (the configuration
    /// named none) rather than configured.
    #[must_use]
    pub fn with_detected_default(mut self) -> Self {
        self.default_detected = true;
        self
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

    fn thread_cwds(&self) -> MutexGuard<'_, HashMap<InstanceId, HashMap<String, PathBuf>>> {
        // Critical sections are single map operations; a poisoned map is still consistent.
        self.thread_cwds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn latest(&self) -> MutexGuard<'_, HashMap<InstanceId, Weak<Instance>>> {
        // Critical sections are single map operations; a poisoned map is still consistent.
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest started instance of `instance_id`, while it lives, without the slot's lock.
    fn latest_instance(&self, instance_id: &InstanceId) -> Option<Arc<Instance>> {
        self.latest().get(instance_id).and_then(Weak::upgrade)
    }

    async fn instance(&self, instance_id: &InstanceId) -> AgentResult<Arc<Instance>> {
        let slot = self.slots().get(instance_id).cloned();
        let instance = match slot {
            Some(slot) => slot.lock().await.clone(),
            None => None,
        };
        instance.ok_or_else(|| AgentError::UnknownInstance(instance_id.to_string()))
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
