//! The tools an agent gets over MCP, each acting on the work session its token speaks for:
//! `get_spec`, `list_work_sessions`, `spawn_work_session`, `report_progress`,
//! `complete_work_session` and `fail_work_session`. A refused call is an MCP tool error
//! (`isError`) with a clear message, never an HTTP error.
//!
//! Repeats are harmless (an interrupted turn is re-run and its agent may call again): a spawn of a
//! name this session already spawned returns that session; a repeated progress report,
//! completion or giving-up within one turn writes nothing and answers as before. Spawns are
//! bounded by `max_spawned_sessions` (per SpecTask) and `max_spawn_depth`.

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use spectask_domain::review::{MAX_VERDICT_REASON_BYTES, ReviewVerdict, is_criterion};
use spectask_domain::{
    ImplementationTaskStatus, SpecTaskImplementationTask, limits, parse_criteria,
};
use spectask_store::{AgentGrant, StoreError};
use tracing::Instrument;

use crate::routes::validate;
use crate::state::AppState;

/// Largest summary, reason, note or description an agent may send, in bytes.
/// Longest task key, in characters.
const MAX_KEY_CHARS: usize = 100;

/// One MCP service instance (rmcp makes one per request in stateless mode).
#[derive(Debug, Clone)]
pub(crate) struct AgentTools {
    state: AppState,
}

/// Why a call was refused: its message goes back to the agent.
struct Refusal(String);

impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. }
            | StoreError::Conflict(_)
            | StoreError::Duplicate(_)
            | StoreError::Transition(_) => Refusal(err.to_string()),
            other => {
                tracing::error!(err = %other, "MCP tool call failed in the store");
                Refusal("spectask could not complete the call; try again".to_owned())
            }
        }
    }
}

impl From<spectask_engine::EngineError> for Refusal {
    fn from(err: spectask_engine::EngineError) -> Self {
        match err {
            spectask_engine::EngineError::Store(store) => store.into(),
            other => Refusal(other.to_string()),
        }
    }
}

type ToolResult = Result<Value, Refusal>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnArgs {
    name: String,
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressArgs {
    task_key: String,
    status: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryArgs {
    summary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonArgs {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictArgs {
    criterion_id: String,
    verdict: String,
    reason: String,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn string_props(props: &[(&str, &str)], required: &[&str]) -> Arc<JsonObject> {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({"type": "string", "description": description}),
            )
        })
        .collect();
    schema(json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }))
}

/// The tool list, with input schemas.
fn tool_list() -> Vec<Tool> {
    vec![
        Tool::new(
            "get_spec",
            "The SpecTask's requirements, design and implementation plan, and this work session's assignment (its implementation tasks with keys, titles and statuses).",
            string_props(&[], &[]),
        ),
        Tool::new(
            "list_work_sessions",
            "Every work session of the SpecTask: id, name, status and its task keys.",
            string_props(&[], &[]),
        ),
        Tool::new(
            "spawn_work_session",
            "Spawns a new work session (its own agent thread) for work outside this session's tasks, e.g. a security audit; it starts as soon as a thread slot is free. Returns its id. Spawning a name this session already spawned returns that session (`already_spawned`). Bounded per SpecTask and in depth: past a cap the call is refused.",
            string_props(
                &[
                    ("name", "Short name of the new session's work."),
                    ("description", "What the new session must do."),
                ],
                &["name", "description"],
            ),
        ),
        Tool::new(
            "report_progress",
            "Reports progress on one of this session's tasks: status `in_progress` or `completed` (flips its checkbox in tasks.md), with a note.",
            string_props(
                &[
                    ("task_key", "The task's key, e.g. `2.1`."),
                    ("status", "`in_progress` or `completed`."),
                    ("note", "What was done."),
                ],
                &["task_key", "status"],
            ),
        ),
        Tool::new(
            "complete_work_session",
            "Declares this session's work done, with a summary; the session completes when your turn ends.",
            string_props(&[("summary", "What was done.")], &["summary"]),
        ),
        Tool::new(
            "report_criterion_verdict",
            "Review sessions only: your verdict on one acceptance criterion of the requirements, `met`, `not_met` or `unclear`, with the reason (the evidence). A later verdict on the same criterion replaces it.",
            string_props(
                &[
                    (
                        "criterion_id",
                        "The criterion's id as the review prompt lists it, e.g. `1.2` or `FR-001`.",
                    ),
                    ("verdict", "`met`, `not_met` or `unclear`."),
                    (
                        "reason",
                        "The evidence: a file and line, a test, a command's output.",
                    ),
                ],
                &["criterion_id", "verdict", "reason"],
            ),
        ),
        Tool::new(
            "fail_work_session",
            "Gives up this session's work, with the reason: when your turn ends the session fails for good and sessions depending on it are blocked. Further reporting tools are refused.",
            string_props(&[("reason", "Why the work cannot be done.")], &["reason"]),
        ),
    ]
}

fn args<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T, Refusal> {
    serde_json::from_value(Value::Object(arguments))
        .map_err(|err| Refusal(format!("invalid arguments for {tool}: {err}")))
}

/// Free text from an agent, trimmed.
fn text(field: &str, value: &str, required: bool) -> Result<String, Refusal> {
    let value = value.trim();
    limits::text_field(field, value, required).map_err(Refusal)?;
    Ok(value.to_owned())
}

fn task_json(task: &SpecTaskImplementationTask) -> Value {
    json!({
        "key": task.key,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "dependencies": task.dependencies,
    })
}

impl AgentTools {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn dispatch(&self, grant: &AgentGrant, tool: &str, arguments: JsonObject) -> ToolResult {
        let actor = format!("agent:{}", grant.work_session_id);
        match tool {
            "get_spec" => {
                args::<NoArgs>(tool, arguments)?;
                self.get_spec(grant).await
            }
            "list_work_sessions" => {
                args::<NoArgs>(tool, arguments)?;
                self.list_work_sessions(grant).await
            }
            "spawn_work_session" => self.spawn(grant, args(tool, arguments)?, &actor).await,
            "report_progress" => self.report(grant, args(tool, arguments)?, &actor).await,
            "report_criterion_verdict" => self.verdict(grant, args(tool, arguments)?).await,
            "complete_work_session" => {
                let SummaryArgs { summary } = args(tool, arguments)?;
                let summary = text("summary", &summary, true)?;
                let ws = self
                    .state
                    .store
                    .declare_work_completed(&grant.work_session_id, &summary, &actor)
                    .await?;
                Ok(
                    json!({"work_session_id": ws.id, "status": ws.status, "summary": ws.agent_summary,
                    "note": "the work session completes when this turn ends"}),
                )
            }
            "fail_work_session" => {
                let ReasonArgs { reason } = args(tool, arguments)?;
                let reason = text("reason", &reason, true)?;
                let ws = self
                    .state
                    .store
                    .declare_work_failed(&grant.work_session_id, &reason, &actor)
                    .await?;
                Ok(
                    json!({"work_session_id": ws.id, "status": ws.status, "reason": ws.agent_gave_up,
                    "note": "the work session fails when this turn ends"}),
                )
            }
            other => Err(Refusal(format!("unknown tool `{other}`"))),
        }
    }

    async fn verdict(&self, grant: &AgentGrant, req: VerdictArgs) -> ToolResult {
        let verdict: ReviewVerdict = req.verdict.trim().parse().map_err(|_| {
            Refusal(format!(
                "verdict must be one of: {}",
                ReviewVerdict::names().join(", ")
            ))
        })?;
        let reason = text("reason", &req.reason, true)?;
        if reason.len() > MAX_VERDICT_REASON_BYTES {
            return Err(Refusal(format!(
                "reason is longer than {MAX_VERDICT_REASON_BYTES} bytes"
            )));
        }
        let store = &self.state.store;
        let task = store.get_spec_task(&grant.spec_task_id).await?;
        let criteria = parse_criteria(task.requirements_spec.as_deref().unwrap_or_default());
        let criterion_id = req.criterion_id.trim();
        if !is_criterion(&criteria.criteria, criterion_id) {
            let known: Vec<&str> = criteria.criteria.iter().map(|c| c.id.as_str()).collect();
            return Err(Refusal(format!(
                "`{criterion_id}` is no acceptance criterion of the requirements; they are: {}",
                known.join(", ")
            )));
        }
        let recorded = store
            .record_verdict(&grant.work_session_id, criterion_id, verdict, &reason)
            .await?;
        Ok(
            json!({"criterion_id": recorded.criterion_id, "verdict": recorded.verdict, "recorded": true}),
        )
    }

    async fn get_spec(&self, grant: &AgentGrant) -> ToolResult {
        let store = &self.state.store;
        let task = store.get_spec_task(&grant.spec_task_id).await?;
        let ws = store.get_work_session(&grant.work_session_id).await?;
        let tasks: Vec<Value> = store
            .list_implementation_tasks(&grant.spec_task_id)
            .await?
            .iter()
            .filter(|t| t.assigned_work_session_id.as_ref() == Some(&ws.id))
            .map(task_json)
            .collect();
        Ok(json!({
            "spec_task": {"id": task.id, "name": task.name, "description": task.description},
            "requirements": task.requirements_spec,
            "design": task.technical_design,
            "implementation_plan": task.implementation_plan,
            "work_session": {
                "id": ws.id, "name": ws.name, "description": ws.description, "status": ws.status,
                "tasks": tasks,
            },
        }))
    }

    async fn list_work_sessions(&self, grant: &AgentGrant) -> ToolResult {
        let store = &self.state.store;
        let tasks = store.list_implementation_tasks(&grant.spec_task_id).await?;
        let sessions: Vec<Value> = store
            .list_work_sessions(&grant.spec_task_id)
            .await?
            .iter()
            .map(|ws| {
                let keys: Vec<&str> = tasks
                    .iter()
                    .filter(|t| t.assigned_work_session_id.as_ref() == Some(&ws.id))
                    .map(|t| t.key.as_str())
                    .collect();
                json!({"id": ws.id, "name": ws.name, "phase": ws.phase, "status": ws.status,
                    "task_keys": keys, "this_session": ws.id == grant.work_session_id})
            })
            .collect();
        Ok(json!({ "work_sessions": sessions }))
    }

    async fn spawn(&self, grant: &AgentGrant, req: SpawnArgs, actor: &str) -> ToolResult {
        let name = validate::name(&req.name).map_err(|err| Refusal(err.to_string()))?;
        let description = text("description", &req.description, true)?;
        let parent = self
            .state
            .store
            .get_work_session(&grant.work_session_id)
            .await?;
        if parent.agent_gave_up.is_some() {
            return Err(Refusal(
                "this work session has given up; it cannot spawn others".to_owned(),
            ));
        }
        let spawned = self
            .state
            .engine
            .spawn_work_session_for_agent(
                &grant.spec_task_id,
                &grant.work_session_id,
                &name,
                &description,
                actor,
            )
            .await?;
        let ws = &spawned.work_session;
        Ok(
            json!({"work_session_id": ws.id, "name": ws.name, "status": ws.status,
            "already_spawned": !spawned.created}),
        )
    }

    async fn report(&self, grant: &AgentGrant, req: ProgressArgs, actor: &str) -> ToolResult {
        let key = req.task_key.trim();
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(Refusal(format!(
                "task_key must be 1 to {MAX_KEY_CHARS} characters"
            )));
        }
        let status = match req.status.as_str() {
            "in_progress" => ImplementationTaskStatus::InProgress,
            "completed" => ImplementationTaskStatus::Completed,
            other => {
                return Err(Refusal(format!(
                    "status must be `in_progress` or `completed`, not `{other}` (use fail_work_session to give up)"
                )));
            }
        };
        let note = text("note", &req.note, false)?;
        let task = self
            .state
            .store
            .report_task_progress(&grant.work_session_id, key, status, &note, actor)
            .await?;
        // tasks.md is derived state: a failed write is logged by the projection, not the agent's
        // problem.
        if let Err(err) = self
            .state
            .engine
            .project_task_progress(&grant.spec_task_id)
            .await
        {
            tracing::warn!(%err, "tasks.md not re-rendered after a progress report");
        }
        Ok(task_json(&task))
    }
}

impl ServerHandler for AgentTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("spectask", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "spectask's tools for the work session this thread belongs to: read the spec and \
                 your assignment, report task progress, spawn sessions, and declare your work \
                 completed or failed.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let grant = context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<AgentGrant>())
            .cloned();
        let Some(grant) = grant else {
            // The middleware admits no request without a grant; this is a wiring fault.
            return Err(ErrorData::internal_error(
                "no agent identity on the request",
                None,
            ));
        };
        let tool = request.name.to_string();
        let arguments = request.arguments.unwrap_or_default();
        // Every log line of the call (store failures included) names the caller.
        let span = tracing::info_span!(
            "mcp_tool",
            %tool,
            spec_task_id = %grant.spec_task_id,
            work_session_id = %grant.work_session_id,
        );
        let result = self
            .dispatch(&grant, &tool, arguments)
            .instrument(span.clone())
            .await;
        let response = span.in_scope(|| match result {
            Ok(value) => {
                tracing::info!("MCP tool call");
                let text =
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
                CallToolResult::success(vec![ContentBlock::text(text)])
            }
            Err(Refusal(message)) => {
                tracing::info!(%message, "MCP tool call refused");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        });
        Ok(response.into())
    }
}
