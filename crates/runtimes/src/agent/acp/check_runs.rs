//! Checks of an ACP instance's work (`AgentRuntime::run_check`): the command runs the way the
//! instance's agent does, under the agent shim with a sandbox planned as the instance's is (the
//! same writable roots, connect rules and read limits) and the profile's allow-listed
//! environment, so a check can do no more than the agent itself could.
//!
//! Each run gets a private directory of its own (`<instance>-check-<n>`: a fresh temp directory,
//! and a fresh home when the profile's home is private), removed afterwards: planning the
//! instance's own would clear the temp directory its agent is using.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::process::Command;

use super::AcpRuntime;
use super::process::{INHERITED_ENV, TERMINATE_GRACE};
use crate::agent::checks::{self, CheckCommand, CheckOutput};
use crate::agent::shim::ShimPlan;
use crate::agent::{AgentError, AgentResult, InstanceSpec};

impl AcpRuntime {
    pub(super) async fn run_check_sandboxed(
        &self,
        spec: &InstanceSpec,
        check: &CheckCommand,
    ) -> AgentResult<CheckOutput> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let (profile, workspace, extra_roots) = self.placement(spec)?;
        let check_id = format!(
            "{}-check-{}",
            spec.instance_id,
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let ports = self
            .tool_server
            .get()
            .map(|tools| tools.tcp_ports())
            .unwrap_or_default();
        let launch =
            self.sandboxing
                .launch(&check_id, profile, &workspace, &extra_roots, &ports)?;
        let plan = ShimPlan {
            instance_id: check_id.clone(),
            server_pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            run_dir: self.shim.run_dir.clone(),
            grace_ms: u64::try_from(TERMINATE_GRACE.as_millis()).unwrap_or(u64::MAX),
            sandbox: launch.plan.clone(),
        };
        let line = self
            .shim
            .command_line(&plan, "sh", &["-c".to_owned(), check.command.clone()])
            .map_err(|err| AgentError::Failed(format!("cannot encode the shim plan: {err}")))?;
        let mut command = Command::new(&self.shim.program);
        command.args(line).env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(&profile.env).envs(&launch.env);
        let output = checks::run(command, check, launch.status.active).await;
        self.sandboxing.remove_private_dir(&check_id);
        output
    }
}
