//! The step harness: an [`Engine`] over a fresh store with the scripted agent runtime, SpecTasks
//! brought to `spec_approved` through the store and the engine's own approval, and
//! [`Harness::step`], one worker tick followed by the end of every turn it started.
//!
//! Why a step is deterministic: the tests run on a current-thread runtime, so a turn the tick
//! spawns makes no progress until the tick awaits, and the tick hands each claimed turn its
//! permit before it tries the next one with a plain `try_acquire` (no await in between). With one
//! implementation permit (`max_parallel_threads = 1`, `max_active_instances = 1`) a tick therefore
//! starts exactly one turn, and a retry that turn queues waits for the next tick. With more
//! permits a tick may start turns queued while it ran, which only turn failures do; the tests that
//! need more permits use turns that end without queueing anything.
//!
//! The scripted runtime is imported here and nowhere else, so moving it to another crate changes
//! one line.

use std::sync::Arc;
use std::time::Duration;

use spectask_domain::{
    Event, EventKind, NewSpecTask, Priority, SpecTask, SpecTaskEvent, SpecTaskId,
    SpecTaskWorkSession, SpecTaskZedThread, TaskType, Turn, TurnKind, WorkSessionId,
};
use spectask_engine::implementation::orchestrator::OrchestratorOutcome;
use spectask_engine::worker::TickOutcome;
use spectask_engine::{Engine, EngineSettings, PlannerRegistry};
use spectask_store::{EventQuery, PlanningOutput, Store};
use spectask_testkit::TestDatabase;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use spectask_testkit::{Behaviour, Rule, Script, ScriptedRuntime};

/// Defines each test twice, `sqlite::name` and `postgres::name`, like testkit's `backend_tests!`
/// but on a current-thread runtime (see the module doc for why steps need one). Without
/// `SPECTASK_TEST_DATABASE_URL` the PostgreSQL variants print that they were skipped.
macro_rules! step_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "current_thread")]
                async fn $name() {
                    spectask_testkit::init_test_logging();
                    let $db = spectask_testkit::TestDatabase::sqlite().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "current_thread")]
                async fn $name() {
                    spectask_testkit::init_test_logging();
                    let Some($db) = spectask_testkit::TestDatabase::postgres().await else {
                        spectask_testkit::skip_postgres(concat!(module_path!(), "::", stringify!($name)));
                        return;
                    };
                    $body
                }
            )*
        }
    };
}

/// Longer than any test: no lease expires, no turn times out, so a step never depends on time.
const NEVER: Duration = Duration::from_secs(3600);

/// Settings for step tests: one instance, one thread and one implementation permit (see the
/// module doc), no time limits a test could reach; `tweak` changes what a test is about.
pub fn settings(tweak: impl FnOnce(&mut EngineSettings)) -> EngineSettings {
    let mut settings = EngineSettings {
        turn_lease: NEVER,
        poll_interval: NEVER,
        turn_timeout: NEVER,
        flush_interval: Duration::from_millis(10),
        replica_id: "steps".to_owned(),
        max_parallel_threads: 1,
        max_active_instances: 1,
        max_turn_retries: 2,
        ..EngineSettings::default()
    };
    tweak(&mut settings);
    settings
}

/// A turn that streams two chunks and ends at once.
pub fn succeed() -> Behaviour {
    Behaviour::Succeed {
        chunks: 2,
        chunk_delay_ms: 0,
    }
}

/// A turn that fails with `message`.
pub fn fail(message: &str) -> Behaviour {
    Behaviour::Fail {
        message: message.to_owned(),
        after_chunks: 1,
    }
}

/// Turns whose prompt contains `needle` behave like `behaviour` (`times` of them, or all).
pub fn rule(needle: &str, behaviour: Behaviour, times: Option<u32>) -> Rule {
    Rule {
        prompt_contains: needle.to_owned(),
        behaviour,
        times,
    }
}

/// What one tick did: tasks queued and started by the orchestrator, work sessions it
/// dispatched, and turns the worker claimed and started.
pub fn ticked(queued: usize, started: usize, dispatched: usize, turns: usize) -> TickOutcome {
    TickOutcome {
        requeued: 0,
        started: turns,
        orchestrated: OrchestratorOutcome {
            queued,
            started,
            dispatched,
        },
    }
}

/// A tick that found nothing to do.
pub fn idle() -> TickOutcome {
    ticked(0, 0, 0, 0)
}

/// A plan task: key, title, keys it depends on.
pub type PlanTask<'a> = (&'a str, &'a str, &'a [&'a str]);

/// An implementation plan in the planner's format.
fn plan_text(tasks: &[PlanTask<'_>]) -> String {
    let mut plan = String::new();
    for (key, title, deps) in tasks {
        plan.push_str(&format!(
            "- [ ] {key}. {title}\n  - Build {title}.\n  - _Requirements: 1.1_\n"
        ));
        if !deps.is_empty() {
            plan.push_str(&format!("  - Depends on: {}\n", deps.join(", ")));
        }
    }
    plan
}

/// The engine under test, its store and runtime, and the database they live in.
pub struct Harness {
    pub engine: Engine,
    pub store: Store,
    pub runtime: ScriptedRuntime,
    shutdown: CancellationToken,
    /// Last, so the database outlives everything that uses it.
    _db: TestDatabase,
}

impl Harness {
    pub async fn new(db: TestDatabase, script: Script, settings: EngineSettings) -> Self {
        let store = db.store().await;
        let runtime = ScriptedRuntime::new(script);
        let engine = Engine::with_runtime(
            store.clone(),
            PlannerRegistry::default(),
            Arc::new(runtime.clone()),
            settings,
        );
        Self {
            engine,
            store,
            runtime,
            shutdown: CancellationToken::new(),
            _db: db,
        }
    }

    /// A SpecTask in `spec_approved` whose plan has `tasks`: planned through the store (the
    /// planning turn claimed and completed as a planner would) and approved by the engine, which
    /// parses the plan into implementation tasks with their dependencies.
    pub async fn approved_task(&self, tasks: &[PlanTask<'_>]) -> SpecTaskId {
        self.approved_task_in(tasks, None, None).await
    }

    /// [`Harness::approved_task`] for a task with a project directory and a `workspace_config`.
    pub async fn approved_task_in(
        &self,
        tasks: &[PlanTask<'_>],
        project_path: Option<&str>,
        workspace_config: Option<serde_json::Value>,
    ) -> SpecTaskId {
        let store = &self.store;
        let created = store
            .create_spec_task(&NewSpecTask {
                name: "Steps".to_owned(),
                name_derived: false,
                description: "Build it step by step.".to_owned(),
                task_type: TaskType::Feature,
                priority: Priority::Medium,
                original_prompt: "Build it step by step.".to_owned(),
                spec_agent: None,
                implementation_agent: None,
                project_path: project_path.map(str::to_owned),
                workspace_config,
                created_by: "tester".to_owned(),
            })
            .await
            .unwrap();
        let id = created.id;
        store
            .start_planning(&id, SpecTaskEvent::StartPlanning, "Plan it.", "tester")
            .await
            .unwrap();
        let claim = store
            .claim_next_turn(&[TurnKind::Planning], "test-planner", NEVER, None)
            .await
            .unwrap()
            .expect("the planning turn is queued");
        let output = PlanningOutput {
            title: Some("Steps".to_owned()),
            requirements_spec: "# Requirements: Steps\n\n1.1 WHEN used THE SYSTEM SHALL work.\n"
                .to_owned(),
            technical_design: "# Design: Steps\n\nComponents.\n".to_owned(),
            implementation_plan: format!("# Implementation Plan: Steps\n\n{}", plan_text(tasks)),
        };
        store
            .complete_planning_turn(&claim, &output, "the specs")
            .await
            .unwrap();
        self.engine
            .approve_specs(&id, None, "reviewer", "reviewer")
            .await
            .unwrap();
        id
    }

    /// One worker tick, then waits for every turn it started to end (their results are in the
    /// store when this returns).
    pub async fn step(&self) -> TickOutcome {
        let mut running = JoinSet::new();
        let outcome = self.tick_into(&mut running).await;
        while let Some(ended) = running.join_next().await {
            ended.expect("a turn task panicked");
        }
        outcome
    }

    /// One worker tick whose turns go on in `running` (for turns that hang while a test looks at
    /// what happens around them).
    pub async fn tick_into(&self, running: &mut JoinSet<()>) -> TickOutcome {
        self.engine.tick(running, &self.shutdown).await.unwrap()
    }

    /// Steps until a tick finds nothing to do; returns how many steps did something. Panics
    /// after `max` busy steps.
    pub async fn steps_until_idle(&self, max: usize) -> usize {
        for busy in 0..=max {
            if self.step().await == idle() {
                return busy;
            }
        }
        panic!("still busy after {max} steps");
    }

    pub async fn task(&self, id: &SpecTaskId) -> SpecTask {
        self.store.get_spec_task(id).await.unwrap()
    }

    /// The work session of plan task `key` (named `"{key}. {title}"`) or the spawned one named
    /// `key`.
    pub async fn session(&self, id: &SpecTaskId, key: &str) -> SpecTaskWorkSession {
        let sessions = self.store.list_work_sessions(id).await.unwrap();
        let prefix = format!("{key}. ");
        sessions
            .iter()
            .find(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix) || n == key)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no work session {key} in {sessions:#?}"))
    }

    /// The task's events of `kind`, oldest first.
    pub async fn events(&self, id: &SpecTaskId, kind: EventKind) -> Vec<Event> {
        let query = EventQuery {
            spec_task_id: Some(id.clone()),
            after: 0,
            limit: 10_000,
        };
        let events = self.store.list_events(&query).await.unwrap();
        events.into_iter().filter(|e| e.kind == kind).collect()
    }

    pub async fn turns(&self, ws: &WorkSessionId) -> Vec<Turn> {
        self.store.turns_of_work_session(ws).await.unwrap()
    }

    pub async fn thread(&self, ws: &WorkSessionId) -> SpecTaskZedThread {
        self.store
            .thread_of_work_session(ws)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("work session {ws} has no thread"))
    }

    /// The queue reason the engine gives for work session `ws`.
    pub async fn queue_reason(&self, id: &SpecTaskId, ws: &WorkSessionId) -> Option<String> {
        self.engine
            .work_session_views(id)
            .await
            .unwrap()
            .into_iter()
            .find(|v| &v.work_session.id == ws)
            .expect("the work session is listed")
            .queue_reason
    }
}
