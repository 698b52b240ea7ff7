//! The OS sandbox around an agent process tree (Linux): what an agent may write, read and
//! connect to, enforced by the kernel so that a granted command (`python3 -c …`, a shell
//! redirect, `cd ..`) cannot do what the permission policy never saw.
//!
//! Three layers, applied in the agent's process right before `exec` and inherited by every
//! descendant:
//!
//! 1. a private mount namespace (a user namespace too, so an unprivileged server can make one) in
//!    which `.git` hooks and config are bind-mounted read-only, `.git` and the data directory are
//!    pinned (a mount point can be neither renamed nor removed), and the data directory's secrets
//!    are covered by empty read-only mounts. Landlock alone cannot exclude a subdirectory of a
//!    writable one; once Landlock is applied the agent can no longer unmount any of this.
//! 2. Landlock: every write right is handled, and writes are allowed only beneath the plan's
//!    writable directories and files and on its device files; reads optionally restricted.
//! 3. optionally Landlock TCP rules (ABI ≥ 4): connects only to the listed ports.
//!
//! [`SandboxPlan`] says all of it in absolute paths (serializable, so a supervisor process can
//! receive it); [`plan::plan_instance`] builds one for an instance from its profile's
//! [`SandboxSettings`]; [`apply`] enforces it on the calling process; [`probe`] tells beforehand
//! what this kernel supports, so the runtime knows (and reports) whether the sandbox will be
//! active, and refuses to start a `required` one that cannot be.

pub mod plan;

#[cfg(target_os = "linux")]
mod linux;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use plan::{InstanceSandbox, SandboxRequest, plan_instance};

/// How a profile wants its agents sandboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// The agent does not start unless the whole plan can be enforced.
    Required,
    /// Enforce what the kernel supports; one warning names what is missing.
    #[default]
    BestEffort,
    /// No sandbox: the agent runs with the server's rights.
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best_effort",
            SandboxMode::Off => "off",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "required" => Some(SandboxMode::Required),
            "best_effort" => Some(SandboxMode::BestEffort),
            "off" => Some(SandboxMode::Off),
            _ => None,
        }
    }
}

/// Which `HOME` the agent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeMode {
    /// The server's (or the profile's `HOME`): the user's own login of the agent keeps working,
    /// and only the profile's state paths in it are writable.
    #[default]
    Inherit,
    /// A private, writable home under the data directory (`instances/<id>/home`), kept across
    /// restarts of the instance; nothing of the user's home is writable.
    Private,
}

/// The sandbox options of an agent profile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    pub home: HomeMode,
    /// Directories the agent keeps its state in (`~/…` is its `HOME`); created when missing.
    pub state_dirs: Vec<String>,
    /// Single files the agent keeps its state in (`~/.claude.json`): writable in place.
    pub state_files: Vec<String>,
    /// `None`: the agent may read everything but the data directory's secrets. `Some`: only
    /// beneath these paths (plus what it may write).
    pub readable: Option<Vec<String>>,
    /// `None`: TCP connects are not restricted. `Some`: only to these ports, plus spectask's own
    /// (its MCP endpoint).
    pub connect_ports: Option<Vec<u16>>,
}

impl SandboxSettings {
    /// The same settings with these state directories and files.
    #[must_use]
    pub fn with_state(
        mut self,
        dirs: impl IntoIterator<Item = impl Into<String>>,
        files: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.state_dirs = dirs.into_iter().map(Into::into).collect();
        self.state_files = files.into_iter().map(Into::into).collect();
        self
    }
}

/// Everything the sandbox of one agent enforces, resolved to absolute paths.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxPlan {
    /// `Required` or `BestEffort` (an `off` profile has no plan).
    pub mode: SandboxMode,
    /// Directories beneath which every write right is allowed (workspace, temp dir, state dirs).
    pub writable_dirs: Vec<PathBuf>,
    /// Files writable in place (not replaceable by a rename: their directory stays read-only).
    pub writable_files: Vec<PathBuf>,
    /// Device files and device directories (`/dev/pts`, `/dev/shm`) usable read-write.
    pub devices: Vec<PathBuf>,
    /// `None`: reads are not restricted; `Some`: allowed only beneath these (and the writable
    /// paths and devices).
    pub readable: Option<Vec<PathBuf>>,
    /// Directories bind-mounted onto themselves so they can be neither renamed nor removed
    /// (`.git`, the data directory), outermost first.
    pub pinned: Vec<PathBuf>,
    /// Paths beneath writable directories made read-only (`.git/hooks`, `.git/config`).
    pub read_only: Vec<PathBuf>,
    /// Paths covered by an empty read-only mount (the data directory's secrets).
    pub hidden: Vec<PathBuf>,
    /// `None`: TCP connects unrestricted; `Some`: only to these ports.
    pub tcp_connect: Option<Vec<u16>>,
}

impl SandboxPlan {
    /// Whether enforcing the plan needs a private mount namespace.
    pub fn needs_mounts(&self) -> bool {
        !(self.pinned.is_empty() && self.read_only.is_empty() && self.hidden.is_empty())
    }
}

/// What this kernel and process can enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxSupport {
    /// The Landlock ABI version, `None` when Landlock is unavailable.
    pub landlock_abi: Option<u32>,
    /// Landlock TCP rules (ABI ≥ 4).
    pub network_rules: bool,
    /// A private mount namespace can be made (as root, or through a user namespace).
    pub mount_namespace: bool,
    /// An unprivileged user namespace can be made.
    pub user_namespace: bool,
}

impl SandboxSupport {
    /// What of `plan` this kernel cannot enforce, in words; empty when all of it can.
    pub fn missing_for(&self, plan: &SandboxPlan) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.landlock_abi.is_none() {
            missing.push("Landlock (writes outside the workspace are not prevented)");
        }
        if plan.needs_mounts() && !self.mount_namespace {
            missing.push(
                "a private mount namespace (.git hooks and config stay writable, secrets readable)",
            );
        }
        if plan.tcp_connect.is_some() && !self.network_rules {
            missing.push("Landlock TCP rules, ABI 4 (connects are not restricted)");
        }
        missing
    }
}

/// What [`apply`] enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// Landlock file-system rules are in force.
    pub filesystem: bool,
    /// Landlock TCP connect rules are in force.
    pub network: bool,
    /// The plan's mounts were made in a private mount namespace.
    pub mounts: bool,
    /// That namespace is owned by a new user namespace.
    pub user_namespace: bool,
    /// What could not be enforced (best effort only).
    pub skipped: Vec<String>,
}

/// Whether an instance runs sandboxed, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// The agent's writes are confined (Landlock in force).
    pub active: bool,
    pub mode: SandboxMode,
    /// One sentence: what is enforced, or why not.
    pub detail: String,
}

/// Why a sandbox could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A `required` sandbox this kernel cannot enforce.
    #[error("the sandbox is required but this system lacks {0}")]
    Unsupported(String),
    /// A path of the plan could not be prepared (created, inspected).
    #[error("sandbox: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The settings cannot make a plan (a relative path, a bad instance id).
    #[error("sandbox: {0}")]
    Invalid(String),
    /// The kernel refused an enforcement step.
    #[error("sandbox: {0}")]
    Enforce(String),
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What this kernel supports, probed once per process (a short-lived child tries the
/// namespaces, so the caller's own are never touched).
pub fn probe() -> SandboxSupport {
    #[cfg(target_os = "linux")]
    {
        static SUPPORT: std::sync::OnceLock<SandboxSupport> = std::sync::OnceLock::new();
        *SUPPORT.get_or_init(linux::probe)
    }
    #[cfg(not(target_os = "linux"))]
    {
        SandboxSupport::default()
    }
}

/// Restricts the calling process as `plan` says. Call it in the process that then `exec`s the
/// agent, single-threaded (the user namespace needs that; with other threads it falls back to a
/// plain mount namespace when privileged), before `exec`. In `best_effort` mode what the kernel
/// lacks is skipped and listed in the report; in `required` mode it is an error and nothing
/// should be executed.
pub fn apply(plan: &SandboxPlan) -> Result<SandboxReport, SandboxError> {
    #[cfg(target_os = "linux")]
    {
        linux::Prepared::new(plan)?.enforce_with_report()
    }
    #[cfg(not(target_os = "linux"))]
    {
        match plan.mode {
            SandboxMode::Required => Err(SandboxError::Unsupported(
                "Landlock (it is Linux-only)".to_owned(),
            )),
            _ => Ok(SandboxReport {
                filesystem: false,
                network: false,
                mounts: false,
                user_namespace: false,
                skipped: vec!["everything: the sandbox is Linux-only".to_owned()],
            }),
        }
    }
}

/// A plan made ready in the parent (paths opened, the Landlock ruleset built, strings
/// converted), so that the forked child only makes system calls: usable from a `pre_exec` hook
/// of a multi-threaded parent, where allocating is not safe.
#[derive(Debug)]
pub struct PreparedSandbox {
    #[cfg(target_os = "linux")]
    inner: std::sync::Arc<linux::Prepared>,
}

impl PreparedSandbox {
    /// Prepares `plan` for [`PreparedSandbox::install`].
    pub fn new(plan: &SandboxPlan) -> Result<Self, SandboxError> {
        #[cfg(target_os = "linux")]
        {
            Ok(Self {
                inner: std::sync::Arc::new(linux::Prepared::new(plan)?),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            apply(plan).map(|_| Self {})
        }
    }

    /// Makes `command`'s child enforce the plan before `exec`. A `required` plan that fails
    /// makes the spawn fail with the kernel's error; a best-effort one skips what fails.
    pub fn install(&self, command: &mut tokio::process::Command) {
        #[cfg(target_os = "linux")]
        linux::install(self.inner.clone(), command);
        #[cfg(not(target_os = "linux"))]
        let _ = command;
    }
}

#[cfg(test)]
mod tests;
