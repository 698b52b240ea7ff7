//! What the agent keeps on disk: one JSON file per session (cwd, history, rule use counts) so a
//! restarted process can `session/load` a session created by an earlier one, and the request log
//! tests read to see what the agent received across restarts.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use spectask_acp_test_agent::script::RequestRecord;

/// Who said a history message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Agent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub text: String,
}

/// The persisted part of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionFile {
    pub session_id: String,
    pub cwd: PathBuf,
    #[serde(default)]
    pub history: Vec<Message>,
    /// Uses of each rule, keyed by `"{index}:{prompt_contains}"`. Kept per session (not per
    /// process) so a rule with `times: 1` that crashes the agent does not fire again after the
    /// restart, and concurrent tests sharing the default state directory do not interfere.
    #[serde(default)]
    pub rule_uses: BTreeMap<String, u32>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, session_id: &str) -> anyhow::Result<PathBuf> {
        // Session ids come from clients on `session/load`; keep them from naming other files.
        if session_id.is_empty()
            || !session_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            anyhow::bail!("session id {session_id:?} is not one this agent issues");
        }
        Ok(self.dir.join(format!("{session_id}.json")))
    }

    /// Reads a session; `Ok(None)` when this directory has never seen it.
    pub fn load(&self, session_id: &str) -> anyhow::Result<Option<SessionFile>> {
        let path = self.path(session_id)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("parsing {path:?}"))?,
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {path:?}")),
        }
    }

    /// Writes a session atomically (temp file, fsync, rename) so a crash never leaves half a file.
    pub fn save(&self, session: &SessionFile) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {:?}", self.dir))?;
        let path = self.path(&session.session_id)?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        {
            let mut file = fs::File::create(&tmp).with_context(|| format!("creating {tmp:?}"))?;
            file.write_all(&serde_json::to_vec_pretty(session)?)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path).with_context(|| format!("renaming to {path:?}"))?;
        Ok(())
    }

    /// Counts one more process start (the `crash_on_start` counter, kept across restarts) and
    /// returns the new count.
    pub fn count_start(&self) -> anyhow::Result<u32> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {:?}", self.dir))?;
        let path = self.dir.join("starts.count");
        let starts = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u32>().unwrap_or(0),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err).with_context(|| format!("reading {path:?}")),
        } + 1;
        fs::write(&path, starts.to_string()).with_context(|| format!("writing {path:?}"))?;
        Ok(starts)
    }

    /// Loads, changes and saves a session in one go.
    pub fn update(
        &self,
        session_id: &str,
        change: impl FnOnce(&mut SessionFile),
    ) -> anyhow::Result<SessionFile> {
        let mut session = self
            .load(session_id)?
            .with_context(|| format!("session {session_id} has no state file"))?;
        change(&mut session);
        self.save(&session)?;
        Ok(session)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Appends one record to the request log, fsync'd so it survives the agent crashing right after.
pub fn append_record(log: &Path, record: &RequestRecord) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {log:?}"))?;
    file.write_all(&line)?;
    file.sync_data()?;
    Ok(())
}
