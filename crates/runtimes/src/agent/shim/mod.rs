//! The agent supervisor shim: `spectask agent-shim --plan <json> -- <agent> <args…>`, the only
//! way spectask starts an agent process. Plain synchronous code on one thread; `spectask`'s
//! `main` dispatches here before it builds an async runtime or installs tracing.
//!
//! Why a process of our own between the server and the agent: the agent's children (the Claude
//! Code CLI under claude-agent-acp, its Bash commands, `npx` children) may leave the agent's
//! process group and session, and nothing the server does can reach them after a SIGKILL of the
//! server. The shim is a child subreaper, so every orphan of the tree is reparented to it and
//! stays findable, and it dies with the server (`PR_SET_PDEATHSIG`, SIGTERM, which it catches).
//! Whatever ends the agent's run (the agent exits, the server asks with SIGTERM, the server dies),
//! the shim kills every descendant it has, reaps them, and exits with the agent's status.
//!
//! The agent inherits the shim's stdin, stdout and stderr (the server's pipes) and its
//! environment (already the profile's allow-list) plus [`records::MARKER_VAR`]; it runs in its
//! own session. Each shim records itself and its agent in the run directory (`records`); the
//! start-up reaper kills what a shim that could not clean up left behind.

mod procs;
mod records;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

pub use records::{ReapReport, reap};

/// The hidden subcommand of `spectask` that runs the shim.
pub const SUBCOMMAND: &str = "agent-shim";

/// How an ACP runtime starts agents: through the shim, never directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentShim {
    /// The `spectask` binary, run as `<program> agent-shim …` (in production the running
    /// server's own executable).
    pub program: PathBuf,
    /// Where shims record what they run, for the start-up reaper (`<data dir>/run/agents`).
    pub run_dir: PathBuf,
}

/// What the server tells one shim, as JSON after `--plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimPlan {
    /// The instance the agent serves, for the record.
    pub instance_id: String,
    /// The server's pid: if the shim's parent is already someone else when it arms its death
    /// signal, the server died before and no signal will come.
    pub server_pid: i32,
    /// See [`AgentShim::run_dir`].
    pub run_dir: PathBuf,
    /// How long the agent gets after SIGTERM before the tree is killed.
    pub grace_ms: u64,
    /// The OS sandbox the agent's process enforces on itself right before `exec`
    /// (`agent::sandbox::apply`); `None` when the profile turns it off.
    #[serde(default)]
    pub sandbox: Option<crate::agent::sandbox::SandboxPlan>,
}

impl AgentShim {
    /// The command line that runs `agent` with `args` under this shim with `plan`.
    pub(crate) fn command_line(
        &self,
        plan: &ShimPlan,
        agent: &str,
        args: &[String],
    ) -> Result<Vec<OsString>, serde_json::Error> {
        let mut line = vec![
            OsString::from(SUBCOMMAND),
            OsString::from("--plan"),
            OsString::from(serde_json::to_string(plan)?),
            OsString::from("--"),
            OsString::from(agent),
        ];
        line.extend(args.iter().map(OsString::from));
        Ok(line)
    }
}

/// Exit status of the shim when its command line is unusable.
const EXIT_USAGE: u8 = 2;
/// Exit status when the shim cannot set itself up or start the agent (as a shell does for a
/// command that cannot be run).
const EXIT_CANNOT_RUN: u8 = 127;

/// Runs the shim; `args` are the words after `agent-shim`. Returns only when the agent exited
/// with a status (or could not be started); an agent killed by a signal makes the shim kill
/// itself with the same signal.
#[must_use]
pub fn main(args: &[OsString]) -> ExitCode {
    let (plan, agent, agent_args) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("spectask {SUBCOMMAND}: {message}");
            eprintln!("usage: spectask {SUBCOMMAND} --plan <json> -- <agent> [args…]");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    imp::run(&plan, agent, agent_args)
}

fn parse_args(args: &[OsString]) -> Result<(ShimPlan, &OsStr, &[OsString]), String> {
    let [flag, plan, separator, agent, agent_args @ ..] = args else {
        return Err("missing arguments".to_owned());
    };
    if flag != "--plan" || separator != "--" {
        return Err("expected `--plan <json> -- <agent>`".to_owned());
    }
    let plan = plan.to_str().ok_or("the plan is not UTF-8")?;
    let plan: ShimPlan =
        serde_json::from_str(plan).map_err(|err| format!("invalid plan: {err}"))?;
    Ok((plan, agent, agent_args))
}

/// Where the reaper finds the records of a data directory's shims.
#[must_use]
pub fn run_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("agents")
}

#[cfg(target_os = "linux")]
mod imp;

#[cfg(not(target_os = "linux"))]
mod imp {
    //! No subreapers, no death signals: spectask supervises agents on Linux only.
    use std::ffi::{OsStr, OsString};
    use std::process::ExitCode;

    pub(super) fn run(_plan: &super::ShimPlan, _agent: &OsStr, _args: &[OsString]) -> ExitCode {
        eprintln!("spectask {}: needs Linux", super::SUBCOMMAND);
        ExitCode::from(super::EXIT_CANNOT_RUN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_round_trips_through_the_argument_parser() {
        let shim = AgentShim {
            program: PathBuf::from("/bin/spectask"),
            run_dir: PathBuf::from("/data/run/agents"),
        };
        let plan = ShimPlan {
            instance_id: "zi_1".to_owned(),
            server_pid: 7,
            run_dir: shim.run_dir.clone(),
            grace_ms: 2000,
            sandbox: Some(crate::agent::sandbox::SandboxPlan {
                writable_dirs: vec![PathBuf::from("/work/project")],
                tcp_connect: Some(vec![443]),
                ..crate::agent::sandbox::SandboxPlan::default()
            }),
        };
        let line = shim
            .command_line(&plan, "npx", &["-y".to_owned(), "--".to_owned()])
            .unwrap();
        assert_eq!(line[0], SUBCOMMAND);
        let (parsed, agent, args) = parse_args(&line[1..]).unwrap();
        assert_eq!(parsed, plan);
        assert_eq!(agent, "npx");
        assert_eq!(args, [OsString::from("-y"), OsString::from("--")]);
        assert!(parse_args(&line[1..3]).is_err());
    }
}
