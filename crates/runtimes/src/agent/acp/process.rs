//! The agent process: spawned in the workspace with an allow-listed environment, in its own
//! process group (launchers such as `npx` leave the real agent as a grandchild), its stderr
//! logged line by line with the instance id, its exit observed, and the whole group terminated on
//! shutdown: SIGTERM, then SIGKILL after a grace period.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use super::profiles::AcpProfile;
use crate::agent::AgentError;

/// The only variables an agent inherits from spectask's environment. Everything else (notably
/// `IS_SANDBOX`, which makes Claude Code's embedded CLI exit) is withheld; profiles add their own.
pub(crate) const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// How long an agent gets to exit after SIGTERM before its group is killed.
pub(crate) const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// A running (or exited) agent process group.
#[derive(Debug)]
pub(crate) struct AgentProcess {
    instance_id: String,
    /// The leader's pid, which is also the group id.
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

/// Starts `profile` in `workspace` (which must exist), sandboxed as `launch` says.
pub(crate) fn spawn(
    profile: &AcpProfile,
    workspace: &Path,
    instance_id: &str,
    launch: &super::sandboxing::Launch,
) -> Result<(AgentProcess, Pipes), AgentError> {
    let mut command = Command::new(&profile.command);
    command
        .args(&profile.args)
        .current_dir(workspace)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A backstop for paths that never reach `terminate` (a panic, a dropped runtime).
        .kill_on_drop(true);
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&profile.env);
    #[cfg(unix)]
    command.process_group(0);
    #[cfg(target_os = "linux")]
    die_with_server(&mut command);
    launch.install(&mut command);

    let mut child = command.spawn().map_err(|err| {
        AgentError::Config(format!(
            "cannot start agent profile `{}` (`{}`): {err}",
            profile.name, profile.command
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

    let log_id = instance_id.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "spectask_runtimes::agent::acp::stderr", instance_id = %log_id, "{line}");
        }
    });

    let (exited_tx, exited) = watch::channel(None);
    let wait_id = instance_id.to_owned();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(err) => format!("unknown status ({err})"),
        };
        tracing::info!(instance_id = %wait_id, pid, %status, "agent process exited");
        // Descendants may outlive the leader and hold its stdout open, which would keep the
        // connection (and any turn on it) waiting forever: the group goes with its leader.
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

    /// SIGTERM to the group, then SIGKILL if the leader is still there after `grace`. The caller
    /// closes stdin first, so a well-behaved agent has usually exited already.
    pub(crate) async fn terminate(&self, grace: Duration) {
        if self.has_exited() {
            return;
        }
        signal_group(self.pid, Signal::Term);
        if tokio::time::timeout(grace, self.wait_exit()).await.is_err() {
            tracing::warn!(instance_id = %self.instance_id, pid = self.pid, "agent ignored SIGTERM; killing its process group");
            signal_group(self.pid, Signal::Kill);
            let _ = tokio::time::timeout(grace, self.wait_exit()).await;
        }
    }

    /// For synchronous contexts (a dropped runtime): SIGTERM now, SIGKILL after the grace period
    /// from a short-lived thread, since `Drop` cannot await.
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
                std::thread::sleep(TERMINATE_GRACE);
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

/// Has the kernel SIGKILL the agent when the server dies. Nothing else can: a server killed with
/// SIGKILL runs no teardown, the agent sits in its own process group, and some agents (Claude's)
/// do not exit when their stdin closes, so each crash would leave one orphan per instance. The
/// signal is tied to the thread that spawned the child; spawns run on the runtime's worker
/// threads, which live as long as the server.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_server(command: &mut Command) {
    let server = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec; it makes two system calls (prctl,
    // getppid; both async-signal-safe), allocates nothing and touches no memory shared with the
    // parent.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The server may have died between fork and prctl; then no signal will come. (ESRCH:
            // an error without allocating, which is not safe between fork and exec.)
            if rustix::process::getppid() != Some(server) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
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
    // No process groups: `kill_on_drop` on the child is the only teardown there.
}
