//! The `run_command` step: a shell command in the session's cwd, reported as an `execute` tool
//! call (asked about first when the script says so), waited for or left running in the
//! background, its output cut and reported back.

use agent_client_protocol::Error;
use agent_client_protocol::v1::schema::{
    SessionUpdate, StopReason, ToolCall, ToolCallStatus, ToolCallUpdateFields, ToolKind,
};

use super::{Asked, Flow, Raced, Turn};

impl Turn {
    /// A `run_command` step: see [`Step::RunCommand`].
    pub(super) async fn run_command(
        &mut self,
        command: &str,
        ask_permission: bool,
        background: bool,
    ) -> Result<Flow, Error> {
        let id = self.tool_id();
        let raw_input = serde_json::json!({ "command": command });
        self.notify(SessionUpdate::ToolCall(
            ToolCall::new(id.clone(), command)
                .kind(ToolKind::Execute)
                .status(ToolCallStatus::Pending)
                .raw_input(raw_input.clone()),
        ))?;
        if ask_permission {
            let fields = ToolCallUpdateFields::new()
                .title(command.to_owned())
                .kind(ToolKind::Execute)
                .raw_input(raw_input);
            match self.ask(&id, fields, None).await? {
                Asked::Cancelled => return Ok(Flow::Stop(StopReason::Cancelled)),
                Asked::Refused => return self.refused(&id, command),
                Asked::Allowed => {}
            }
        }
        let mut shell = tokio::process::Command::new("sh");
        shell
            .arg("-c")
            .arg(command)
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null());
        if background {
            shell
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            return match shell.spawn() {
                Ok(child) => {
                    let pid = child.id().unwrap_or_default();
                    // Dropping the handle neither waits for nor kills the command.
                    drop(child);
                    self.finish_tool(
                        &id,
                        ToolCallStatus::Completed,
                        serde_json::json!(format!("started pid {pid}")),
                    )?;
                    self.say(&format!("started pid {pid}\n"))?;
                    Ok(Flow::Continue)
                }
                Err(err) => {
                    self.finish_tool(
                        &id,
                        ToolCallStatus::Failed,
                        serde_json::json!({"error": err.to_string()}),
                    )?;
                    Ok(Flow::Continue)
                }
            };
        }
        // A cancelled turn drops the wait, and with it the command.
        shell.kill_on_drop(true);
        let output = match self.race(shell.output()).await {
            Raced::Cancelled => return Ok(Flow::Stop(StopReason::Cancelled)),
            Raced::Done(output) => output,
        };
        let (status, report) = match output {
            Ok(output) => {
                let code = output.status.code().unwrap_or(-1);
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                let status = if output.status.success() {
                    ToolCallStatus::Completed
                } else {
                    ToolCallStatus::Failed
                };
                (status, format!("exit {code}\n{}", cut(&text, OUTPUT_CAP)))
            }
            Err(err) => (ToolCallStatus::Failed, format!("exit -1\n{err}")),
        };
        self.finish_tool(&id, status, serde_json::json!(report.clone()))?;
        self.say(&format!("{}\n", report.trim_end()))?;
        Ok(Flow::Continue)
    }
}

/// The most command output a `run_command` step reports.
const OUTPUT_CAP: usize = 4096;

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
