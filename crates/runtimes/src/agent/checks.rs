//! Running a check: one shell command (a plan task's `_Verify:` line, the task's project check)
//! in a work session's workspace, with a time limit, its output (stdout and stderr as they
//! arrive) kept as a bounded tail. The ACP runtime runs it under the agent shim with the
//! instance's sandbox ([`super::acp`]); [`run_unsandboxed`] is for runtimes with no sandbox.
//!
//! The command runs in a process group of its own; on the time limit (or when the caller's
//! future is dropped, e.g. at shutdown) the group gets SIGTERM and, after a grace period,
//! SIGKILL, so a hung test suite cannot keep a turn open.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{AgentError, AgentResult};

/// How much of a check's output is kept: its end, where test runners print the failures.
pub const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

/// How long a check's process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The variables an unsandboxed check inherits (the same allow-list as an agent's).
const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckCommand {
    /// A shell command line, run with `sh -c`.
    pub command: String,
    /// The directory it runs in: the work session's worktree, or the project.
    pub cwd: PathBuf,
    pub timeout: Duration,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    /// The exit code; `None` when the command was killed (by the time limit or a signal).
    pub exit_code: Option<i32>,
    /// True when the time limit stopped it.
    pub timed_out: bool,
    /// The last [`OUTPUT_TAIL_BYTES`] of its output (stdout and stderr interleaved as they
    /// arrived), lossily decoded.
    pub output_tail: String,
    /// Bytes of output in all (more than the tail when it was cut).
    pub output_bytes: u64,
    pub duration: Duration,
    /// Whether it ran inside the agent's OS sandbox.
    pub sandboxed: bool,
}

impl CheckOutput {
    /// Whether the check passed: exit code 0 within the time limit.
    pub fn passed(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }
}

/// Runs `check` with `sh -c` directly, with the allow-listed environment, outside any sandbox.
pub async fn run_unsandboxed(check: &CheckCommand) -> AgentResult<CheckOutput> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(&check.command).env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    run(command, check, false).await
}

/// Runs a prepared `command` (the check's shell, or the shim that runs it) in `check.cwd` under
/// `check.timeout`, capturing its output.
pub(crate) async fn run(
    mut command: Command,
    check: &CheckCommand,
    sandboxed: bool,
) -> AgentResult<CheckOutput> {
    command
        .current_dir(&check.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    command.process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|err| {
        AgentError::Failed(format!(
            "cannot start the check `{}` in {}: {err}",
            check.command,
            check.cwd.display()
        ))
    })?;
    let group = GroupGuard(child.id());
    let tail = Arc::new(Mutex::new(Tail::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(collect(out, tail.clone()))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(collect(err, tail.clone()))),
    ];
    let (status, timed_out) = match tokio::time::timeout(check.timeout, child.wait()).await {
        Ok(status) => (Some(status), false),
        Err(_) => {
            group.signal(Termination::Term);
            let status = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    group.signal(Termination::Kill);
                    child.wait().await
                }
            };
            (Some(status), true)
        }
    };
    let status = status
        .transpose()
        .map_err(|err| AgentError::Failed(format!("waiting for the check failed: {err}")))?;
    // Whatever the shell left running in its group goes now; the pipes then close.
    group.signal(Termination::Kill);
    group.disarm();
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let tail = std::mem::take(&mut *tail.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(CheckOutput {
        exit_code: status.and_then(|status| status.code()),
        timed_out,
        output_bytes: tail.total,
        output_tail: tail.text(),
        duration: started.elapsed(),
        sandboxed,
    })
}

/// The end of a stream of output.
#[derive(Debug, Default)]
struct Tail {
    bytes: VecDeque<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
        self.bytes.drain(..excess);
    }

    fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let mut bytes = Vec::with_capacity(self.bytes.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        // A cut may split a character: the lossy decoding shows it as U+FFFD.
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn collect(mut stream: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buffer = [0u8; 8192];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(&buffer[..read]);
    }
}

#[derive(Debug, Clone, Copy)]
enum Termination {
    Term,
    Kill,
}

/// The check's process group: killed when dropped before [`GroupGuard::disarm`] (the caller went
/// away mid-check).
struct GroupGuard(Option<u32>);

impl GroupGuard {
    #[cfg(unix)]
    fn signal(&self, termination: Termination) {
        let signal = match termination {
            Termination::Term => rustix::process::Signal::TERM,
            Termination::Kill => rustix::process::Signal::KILL,
        };
        if let Some(pid) = self
            .0
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // ESRCH only means the group is gone already.
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }

    #[cfg(not(unix))]
    fn signal(&self, _termination: Termination) {}

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // SIGTERM first: under the shim, that makes it kill the command's whole tree.
        self.signal(Termination::Term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(command: &str, timeout: Duration) -> CheckCommand {
        CheckCommand {
            command: command.to_owned(),
            cwd: std::env::temp_dir(),
            timeout,
        }
    }

    #[tokio::test]
    async fn a_passing_check_reports_exit_zero_and_its_output() {
        let out = run_unsandboxed(&check("echo out; echo err >&2", Duration::from_secs(30)))
            .await
            .unwrap();
        assert!(out.passed(), "{out:?}");
        assert_eq!(out.exit_code, Some(0));
        assert!(out.output_tail.contains("out\n") && out.output_tail.contains("err\n"));
        assert!(!out.sandboxed);
    }

    #[tokio::test]
    async fn a_failing_check_keeps_its_exit_code_and_only_the_tail_of_long_output() {
        let out = run_unsandboxed(&check(
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo LAST; exit 3",
            Duration::from_secs(30),
        ))
        .await
        .unwrap();
        assert!(!out.passed());
        assert_eq!(out.exit_code, Some(3));
        assert!(out.output_tail.len() <= OUTPUT_TAIL_BYTES);
        assert!(out.output_tail.ends_with("LAST\n"), "{}", out.output_tail);
        assert!(!out.output_tail.contains("line 0\n"));
        assert!(out.output_bytes > OUTPUT_TAIL_BYTES as u64);
    }

    #[tokio::test]
    async fn the_time_limit_kills_the_check_and_what_it_started() {
        let marker = tempfile::tempdir().unwrap();
        let pid_file = marker.path().join("pid");
        let command = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
        let out = run_unsandboxed(&check(&command, Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(out.timed_out && !out.passed());
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the check's group: it goes (a zombie counts as gone).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(), "the check's child {pid} outlived the time limit");
    }
}
