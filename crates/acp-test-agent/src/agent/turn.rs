//! One prompt turn: picks the script's steps for the prompt, runs them against the client, keeps
//! the session's history file up to date, and returns the stop reason. Every wait (delays,
//! client replies, `hang`) races the turn's cancel flag so `session/cancel` ends it promptly.
//! The `run_command` step lives in `command`.

mod command;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    ContentChunk, McpServer, PermissionOption, PermissionOptionKind, Plan, PlanEntry,
    PlanEntryPriority, PlanEntryStatus, PromptResponse, ReadTextFileRequest,
    RequestPermissionOutcome, RequestPermissionRequest, SessionId, SessionNotification,
    SessionUpdate, StopReason, ToolCall, ToolCallId, ToolCallLocation, ToolCallStatus,
    ToolCallUpdate, ToolCallUpdateFields, ToolKind, UsageUpdate, WriteTextFileRequest,
};
use agent_client_protocol::{Client, Error};
use spectask_acp_test_agent::script::{
    PermissionChoice, PermissionKind, PlanPriority, PlanStatus, Script, Step, StopReasonName,
};
use tokio::sync::watch;

use super::state::{Message, Role, StateDir};
use super::{chunk, internal, mcp};

/// How long a `crash` step waits for already-queued messages to reach stdout before exiting:
/// the SDK writes from its own task, and a test wants to see what was sent before the crash.
const CRASH_FLUSH: Duration = Duration::from_millis(100);

pub struct Turn {
    pub connection: ConnectionTo<Client>,
    pub session_id: SessionId,
    pub cwd: PathBuf,
    pub mcp_servers: Vec<McpServer>,
    pub cancel: watch::Receiver<bool>,
    pub state: StateDir,
    pub next_tool_id: u32,
    /// The agent message text of this turn, saved to the history when the turn ends.
    pub agent_text: String,
}

/// How a step left the turn.
enum Flow {
    Continue,
    Stop(StopReason),
}

/// The result of racing a future against the cancel flag.
enum Raced<T> {
    Done(T),
    Cancelled,
}

impl Turn {
    pub async fn run(mut self, script: &Script, prompt: String) -> Result<PromptResponse, Error> {
        let id = self.session_id.0.to_string();
        let steps = self.choose_steps(script, &prompt)?;
        self.state
            .update(&id, |file| {
                file.history.push(Message {
                    role: Role::User,
                    text: prompt,
                });
            })
            .map_err(|err| internal(format!("saving history: {err:#}")))?;

        let mut reason = StopReason::EndTurn;
        for step in &steps {
            if self.is_cancelled() {
                reason = StopReason::Cancelled;
                break;
            }
            match self.step(step).await? {
                Flow::Continue => {}
                Flow::Stop(stop) => {
                    reason = stop;
                    break;
                }
            }
        }
        if self.is_cancelled() {
            reason = StopReason::Cancelled;
        }
        if !self.agent_text.is_empty() {
            let text = std::mem::take(&mut self.agent_text);
            self.state
                .update(&id, |file| {
                    file.history.push(Message {
                        role: Role::Agent,
                        text,
                    });
                })
                .map_err(|err| internal(format!("saving history: {err:#}")))?;
        }
        tracing::info!(session_id = %id, ?reason, "turn ended");
        Ok(PromptResponse::new(reason))
    }

    /// The first rule whose text is in the prompt and which has uses left, else the default
    /// steps. A rule's use is recorded before its steps run, so a crashing rule counts.
    fn choose_steps(&self, script: &Script, prompt: &str) -> Result<Vec<Step>, Error> {
        let id = self.session_id.0.to_string();
        let file = self
            .state
            .load(&id)
            .map_err(|err| internal(format!("loading session: {err:#}")))?
            .ok_or_else(|| internal(format!("session {id} has no state file")))?;
        for (index, rule) in script.rules.iter().enumerate() {
            if !prompt.contains(&rule.prompt_contains) {
                continue;
            }
            let key = format!("{index}:{}", rule.prompt_contains);
            let used = file.rule_uses.get(&key).copied().unwrap_or(0);
            if rule.times.is_some_and(|times| used >= times) {
                continue;
            }
            self.state
                .update(&id, |file| {
                    file.rule_uses.insert(key, used + 1);
                })
                .map_err(|err| internal(format!("saving rule use: {err:#}")))?;
            return Ok(rule.steps.clone());
        }
        Ok(script.steps.clone())
    }

    fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Runs `work` unless the turn is cancelled first.
    async fn race<T>(&self, work: impl Future<Output = T>) -> Raced<T> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            // A dropped sender means the turn's owner is gone: treat it as a cancel too.
            _ = cancel.wait_for(|cancelled| *cancelled) => Raced::Cancelled,
            value = work => Raced::Done(value),
        }
    }

    fn notify(&self, update: SessionUpdate) -> Result<(), Error> {
        self.connection
            .send_notification(SessionNotification::new(self.session_id.clone(), update))
    }

    fn say(&mut self, text: &str) -> Result<(), Error> {
        self.agent_text.push_str(text);
        self.connection.send_notification(chunk(
            &self.session_id,
            SessionUpdate::AgentMessageChunk,
            text,
        ))
    }

    fn tool_id(&mut self) -> ToolCallId {
        self.next_tool_id += 1;
        ToolCallId::new(format!("tool-{}", self.next_tool_id))
    }

    fn finish_tool(
        &self,
        id: &ToolCallId,
        status: ToolCallStatus,
        output: serde_json::Value,
    ) -> Result<(), Error> {
        let text = match &output {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        self.notify(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
            id.clone(),
            ToolCallUpdateFields::new()
                .status(status)
                .content(vec![text.into()])
                .raw_output(output),
        )))
    }

    fn absolute(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        if path.is_absolute() {
            path
        } else {
            self.cwd.join(path)
        }
    }

    async fn step(&mut self, step: &Step) -> Result<Flow, Error> {
        match step {
            Step::Chunks { count, delay_ms } => {
                for i in 1..=*count {
                    if i > 1 && *delay_ms > 0 {
                        let delay = tokio::time::sleep(Duration::from_millis(*delay_ms));
                        if let Raced::Cancelled = self.race(delay).await {
                            return Ok(Flow::Stop(StopReason::Cancelled));
                        }
                    }
                    if self.is_cancelled() {
                        return Ok(Flow::Stop(StopReason::Cancelled));
                    }
                    self.say(&format!("chunk {i}/{count}\n"))?;
                }
            }
            Step::Message { text } => {
                self.notify(SessionUpdate::AgentMessageChunk(ContentChunk::new(
                    text.clone().into(),
                )))?;
            }
            Step::Thought { text } => {
                self.notify(SessionUpdate::AgentThoughtChunk(ContentChunk::new(
                    text.clone().into(),
                )))?;
            }
            Step::WriteFile { path, content } => {
                let abs = self.absolute(path);
                let id = self.tool_id();
                self.notify(SessionUpdate::ToolCall(
                    ToolCall::new(id.clone(), format!("Write {}", abs.display()))
                        .kind(ToolKind::Edit)
                        .status(ToolCallStatus::InProgress)
                        .locations(vec![ToolCallLocation::new(abs.clone())])
                        .raw_input(serde_json::json!({"path": abs, "content": content})),
                ))?;
                let request = self.connection.send_request(WriteTextFileRequest::new(
                    self.session_id.clone(),
                    abs.clone(),
                    content.clone(),
                ));
                match self.race(request.block_task()).await {
                    Raced::Cancelled => return Ok(Flow::Stop(StopReason::Cancelled)),
                    Raced::Done(Ok(_)) => {
                        self.finish_tool(&id, ToolCallStatus::Completed, serde_json::json!("ok"))?;
                    }
                    Raced::Done(Err(err)) => {
                        tracing::info!(path = %abs.display(), %err, "client refused the write");
                        self.finish_tool(
                            &id,
                            ToolCallStatus::Failed,
                            serde_json::json!({"error": err.to_string()}),
                        )?;
                    }
                }
            }
            Step::ReadFile { path } => {
                let abs = self.absolute(path);
                let id = self.tool_id();
                self.notify(SessionUpdate::ToolCall(
                    ToolCall::new(id.clone(), format!("Read {}", abs.display()))
                        .kind(ToolKind::Read)
                        .status(ToolCallStatus::InProgress)
                        .locations(vec![ToolCallLocation::new(abs.clone())]),
                ))?;
                let request = self
                    .connection
                    .send_request(ReadTextFileRequest::new(self.session_id.clone(), abs));
                match self.race(request.block_task()).await {
                    Raced::Cancelled => return Ok(Flow::Stop(StopReason::Cancelled)),
                    Raced::Done(Ok(response)) => {
                        self.finish_tool(&id, ToolCallStatus::Completed, serde_json::json!("ok"))?;
                        let first = response.content.lines().next().unwrap_or("").to_owned();
                        self.say(&format!("{first}\n"))?;
                    }
                    Raced::Done(Err(err)) => {
                        self.finish_tool(
                            &id,
                            ToolCallStatus::Failed,
                            serde_json::json!({"error": err.to_string()}),
                        )?;
                    }
                }
            }
            Step::RequestPermission { title, options } => {
                return self.request_permission(title, options.as_deref()).await;
            }
            Step::RunCommand {
                command,
                ask_permission,
                background,
            } => {
                return self
                    .run_command(command, *ask_permission, *background)
                    .await;
            }
            Step::CallMcpTool {
                server,
                tool,
                arguments,
            } => {
                let id = self.tool_id();
                self.notify(SessionUpdate::ToolCall(
                    ToolCall::new(id.clone(), format!("mcp__{server}__{tool}"))
                        .kind(ToolKind::Other)
                        .status(ToolCallStatus::InProgress)
                        .raw_input(serde_json::Value::Object(arguments.clone())),
                ))?;
                let config = self.mcp_servers.iter().find(|s| mcp::name(s) == server);
                let call = mcp::call_tool(config, server, tool, arguments.clone());
                match self.race(call).await {
                    Raced::Cancelled => return Ok(Flow::Stop(StopReason::Cancelled)),
                    Raced::Done(Ok(text)) => {
                        self.finish_tool(
                            &id,
                            ToolCallStatus::Completed,
                            serde_json::json!(text.clone()),
                        )?;
                        self.say(&format!("{text}\n"))?;
                    }
                    Raced::Done(Err(err)) => {
                        tracing::info!(%server, %tool, %err, "MCP tool call failed");
                        self.finish_tool(
                            &id,
                            ToolCallStatus::Failed,
                            serde_json::json!({"error": err}),
                        )?;
                    }
                }
            }
            Step::Plan { entries } => {
                let entries = entries
                    .iter()
                    .map(|item| {
                        PlanEntry::new(
                            item.content.clone(),
                            match item.priority {
                                PlanPriority::High => PlanEntryPriority::High,
                                PlanPriority::Medium => PlanEntryPriority::Medium,
                                PlanPriority::Low => PlanEntryPriority::Low,
                            },
                            match item.status {
                                PlanStatus::Pending => PlanEntryStatus::Pending,
                                PlanStatus::InProgress => PlanEntryStatus::InProgress,
                                PlanStatus::Completed => PlanEntryStatus::Completed,
                            },
                        )
                    })
                    .collect();
                self.notify(SessionUpdate::Plan(Plan::new(entries)))?;
            }
            Step::Usage { used, size } => {
                self.notify(SessionUpdate::UsageUpdate(UsageUpdate::new(*used, *size)))?;
            }
            Step::Flood { updates } => {
                for i in 1..=*updates {
                    if self.is_cancelled() {
                        return Ok(Flow::Stop(StopReason::Cancelled));
                    }
                    self.say(&format!("{i}\n"))?;
                }
            }
            Step::Stamped {
                count,
                interval_ms,
                interval_us,
            } => {
                let start = tokio::time::Instant::now();
                let interval = interval_ms
                    .saturating_mul(1000)
                    .saturating_add(*interval_us);
                for i in 0..*count {
                    let due = start + Duration::from_micros(interval.saturating_mul(u64::from(i)));
                    if let Raced::Cancelled = self.race(tokio::time::sleep_until(due)).await {
                        return Ok(Flow::Stop(StopReason::Cancelled));
                    }
                    let sent = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_micros();
                    self.say(&format!("@{sent}\n"))?;
                }
            }
            Step::Hang => {
                self.race(std::future::pending::<()>()).await;
                return Ok(Flow::Stop(StopReason::Cancelled));
            }
            Step::Freeze => {
                tracing::warn!("freezing the whole process as scripted");
                // Let queued output reach stdout first, like `crash`.
                tokio::time::sleep(CRASH_FLUSH).await;
                freeze_process();
                // Only reached if stopping failed (or on resume after SIGCONT): behave as hung.
                std::future::pending::<()>().await;
            }
            Step::Crash { exit_code } => {
                tracing::warn!(exit_code, "crashing mid-turn as scripted");
                tokio::time::sleep(CRASH_FLUSH).await;
                std::process::exit(*exit_code);
            }
            Step::LongLine { bytes } => {
                tracing::warn!(bytes, "writing one endless line to stdout as scripted");
                // Let queued protocol output go first, so the line does not split a message.
                tokio::time::sleep(CRASH_FLUSH).await;
                let bytes = *bytes;
                let written = tokio::task::spawn_blocking(move || write_long_line(bytes)).await;
                tracing::info!(
                    ?written,
                    "long line written (or the client stopped reading)"
                );
                self.race(std::future::pending::<()>()).await;
                return Ok(Flow::Stop(StopReason::Cancelled));
            }
            Step::Stop { reason } => {
                return Ok(Flow::Stop(match reason {
                    StopReasonName::EndTurn => StopReason::EndTurn,
                    StopReasonName::MaxTokens => StopReason::MaxTokens,
                    StopReasonName::MaxTurnRequests => StopReason::MaxTurnRequests,
                    StopReasonName::Refusal => StopReason::Refusal,
                }));
            }
        }
        Ok(Flow::Continue)
    }

    async fn request_permission(
        &mut self,
        title: &str,
        options: Option<&[PermissionChoice]>,
    ) -> Result<Flow, Error> {
        let id = self.tool_id();
        self.notify(SessionUpdate::ToolCall(
            ToolCall::new(id.clone(), title)
                .kind(ToolKind::Other)
                .status(ToolCallStatus::Pending),
        ))?;
        let fields = ToolCallUpdateFields::new()
            .title(title.to_owned())
            .kind(ToolKind::Other);
        match self.ask(&id, fields, options).await? {
            Asked::Cancelled => Ok(Flow::Stop(StopReason::Cancelled)),
            Asked::Allowed => {
                self.finish_tool(&id, ToolCallStatus::Completed, serde_json::json!("allowed"))?;
                Ok(Flow::Continue)
            }
            Asked::Refused => self.refused(&id, title),
        }
    }

    /// Marks tool call `id` refused and ends the turn, as a real agent does when told no.
    fn refused(&mut self, id: &ToolCallId, title: &str) -> Result<Flow, Error> {
        self.finish_tool(id, ToolCallStatus::Failed, serde_json::json!("refused"))?;
        self.say(&format!("permission refused: {title}\n"))?;
        Ok(Flow::Stop(StopReason::EndTurn))
    }

    /// `session/request_permission` for the pending tool call `id`, described by `fields`, with
    /// `options` (default: `allow` and `reject`).
    async fn ask(
        &mut self,
        id: &ToolCallId,
        fields: ToolCallUpdateFields,
        options: Option<&[PermissionChoice]>,
    ) -> Result<Asked, Error> {
        let default_options = [
            PermissionChoice {
                id: "allow".to_owned(),
                name: Some("Allow".to_owned()),
                kind: PermissionKind::AllowOnce,
            },
            PermissionChoice {
                id: "reject".to_owned(),
                name: Some("Reject".to_owned()),
                kind: PermissionKind::RejectOnce,
            },
        ];
        let choices = options.unwrap_or(&default_options);
        let acp_options = choices
            .iter()
            .map(|choice| {
                PermissionOption::new(
                    choice.id.clone(),
                    choice.name.clone().unwrap_or_else(|| choice.id.clone()),
                    match choice.kind {
                        PermissionKind::AllowOnce => PermissionOptionKind::AllowOnce,
                        PermissionKind::AllowAlways => PermissionOptionKind::AllowAlways,
                        PermissionKind::RejectOnce => PermissionOptionKind::RejectOnce,
                        PermissionKind::RejectAlways => PermissionOptionKind::RejectAlways,
                    },
                )
            })
            .collect();
        let request = self.connection.send_request(RequestPermissionRequest::new(
            self.session_id.clone(),
            ToolCallUpdate::new(id.clone(), fields),
            acp_options,
        ));
        let allowed = match self.race(request.block_task()).await {
            // The client must answer a pending permission request with `cancelled` after
            // `session/cancel`; either way the prompt's answer is `cancelled`.
            Raced::Cancelled => return Ok(Asked::Cancelled),
            Raced::Done(response) => match response?.outcome {
                RequestPermissionOutcome::Selected(selected) => choices
                    .iter()
                    .any(|choice| *choice.id == *selected.option_id.0 && choice.kind.allows()),
                _ => false,
            },
        };
        Ok(if self.is_cancelled() {
            Asked::Cancelled
        } else if allowed {
            Asked::Allowed
        } else {
            Asked::Refused
        })
    }
}

/// How a permission request was answered.
enum Asked {
    Allowed,
    Refused,
    Cancelled,
}

/// Stops this process with SIGSTOP: every thread halts, nothing more is read or written.
#[cfg(unix)]
fn freeze_process() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
}

#[cfg(not(unix))]
fn freeze_process() {}

/// Writes `bytes` bytes of `x` to the process's stdout (fd 1) directly, bypassing the SDK's
/// writer, with no newline. Fails once the reader is gone (EPIPE).
fn write_long_line(bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let block = [b'x'; 64 * 1024];
    let mut stdout = std::io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        stdout.write_all(&block[..n])?;
        left -= n as u64;
    }
    stdout.flush()
}
