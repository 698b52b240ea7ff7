//! Checks of an ACP instance's work (`AgentRuntime::run_check`): the command runs the way the
//! instance's agent does, under the agent shim with the instance's sandbox plan (the same
//! writable roots, private temp and home, connect rules) and the profile's allow-listed
//! environment, so a check can do no more than the agent itself could.

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
        let (profile, workspace, extra_roots) = self.placement(spec)?;
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
        let plan = ShimPlan {
            instance_id: spec.instance_id.to_string(),
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
        checks::run(command, check, launch.status.active).await
    }
}
