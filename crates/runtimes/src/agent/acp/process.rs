//! The agent process: spawned in the workspace with an allow-listed environment, always under
//! the supervisor shim (`agent::shim`, the `spectask` binary re-executed), which runs the agent in
//! its own session and kills the agent's whole tree when the agent exits, when it is told to stop
//! (SIGTERM) or when the server dies. The shim's stderr (the agent's) is logged line by line with
//! the instance id, its exit observed, and it is terminated on shutdown: SIGTERM, then SIGKILL if
//! the shim itself does not finish after the agent's grace period.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use super::profiles::AcpProfile;
use crate::agent::AgentError;
use crate::agent::shim::{AgentShim, ShimPlan};

/// The only variables an agent inherits from spectask's environment. Everything else (notably
/// `IS_SANDBOX`, which makes Claude Code's embedded CLI exit) is withheld; profiles add their own.
pub(crate) const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// How long an agent gets to exit after SIGTERM before its group is killed.
pub(crate) const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How long the shim gets, beyond the agent's grace period, to kill and reap the agent's tree
/// before the server kills the shim (which leaves the tree to the start-up reaper).
const SHIM_MARGIN: Duration = Duration::from_secs(3);

/// A running (or exited) agent process group.
#[derive(Debug)]
pub(crate) struct AgentProcess {
    instance_id: String,
    /// The shim's pid, which is also its process group id (the agent has a session of its own).
    pid: u32,
    /// `Some(status)` once the leader exited.
    exited: watch::Receiver<Option<String>>,
}

/// The pipes the ACP connection speaks over.
#[derive(Debug)]
pub(crate) struct Pipes {
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
}

/// Starts `profile` in `workspace` (which must exist), under `shim`, sandboxed as `launch` says.
pub(crate) fn spawn(
    profile: &AcpProfile,
    workspace: &Path,
    instance_id: &str,
    shim: &AgentShim,
    launch: &super::sandboxing::Launch,
) -> Result<(AgentProcess, Pipes), AgentError> {
    let plan = ShimPlan {
        instance_id: instance_id.to_owned(),
        server_pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        run_dir: shim.run_dir.clone(),
        grace_ms: u64::try_from(TERMINATE_GRACE.as_millis()).unwrap_or(u64::MAX),
        sandbox: launch.plan.clone(),
    };
    let line = shim
        .command_line(&plan, &profile.command, &profile.args)
        .map_err(|err| AgentError::Failed(format!("cannot encode the shim plan: {err}")))?;
    let mut command = Command::new(&shim.program);
    command
        .args(line)
        .current_dir(workspace)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&profile.env);
    // Its own group, so a terminal's Ctrl-C reaches only the server, which then stops its
    // agents in order. The shim arms its own death signal (no `pre_exec` here).
    #[cfg(unix)]
    command.process_group(0);
    command.envs(&launch.env);

    let mut child = command.spawn().map_err(|err| {
        AgentError::Config(format!(
            "cannot start the agent shim `{}` for profile `{}`: {err}",
            shim.program.display(),
            profile.name
        ))
    })?;
    let pid = child
        .id()
        .ok_or_else(|| AgentError::Failed(format!("agent `{}` exited at once", profile.name)))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(AgentError::Failed(
            "agent pipes were not created".to_owned(),
        ));
    };
    tracing::info!(instance_id, pid, profile = %profile.name, workspace = %workspace.display(), "agent process started");

    tokio::spawn(super::stderr::log_stderr(stderr, instance_id.to_owned()));

    let (exited_tx, exited) = watch::channel(None);
    let wait_id = instance_id.to_owned();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(err) => format!("unknown status ({err})"),
        };
        tracing::info!(instance_id = %wait_id, pid, %status, "agent process exited");
        // The shim killed the agent's tree before it exited; its own group (the shim alone,
        // unless the shim was killed before it could fork) goes too.
        signal_group(pid, Signal::Kill);
        exited_tx.send_replace(Some(status));
    });

    Ok((
        AgentProcess {
            instance_id: instance_id.to_owned(),
            pid,
            exited,
        },
        Pipes { stdin, stdout },
    ))
}

impl AgentProcess {
    /// Whether the leader has exited.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Resolves with the exit status once the leader has exited.
    pub(crate) async fn wait_exit(&self) -> String {
        let mut exited = self.exited.clone();
        match exited.wait_for(Option::is_some).await {
            Ok(status) => status.clone().unwrap_or_default(),
            // The waiter task is gone (runtime shutting down): treat as exited.
            Err(_) => "unknown status (waiter gone)".to_owned(),
        }
    }

    /// SIGTERM to the shim, which forwards it to the agent's group, waits its grace period and
    /// kills the agent's whole tree; SIGKILL to the shim if it is still there after `grace` plus
    /// the time it needs for that. The caller closes stdin first, so a well-behaved agent has
    /// usually exited already.
    pub(crate) async fn terminate(&self, grace: Duration) {
        if self.has_exited() {
            return;
        }
        signal_group(self.pid, Signal::Term);
        let patience = grace.max(TERMINATE_GRACE) + SHIM_MARGIN;
        if tokio::time::timeout(patience, self.wait_exit())
            .await
            .is_err()
        {
            tracing::warn!(instance_id = %self.instance_id, pid = self.pid, "agent shim did not finish after SIGTERM; killing it (the start-up reaper gets what it leaves)");
            signal_group(self.pid, Signal::Kill);
            let _ = tokio::time::timeout(grace, self.wait_exit()).await;
        }
    }

    /// For synchronous contexts (a dropped runtime): SIGTERM to the shim now, SIGKILL after its
    /// grace period from a short-lived thread, since `Drop` cannot await.
    pub(crate) fn terminate_detached(&self) {
        if self.has_exited() {
            return;
        }
        signal_group(self.pid, Signal::Term);
        let pid = self.pid;
        let exited = self.exited.clone();
        let spawned = std::thread::Builder::new()
            .name("acp-agent-reaper".to_owned())
            .spawn(move || {
                std::thread::sleep(TERMINATE_GRACE + SHIM_MARGIN);
                if exited.borrow().is_none() {
                    signal_group(pid, Signal::Kill);
                }
            });
        if spawned.is_err() {
            signal_group(pid, Signal::Kill);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pid: u32, signal: Signal) {
    let signal = match signal {
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH only means the group is already gone.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

#[cfg(not(unix))]
fn signal_group(_pid: u32, _signal: Signal) {
    // No process groups: spectask supervises agents on Linux (see `agent::shim`).
}
