//! The sandbox of an ACP instance, decided before its agent is spawned: the profile's settings
//! become a plan (`agent::sandbox::plan_instance`), the kernel's support is probed, and the
//! result is a [`Launch`]: the environment the agent gets (`TMPDIR`, a private `HOME`), the
//! prepared plan the spawn installs, and the status the API reports.
//!
//! `required` refuses to start an agent the kernel cannot sandbox; `best_effort` starts it and
//! logs one warning per profile naming what is missing; `off` changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::profiles::AcpProfile;
use crate::agent::AgentError;
use crate::agent::sandbox::{self, SandboxMode, SandboxPlan, SandboxRequest, SandboxStatus};

/// The runtime's side of sandboxing: where private directories go, and which warnings were
/// logged.
#[derive(Debug)]
pub(crate) struct Sandboxing {
    /// spectask's data directory (canonical), or a directory of this runtime's own in the
    /// system's temp directory (removed with it) when none was given.
    data_dir: PathBuf,
    owns_data_dir: bool,
    /// Profiles whose "not (fully) sandboxed" warning was logged.
    warned: Mutex<HashSet<String>>,
}

impl Default for Sandboxing {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Drop for Sandboxing {
    fn drop(&mut self) {
        if self.owns_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// How one agent process is started.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Set over the profile's environment.
    pub(crate) env: BTreeMap<String, String>,
    /// What the agent's process enforces on itself before `exec` (the shim passes it on).
    pub(crate) plan: Option<SandboxPlan>,
    pub(crate) status: SandboxStatus,
}

impl Sandboxing {
    pub(crate) fn new(data_dir: Option<PathBuf>) -> Self {
        static RUNTIMES: AtomicUsize = AtomicUsize::new(0);
        let (data_dir, owns_data_dir) = match data_dir {
            Some(dir) => (dir.canonicalize().unwrap_or(dir), false),
            None => {
                let n = RUNTIMES.fetch_add(1, Ordering::Relaxed);
                let dir = std::env::temp_dir()
                    .join(format!("spectask-agents-{}-{n}", std::process::id()));
                (dir.canonicalize().unwrap_or(dir), true)
            }
        };
        Self {
            data_dir,
            owns_data_dir,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Removes the private directory (temp, private home) of `instance_id`, which was a one-off
    /// (an agent check).
    pub(crate) fn remove_private_dir(&self, instance_id: &str) {
        let dir = self
            .data_dir
            .join(sandbox::plan::INSTANCES_DIR)
            .join(instance_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(%err, dir = %dir.display(), "cannot remove an agent's private directory");
            }
        }
    }

    /// Plans the sandbox of `instance_id` running `profile` in `workspace`, also writing in
    /// `extra_roots` (all canonical); `spectask_ports` stay reachable when the profile restricts
    /// connects.
    pub(crate) fn launch(
        &self,
        instance_id: &str,
        profile: &AcpProfile,
        workspace: &Path,
        extra_roots: &[PathBuf],
        spectask_ports: &[u16],
    ) -> Result<Launch, AgentError> {
        let settings = &profile.sandbox;
        let mode = settings.mode;
        let config_error = |err: sandbox::SandboxError| {
            AgentError::Config(format!("agent profile `{}`: {err}", profile.name))
        };
        let data_dir = &self.data_dir;
        let inherited_home = profile
            .env
            .get("HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
        let mut settings = settings.clone();
        if let Some(ports) = &mut settings.connect_ports {
            ports.extend(spectask_ports);
        }
        let planned = sandbox::plan_instance(&SandboxRequest {
            settings: &settings,
            instance_id,
            workspace,
            extra_writable: extra_roots,
            data_dir,
            inherited_home: inherited_home.as_deref(),
            spectask_port: None,
        })
        .map_err(config_error)?;
        let Some(planned) = planned else {
            return Ok(Launch {
                env: BTreeMap::new(),
                plan: None,
                status: SandboxStatus {
                    active: false,
                    mode,
                    detail: "off in the agent profile: the agent runs with the server's rights"
                        .to_owned(),
                },
            });
        };
        let support = sandbox::probe();
        let missing = support.missing_for(&planned.plan);
        if mode == SandboxMode::Required && !missing.is_empty() {
            return Err(AgentError::Config(format!(
                "agent profile `{}` requires the sandbox, but this system lacks {}",
                profile.name,
                missing.join("; ")
            )));
        }
        let active = support.landlock_abi.is_some();
        let mut detail = if active && extra_roots.is_empty() {
            "writes confined to the workspace, a private temp directory and the agent's state"
                .to_owned()
        } else if active {
            "writes confined to the workspace, the task's worktrees, a private temp directory and \
             the agent's state"
                .to_owned()
        } else {
            "not enforced".to_owned()
        };
        if !missing.is_empty() {
            detail.push_str("; this system lacks ");
            detail.push_str(&missing.join("; "));
            let first = self
                .warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(profile.name.clone());
            if first {
                tracing::warn!(
                    security_event = "sandbox_degraded",
                    profile = %profile.name,
                    missing = %missing.join("; "),
                    "agents of this profile run {} sandbox (sandbox = \"best_effort\"); set sandbox = \"required\" to refuse instead",
                    if active { "with a partial" } else { "without an OS" }
                );
            }
        }
        tracing::info!(%instance_id, profile = %profile.name, active, %detail, private_dir = %planned.private_dir.display(), "agent sandbox planned");
        Ok(Launch {
            env: planned.env,
            plan: Some(planned.plan),
            status: SandboxStatus {
                active,
                mode,
                detail,
            },
        })
    }
}
