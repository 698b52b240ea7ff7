//! The shims' records in the run directory, and the start-up reaper that reads them.
//!
//! Each shim writes `<run dir>/shim-<pid>.json` before it starts its agent (and again once the
//! agent runs), and removes it after a clean exit. A record that is still there names a shim that
//! could not clean up (it was SIGKILLed itself, or the machine lost power). `spectask serve`
//! calls [`reap`] at start-up, when no sibling server can own these records (the data directory
//! is locked), and kills what they name that still runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::procs;

/// The variable every process of an agent's tree inherits from the shim, naming its run, so the
/// reaper finds descendants that left the agent's session.
pub(crate) const MARKER_VAR: &str = "SPECTASK_AGENT_RUN";

/// One shim's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) instance_id: String,
    /// Start times are only comparable within this boot.
    pub(crate) boot_id: String,
    pub(crate) shim_pid: i32,
    pub(crate) shim_start_time: u64,
    /// The agent's pid, which is also its session and process group id (it runs `setsid`).
    /// `None` until the agent was started.
    pub(crate) agent_pid: Option<i32>,
    pub(crate) agent_start_time: Option<u64>,
    /// The value of [`MARKER_VAR`] in the agent's environment.
    pub(crate) marker: String,
}

impl Record {
    pub(crate) fn path(run_dir: &Path, shim_pid: i32) -> PathBuf {
        run_dir.join(format!("shim-{shim_pid}.json"))
    }

    /// Writes the record atomically (a temporary file renamed over it), so the reaper never
    /// reads half a record.
    pub(crate) fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(run_dir)?;
        let path = Self::path(run_dir, self.shim_pid);
        let partial = path.with_extension("json.partial");
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)
    }
}

/// What [`reap`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Records read (each one left behind by a shim that did not exit cleanly).
    pub records: usize,
    /// Processes killed.
    pub killed: usize,
}

/// How many kill-and-rescan rounds the reaper makes: a tree that is still forking when a round
/// kills it leaves children for the next one.
const REAP_ROUNDS: usize = 50;

/// Kills every process the records in `run_dir` name that still runs: the shim and the agent if
/// their start times match, every process in the agent's session started since the agent, and
/// every process carrying the run's marker variable. Then removes the records. A missing run
/// directory holds no records.
///
/// # Errors
/// When `run_dir` exists but cannot be read.
pub fn reap(run_dir: &Path) -> std::io::Result<ReapReport> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ReapReport::default());
        }
        Err(err) => return Err(err),
    };
    let boot_id = procs::boot_id();
    let mut report = ReapReport::default();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("shim-") {
            continue;
        }
        if name.ends_with(".json") {
            report.records += 1;
            match std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
            {
                // From an earlier boot, everything it names is gone (and its pids may be reused).
                Some(record) if record.boot_id == boot_id => {
                    report.killed += kill_recorded(&record)
                }
                Some(_) => {}
                None => {
                    tracing::warn!(path = %path.display(), "unreadable agent shim record removed")
                }
            }
        }
        // A `.json.partial` is a record whose shim died while writing it: nothing to go on.
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %err, "cannot remove an agent shim record");
        }
    }
    Ok(report)
}

/// Kills what `record` names, round after round until a scan finds nothing left.
fn kill_recorded(record: &Record) -> usize {
    let marker = format!("{MARKER_VAR}={}", record.marker);
    let mut killed = std::collections::BTreeSet::new();
    for _ in 0..REAP_ROUNDS {
        let processes = procs::all();
        // A session id is not reused while any process is in the session, so while the agent's
        // session has members it is ours, unless a live leader with the agent's pid started at
        // another time: then the agent's session ended and its id now names someone else's.
        let session_is_ours = record.agent_pid.is_some_and(|agent| {
            processes
                .iter()
                .find(|process| process.pid == agent)
                .is_none_or(|leader| Some(leader.start_time) == record.agent_start_time)
        });
        let doomed: Vec<i32> = processes
            .into_iter()
            .filter(|process| {
                (process.pid == record.shim_pid && process.start_time == record.shim_start_time)
                    || (session_is_ours && Some(process.session) == record.agent_pid)
                    || procs::environ_contains(process.pid, &marker)
            })
            .map(|process| process.pid)
            .collect();
        if doomed.is_empty() {
            break;
        }
        for pid in doomed {
            if let Some(pid) = rustix::process::Pid::from_raw(pid)
                && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
            {
                killed.insert(pid.as_raw_nonzero().get());
            }
        }
        // Killed processes turn into zombies (skipped by the scan) once their parent or init
        // reaps them; give the kernel a moment before looking again.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !killed.is_empty() {
        tracing::warn!(
            instance_id = %record.instance_id,
            shim_pid = record.shim_pid,
            agent_pid = ?record.agent_pid,
            killed = killed.len(),
            "killed agent processes left by a previous run"
        );
    }
    killed.len()
}
