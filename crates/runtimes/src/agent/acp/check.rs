//! The ACP runtime's catalog of profiles and the check of one: a throw-away agent started the
//! way an instance's is ([`AcpRuntime::launch`]: under the shim, allow-listed environment, the
//! profile's sandbox), in an empty workspace of its own, given the handshake with a short
//! timeout, then shut down (the shim kills its whole tree) and its directories removed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::AcpRuntime;
use super::profiles::AcpProfile;
use crate::agent::catalog::{
    AgentCatalog, AgentCheck, AgentDescription, AgentHandshake, DefaultSource,
};
use crate::agent::{AgentError, InstanceId, InstanceSpec};

/// Why a check failed, with what the agent answered before that, if anything.
type Failure = (AgentError, Option<AgentHandshake>);

/// How long each request of a check's handshake may take.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

impl AcpRuntime {
    pub(super) fn catalog(&self) -> AgentCatalog {
        let default = self
            .default_profile
            .as_ref()
            .filter(|name| self.profiles.contains_key(*name));
        let agents = self
            .profiles
            .values()
            .map(|profile| AgentDescription {
                name: profile.name.clone(),
                command: profile.command.clone(),
                args: profile.args.clone(),
                source: profile.source,
                path: profile.resolve_program(),
                permission_policy: profile.permission_policy.as_str(),
                sandbox: profile.sandbox.mode,
                default: default == Some(&profile.name),
            })
            .collect();
        AgentCatalog {
            agents,
            default_agent: default.cloned(),
            default_source: default.map(|_| {
                if self.default_detected {
                    DefaultSource::Detected
                } else {
                    DefaultSource::Configured
                }
            }),
        }
    }

    pub(super) async fn check(&self, name: &str, check_id: &InstanceId) -> Option<AgentCheck> {
        let profile = self.profiles.get(name)?;
        let started = Instant::now();
        let failed = |error: String, handshake| AgentCheck {
            name: name.to_owned(),
            ok: false,
            handshake,
            duration: started.elapsed(),
            error: Some(error),
        };
        if profile.resolve_program().is_none() {
            return Some(failed(
                format!(
                    "`{}` was not found {}",
                    profile.command,
                    if profile.command.contains('/') {
                        "(or is not an executable file)"
                    } else {
                        "on the server's PATH"
                    }
                ),
                None,
            ));
        }
        let workspace = std::env::temp_dir().join(format!("spectask-check-{check_id}"));
        let workspace =
            match std::fs::create_dir_all(&workspace).and_then(|()| workspace.canonicalize()) {
                Ok(workspace) => workspace,
                Err(err) => {
                    let _ = std::fs::remove_dir_all(&workspace);
                    return Some(failed(
                        format!(
                            "cannot create the check's workspace {}: {err}",
                            workspace.display()
                        ),
                        None,
                    ));
                }
            };
        let result = self
            .handshake_once(profile, check_id, workspace.clone())
            .await;
        if let Err(err) = std::fs::remove_dir_all(&workspace) {
            tracing::warn!(%err, workspace = %workspace.display(), "cannot remove an agent check's workspace");
        }
        self.sandboxing.remove_private_dir(check_id.as_str());
        let check = match result {
            Ok(handshake) => AgentCheck {
                name: name.to_owned(),
                ok: true,
                handshake: Some(handshake),
                duration: started.elapsed(),
                error: None,
            },
            Err((err, handshake)) => failed(err.to_string(), handshake),
        };
        tracing::info!(profile = %name, ok = check.ok, error = ?check.error, duration_ms = check.duration.as_millis(), "agent profile checked");
        Some(check)
    }

    /// Starts `profile` once in `workspace`, runs its handshake and stops it, whatever happened.
    async fn handshake_once(
        &self,
        profile: &AcpProfile,
        check_id: &InstanceId,
        workspace: PathBuf,
    ) -> Result<AgentHandshake, Failure> {
        let spec = InstanceSpec {
            instance_id: check_id.clone(),
            spec_task_id: String::new(),
            workspace: Some(workspace.clone()),
            agent: Some(profile.name.clone()),
            config: serde_json::Value::Null,
            extra_roots: Vec::new(),
        };
        let mut instance = self
            .launch(&spec, profile, workspace, Vec::new())
            .await
            .map_err(|err| (err, None))?;
        let mut result = instance.handshake(profile, CHECK_TIMEOUT).await;
        instance.shutdown().await;
        if let Err(AgentError::Disconnected(_)) = &result {
            // Say how it ended rather than how the connection saw it.
            let status = instance.process.wait_exit().await;
            result = Err(AgentError::Failed(format!(
                "the agent exited during the handshake ({status}); its stderr is in the server log"
            )));
        }
        let handshake = instance.handshake.take();
        match (result, handshake) {
            (Ok(()), Some(handshake)) => Ok(handshake),
            (Ok(()), None) => Err((
                AgentError::Failed("the agent gave no handshake".to_owned()),
                None,
            )),
            (Err(err), handshake) => Err((err, handshake)),
        }
    }
}
