//! `/agents`: the agent profiles this server can run (configured ones and the built-in presets,
//! each with whether its program is on the server's `PATH`), the default agent and where it came
//! from, the planners; and a check of one profile that runs the ACP `initialize` handshake with a
//! throw-away agent. No profile's environment is shown: it may hold secrets.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use spectask_engine::agent_catalog::{
    AgentCheck, AgentDescription, AgentHandshake, DefaultSource, ProfileSource, SandboxMode,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::routes::implementation::instance::SandboxModeName;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(check_agent))
}

/// The agent profiles, the default agent and the planners.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    agents: Vec<AgentProfileView>,
    /// The agent of tasks that name no `implementation_agent`; `null` when there is none.
    default_agent: Option<String>,
    /// `configured` (`default_agent` in spectask.toml) or `detected` (none configured, and it was
    /// the only built-in agent found on `PATH`); `null` without a default agent.
    default_agent_source: Option<DefaultSourceName>,
    /// The planner profiles a task's `spec_agent` may name.
    planners: Vec<PlannerView>,
    /// The planner of tasks that name none (`--llm-model`); `null` when there is none.
    default_planner: Option<DefaultPlannerView>,
}

/// One agent profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentProfileView {
    /// The name a task's `implementation_agent` or `spec_agent` uses.
    name: String,
    /// The program (looked up on `PATH` when it has no slash).
    command: String,
    args: Vec<String>,
    source: ProfileSourceName,
    /// Whether the program was found on the server (on `PATH`, or as the file it names).
    available: bool,
    /// Where it was found; `null` when it was not.
    path: Option<String>,
    /// How its permission requests are answered.
    permission_policy: PermissionPolicyName,
    sandbox: SandboxModeName,
    /// Whether it is the default agent.
    default: bool,
}

/// `configured` (spectask.toml, possibly replacing a preset of the same name) or `preset`
/// (built in).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSourceName {
    Configured,
    Preset,
}

/// `configured` or `detected`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultSourceName {
    Configured,
    Detected,
}

/// `allow_workspace_edits`, `deny` or `ask`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicyName {
    AllowWorkspaceEdits,
    Deny,
    Ask,
}

/// One planner profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannerView {
    name: String,
    model: String,
}

/// The default planner.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultPlannerView {
    model: String,
}

/// The result of checking an agent profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentCheckView {
    name: String,
    /// The agent started and completed the handshake (and the profile's `authenticate`).
    ok: bool,
    /// The ACP protocol version the agent answered with; `null` when it did not answer.
    protocol_version: Option<u16>,
    /// The agent's own name and version, if it said.
    agent_info: Option<AgentInfoView>,
    /// What the agent supports; `null` when it did not answer.
    capabilities: Option<CapabilitiesView>,
    /// The authentication methods the agent offers.
    auth_methods: Vec<AuthMethodView>,
    /// How long the check took, start to stop.
    duration_ms: u64,
    /// Why the check failed; `null` when it passed.
    error: Option<String>,
}

/// `agentInfo` from the agent's `initialize` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentInfoView {
    name: String,
    title: Option<String>,
    version: String,
}

/// `agentCapabilities` from the agent's `initialize` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapabilitiesView {
    /// `session/load`: threads resume after a restart of the agent.
    load_session: bool,
    prompt: PromptCapabilitiesView,
    mcp: McpCapabilitiesView,
}

/// The content a prompt may carry beyond text.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromptCapabilitiesView {
    image: bool,
    audio: bool,
    embedded_context: bool,
}

/// The MCP transports the agent speaks (spectask's tools need `http`).
#[derive(Debug, Serialize, ToSchema)]
pub struct McpCapabilitiesView {
    http: bool,
    sse: bool,
}

/// One authentication method the agent offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthMethodView {
    id: String,
    name: String,
    description: Option<String>,
}

/// Lists the agent profiles (configured and built-in, with whether each program is on the
/// server's `PATH`), the default agent and the planners.
#[utoipa::path(
    get, path = "/agents", tag = "agents",
    responses((status = 200, body = AgentList))
)]
async fn list_agents(State(state): State<AppState>) -> Json<AgentList> {
    let catalog = state.engine.agent_catalog();
    let planners = state.engine.planners();
    Json(AgentList {
        agents: catalog.agents.into_iter().map(profile_view).collect(),
        default_agent: catalog.default_agent,
        default_agent_source: catalog.default_source.map(|source| match source {
            DefaultSource::Configured => DefaultSourceName::Configured,
            DefaultSource::Detected => DefaultSourceName::Detected,
        }),
        planners: planners
            .profiles()
            .map(|planner| PlannerView {
                name: planner.name.clone(),
                model: planner.client.config().model.clone(),
            })
            .collect(),
        default_planner: planners
            .default_planner()
            .map(|planner| DefaultPlannerView {
                model: planner.client.config().model.clone(),
            }),
    })
}

/// Checks an agent profile: starts its agent as a task's would (under the shim, with its
/// environment and sandbox) in an empty directory, runs the ACP `initialize` handshake (and the
/// profile's `authenticate`), then stops it. Each request of the handshake may take 20 s. A
/// program that is missing, exits or answers badly is a 200 with `ok: false` and the `error`: the
/// check ran, its result is negative.
#[utoipa::path(
    post, path = "/agents/{name}/check", tag = "agents",
    params(("name" = String, Path, description = "Agent profile name")),
    responses(
        (status = 200, body = AgentCheckView),
        (status = 404, description = "`not_found`: no agent profile of that name", body = ErrorBody),
    )
)]
async fn check_agent(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AgentCheckView>, ApiError> {
    let known = state
        .engine
        .agent_catalog()
        .agents
        .iter()
        .any(|agent| agent.name == name);
    let check = if known {
        state.engine.check_agent(&name).await
    } else {
        None
    };
    let check = check.ok_or(ApiError::NotFound {
        entity: "agent",
        id: name,
    })?;
    Ok(Json(check_view(check)))
}

fn profile_view(agent: AgentDescription) -> AgentProfileView {
    AgentProfileView {
        available: agent.path.is_some(),
        path: agent.path.map(|path| path.to_string_lossy().into_owned()),
        name: agent.name,
        command: agent.command,
        args: agent.args,
        source: match agent.source {
            ProfileSource::Configured => ProfileSourceName::Configured,
            ProfileSource::Preset => ProfileSourceName::Preset,
        },
        permission_policy: match agent.permission_policy {
            "deny" => PermissionPolicyName::Deny,
            "ask" => PermissionPolicyName::Ask,
            _ => PermissionPolicyName::AllowWorkspaceEdits,
        },
        sandbox: match agent.sandbox {
            SandboxMode::Required => SandboxModeName::Required,
            SandboxMode::BestEffort => SandboxModeName::BestEffort,
            SandboxMode::Off => SandboxModeName::Off,
        },
        default: agent.default,
    }
}

fn check_view(check: AgentCheck) -> AgentCheckView {
    let handshake: Option<AgentHandshake> = check.handshake;
    AgentCheckView {
        name: check.name,
        ok: check.ok,
        protocol_version: handshake.as_ref().map(|h| h.protocol_version),
        agent_info: handshake
            .as_ref()
            .and_then(|h| h.agent_info.as_ref())
            .map(|info| AgentInfoView {
                name: info.name.clone(),
                title: info.title.clone(),
                version: info.version.clone(),
            }),
        capabilities: handshake.as_ref().map(|h| CapabilitiesView {
            load_session: h.load_session,
            prompt: PromptCapabilitiesView {
                image: h.prompt_image,
                audio: h.prompt_audio,
                embedded_context: h.prompt_embedded_context,
            },
            mcp: McpCapabilitiesView {
                http: h.mcp_http,
                sse: h.mcp_sse,
            },
        }),
        auth_methods: handshake
            .map(|h| {
                h.auth_methods
                    .into_iter()
                    .map(|method| AuthMethodView {
                        id: method.id,
                        name: method.name,
                        description: method.description,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        duration_ms: u64::try_from(check.duration.as_millis()).unwrap_or(u64::MAX),
        error: check.error,
    }
}
