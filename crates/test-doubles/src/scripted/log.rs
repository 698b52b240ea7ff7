//! The scripted runtime's dispatch log: one JSON line per call, flushed and synced per line, so
//! a test that kills the server process still reads every call that process made.

use std::io::Write;

use serde::Serialize;

use super::{ScriptedRuntime, now_ms};
use crate::lock;

/// One line of the dispatch log.
#[derive(Debug, Serialize)]
pub(super) struct LogLine<'a> {
    pub(super) event: &'a str,
    pub(super) instance_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) turn_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) work_session_id: Option<&'a str>,
    /// The working directory a thread call named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cwd: Option<&'a std::path::Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) outcome: Option<&'a str>,
    pub(super) at_ms: u128,
}

impl<'a> LogLine<'a> {
    pub(super) fn new(event: &'a str, instance_id: &'a str) -> Self {
        Self {
            event,
            instance_id,
            thread_id: None,
            turn_id: None,
            work_session_id: None,
            cwd: None,
            outcome: None,
            at_ms: now_ms(),
        }
    }
}

impl ScriptedRuntime {
    pub(super) fn log(&self, line: &LogLine<'_>) {
        let mut log = lock(&self.shared.log);
        let Some(file) = log.as_mut() else {
            return;
        };
        let result = serde_json::to_string(line)
            .map_err(std::io::Error::from)
            .and_then(|mut text| {
                text.push('\n');
                // One write per line, so concurrent processes appending to the same file never
                // interleave within a line.
                file.write_all(text.as_bytes())?;
                file.flush()?;
                file.sync_data()
            });
        if let Err(err) = result {
            tracing::error!(%err, "cannot write the scripted runtime's dispatch log");
        }
    }
}
