//! What creating a task decides about its planning, before anything is written (so a refusal
//! changes nothing): whether the planner it names can plan it (an agent profile plans in the
//! project checkout, so it needs a `project_path`), whether its implementation agent is known,
//! and whether planning starts at once (`auto_start`, by default whenever a planner can plan).

use super::route::PlanningRoute;
use crate::{Engine, EngineError};

/// What a new task asks for that bears on planning.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanningOnCreate<'a> {
    /// The planner profile or agent profile the task names.
    pub spec_agent: Option<&'a str>,
    /// The agent profile that will implement the task.
    pub implementation_agent: Option<&'a str>,
    /// Whether the task names a project checkout.
    pub has_project_path: bool,
    /// `Some(true)`: start planning or refuse; `Some(false)`: do not; `None`: start if possible.
    pub auto_start: Option<bool>,
}

/// Why a task cannot be created as asked.
#[derive(Debug, thiserror::Error)]
pub enum CreateRefusal {
    /// The task's planner is an agent profile but the task names no checkout to plan in.
    #[error(
        "spec_agent `{0}` is an agent profile: it plans in the project checkout, so project_path is required"
    )]
    AgentPlannerNeedsProject(String),
    /// The task names an implementation agent the configuration does not have.
    #[error("unknown implementation agent `{0}`; configure it under [agents.{0}] in spectask.toml")]
    UnknownImplementationAgent(String),
    /// An unknown planner, or planning asked for with no planner that could answer.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Decides, for a task about to be created, whether its planning starts at once; or why the
    /// task cannot be created.
    pub fn planning_on_create(&self, req: &PlanningOnCreate<'_>) -> Result<bool, CreateRefusal> {
        let implementation_known = req
            .implementation_agent
            .is_none_or(|agent| self.knows_agent(agent));
        decide(
            req,
            self.planning_route(req.spec_agent),
            implementation_known,
        )
    }
}

/// The decision from what the engine knows: the planner route for the task's `spec_agent` and
/// whether its implementation agent is configured. Refusals come in this order: the named
/// planner, the implementation agent, then `auto_start`.
fn decide(
    req: &PlanningOnCreate<'_>,
    route: Result<PlanningRoute<'_>, EngineError>,
    implementation_known: bool,
) -> Result<bool, CreateRefusal> {
    let can_plan = match route {
        Ok(PlanningRoute::Agent(name)) if !req.has_project_path => {
            return Err(CreateRefusal::AgentPlannerNeedsProject(name.to_owned()));
        }
        Ok(_) => true,
        // A named planner must exist; with none named, a missing default only stops planning.
        Err(err) if req.spec_agent.is_some() => return Err(err.into()),
        Err(_) => false,
    };
    if let Some(agent) = req.implementation_agent
        && !implementation_known
    {
        return Err(CreateRefusal::UnknownImplementationAgent(agent.to_owned()));
    }
    match req.auto_start {
        Some(false) => Ok(false),
        Some(true) if !can_plan => Err(EngineError::PlannerNotConfigured.into()),
        Some(true) => Ok(true),
        None => Ok(can_plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_planner() -> Result<PlanningRoute<'static>, EngineError> {
        Err(EngineError::PlannerNotConfigured)
    }

    #[test]
    fn planning_starts_by_default_only_when_a_planner_can_plan() {
        let req = PlanningOnCreate {
            has_project_path: true,
            spec_agent: Some("claude"),
            ..PlanningOnCreate::default()
        };
        assert!(matches!(
            decide(&req, Ok(PlanningRoute::Agent("claude")), true),
            Ok(true)
        ));
        let req = PlanningOnCreate::default();
        assert!(matches!(decide(&req, no_planner(), true), Ok(false)));
    }

    #[test]
    fn auto_start_is_obeyed_or_refused() {
        let off = PlanningOnCreate {
            auto_start: Some(false),
            has_project_path: true,
            ..PlanningOnCreate::default()
        };
        assert!(matches!(
            decide(&off, Ok(PlanningRoute::Agent("claude")), true),
            Ok(false)
        ));
        let on = PlanningOnCreate {
            auto_start: Some(true),
            ..PlanningOnCreate::default()
        };
        assert!(matches!(
            decide(&on, no_planner(), true),
            Err(CreateRefusal::Engine(EngineError::PlannerNotConfigured))
        ));
    }

    #[test]
    fn an_agent_planner_needs_a_project() {
        let req = PlanningOnCreate {
            spec_agent: Some("claude"),
            auto_start: Some(false),
            ..PlanningOnCreate::default()
        };
        let refusal = decide(&req, Ok(PlanningRoute::Agent("claude")), true);
        assert!(
            matches!(&refusal, Err(CreateRefusal::AgentPlannerNeedsProject(n)) if n == "claude"),
            "{refusal:?}"
        );
    }

    #[test]
    fn a_named_planner_must_exist_and_is_checked_before_the_implementation_agent() {
        let req = PlanningOnCreate {
            spec_agent: Some("nope"),
            implementation_agent: Some("ghost"),
            ..PlanningOnCreate::default()
        };
        let unknown = Err(EngineError::UnknownPlanner {
            name: "nope".into(),
            known: "none".into(),
        });
        assert!(matches!(
            decide(&req, unknown, false),
            Err(CreateRefusal::Engine(EngineError::UnknownPlanner { .. }))
        ));
        let req = PlanningOnCreate {
            implementation_agent: Some("ghost"),
            ..PlanningOnCreate::default()
        };
        let refusal = decide(&req, no_planner(), false);
        assert!(
            matches!(&refusal, Err(CreateRefusal::UnknownImplementationAgent(a)) if a == "ghost"),
            "{refusal:?}"
        );
    }
}
