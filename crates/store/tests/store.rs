//! The store's behaviour on both databases: guarded transitions for every state machine, races,
//! the seed's unique constraints, cascades, all-or-nothing batches and the event log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

fn new_task(prompt: &str) -> NewSpecTask {
    NewSpecTask {
        name: prompt.to_owned(),
        name_derived: false,
        description: prompt.to_owned(),
        task_type: TaskType::Feature,
        priority: Priority::Medium,
        original_prompt: prompt.to_owned(),
        spec_agent: None,
        implementation_agent: None,
        project_path: None,
        workspace_config: Some(json!({"k": [1, 2]})),
        created_by: "tester".into(),
    }
}

/// The shortest event path from `from` to `to` through a transition table.
fn path<S: Copy + Eq + std::hash::Hash + 'static, E: Copy>(
    from: S,
    to: S,
    events: &[E],
    allowed: impl Fn(E) -> &'static [S],
    target: impl Fn(E) -> S,
) -> Vec<E> {
    let mut prev: HashMap<S, (S, E)> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(s) = queue.pop_front() {
        if s == to {
            break;
        }
        for &e in events {
            let t = target(e);
            if allowed(e).contains(&s) && t != from && !prev.contains_key(&t) {
                prev.insert(t, (s, e));
                queue.push_back(t);
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = to;
    while cur != from {
        let (p, e) = prev[&cur];
        out.push(e);
        cur = p;
    }
    out.reverse();
    out
}

async fn task_in(store: &Store, status: SpecTaskStatus) -> SpecTask {
    let task = store.create_spec_task(&new_task("walk")).await.unwrap();
    for event in path(
        SpecTaskStatus::Backlog,
        status,
        SpecTaskEvent::ALL,
        SpecTaskEvent::allowed_from,
        SpecTaskEvent::target,
    ) {
        store
            .transition_spec_task(&task.id, event, "tester")
            .await
            .unwrap();
    }
    let task = store.get_spec_task(&task.id).await.unwrap();
    assert_eq!(task.status, status);
    task
}

/// A task with one work session, its thread and one implementation task.
async fn task_with_children(
    store: &Store,
) -> (
    SpecTask,
    Session,
    SpecTaskWorkSession,
    SpecTaskZedThread,
    SpecTaskImplementationTask,
) {
    let task = store.create_spec_task(&new_task("parent")).await.unwrap();
    let session = store
        .create_session(&task.id, SessionRole::Implementation, "impl", "tester")
        .await
        .unwrap();
    let work = store
        .create_work_session(
            &NewWorkSession {
                spec_task_id: task.id.clone(),
                helix_session_id: session.id.clone(),
                name: Some("Backend API".into()),
                description: Some("endpoints".into()),
                phase: WorkSessionPhase::Implementation,
                implementation_task_title: Some("Backend API".into()),
                implementation_task_description: Some("endpoints".into()),
                implementation_task_index: Some(0),
                parent_work_session_id: None,
                spawned_by_session_id: None,
                agent_config: Some(json!({"agent": "claude"})),
                environment_config: None,
            },
            "tester",
        )
        .await
        .unwrap();
    let thread = store
        .create_zed_thread(
            &NewZedThread {
                work_session_id: work.id.clone(),
                zed_thread_id: "acp-1".into(),
                thread_config: None,
            },
            "tester",
        )
        .await
        .unwrap();
    let implementation = store
        .insert_implementation_tasks(&task.id, &[implementation_task("1", 0)], "tester")
        .await
        .unwrap()
        .remove(0);
    (task, session, work, thread, implementation)
}

fn implementation_task(key: &str, index: i32) -> NewImplementationTask {
    NewImplementationTask {
        key: key.into(),
        title: format!("Task {key}"),
        description: Some("do it".into()),
        acceptance_criteria: None,
        estimated_effort: Some("small".into()),
        priority: 0,
        index,
        phase: None,
        parent_key: None,
        requirement_refs: vec!["1.1".into()],
        dependencies: vec![],
    }
}

backend_tests! {
    async fn create_get_and_round_trip_every_field(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("Add dark mode")).await.unwrap();
        assert!(task.id.as_str().starts_with("spt_"));
        assert_eq!(task.status, SpecTaskStatus::Backlog);
        assert_eq!(task.workspace_config, Some(json!({"k": [1, 2]})));
        let fetched = store.get_spec_task(&task.id).await.unwrap();
        assert_eq!(fetched, task);
    }

    async fn every_spec_task_transition_pair_is_guarded(db) {
        let store = db.store().await;
        for &status in SpecTaskStatus::ALL {
            let subject = task_in(&store, status).await;
            for &event in SpecTaskEvent::ALL {
                match event.apply(status) {
                    Ok(target) => {
                        let fresh = task_in(&store, status).await;
                        let after = store.transition_spec_task(&fresh.id, event, "tester").await.unwrap();
                        assert_eq!(after.status, target, "{event} from {status}");
                        if target == SpecTaskStatus::Implementation {
                            assert!(after.started_at.is_some());
                        }
                        if target == SpecTaskStatus::Done {
                            assert!(after.completed_at.is_some());
                        }
                    }
                    Err(_) => {
                        let err = store.transition_spec_task(&subject.id, event, "tester").await.unwrap_err();
                        match err {
                            StoreError::Transition(t) => {
                                assert_eq!(t.current, status.as_str());
                                assert_eq!(t.allowed_from, event.allowed_from().iter().map(|s| s.as_str()).collect::<Vec<_>>());
                            }
                            other => panic!("{event} from {status}: {other:?}"),
                        }
                        let unchanged = store.get_spec_task(&subject.id).await.unwrap();
                        assert_eq!(unchanged.status, status);
                        assert_eq!(unchanged.updated_at, subject.updated_at);
                    }
                }
            }
        }
    }

    async fn transition_writes_its_event_in_the_same_commit(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("events")).await.unwrap();
        store.transition_spec_task(&task.id, SpecTaskEvent::StartPlanning, "alice").await.unwrap();
        let refused = store.transition_spec_task(&task.id, SpecTaskEvent::ApproveSpecs, "alice").await;
        assert!(refused.is_err());
        let events = store.list_events(&EventQuery { spec_task_id: Some(task.id.clone()), after: 0, limit: 100 }).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::SpecTaskCreated, EventKind::SpecTaskStatusChanged]);
        assert_eq!(events[1].payload, json!({"event": "start_planning", "from": "backlog", "to": "spec_generation"}));
        assert_eq!(events[1].actor, "alice");
    }

    async fn fifty_concurrent_attempts_exactly_one_wins(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("race")).await.unwrap();
        let attempts = (0..50).map(|i| {
            let store = store.clone();
            let id = task.id.clone();
            tokio::spawn(async move { store.transition_spec_task(&id, SpecTaskEvent::StartPlanning, &format!("racer-{i}")).await })
        });
        let results: Vec<_> = join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one transition must win");
        for result in &results {
            if let Err(err) = result {
                assert!(matches!(err, StoreError::Transition(t) if t.current == "spec_generation"), "{err:?}");
            }
        }
        let events = store.list_events(&EventQuery { spec_task_id: Some(task.id.clone()), after: 0, limit: 100 }).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == EventKind::SpecTaskStatusChanged).count(), 1);
    }

    async fn work_session_thread_and_implementation_task_transitions_are_guarded(db) {
        let store = db.store().await;
        let (_, _, work, thread, implementation) = task_with_children(&store).await;

        let active = store.transition_work_session(&work.id, WorkSessionEvent::Activate, "t").await.unwrap();
        assert_eq!(active.status, WorkSessionStatus::Active);
        assert!(active.started_at.is_some());
        let err = store.transition_work_session(&work.id, WorkSessionEvent::Unblock, "t").await.unwrap_err();
        assert!(matches!(err, StoreError::Transition(t) if t.current == "active" && t.allowed_from == ["blocked"]));
        let done = store.transition_work_session(&work.id, WorkSessionEvent::Complete, "t").await.unwrap();
        assert!(done.completed_at.is_some());

        let thread = store.transition_zed_thread(&thread.id, ZedThreadEvent::Start, "t").await.unwrap();
        assert_eq!(thread.status, ZedThreadStatus::Active);
        assert!(thread.last_activity_at.is_some());
        let thread = store.transition_zed_thread(&thread.id, ZedThreadEvent::Disconnect, "t").await.unwrap();
        assert_eq!(thread.status, ZedThreadStatus::Disconnected);
        assert!(store.transition_zed_thread(&thread.id, ZedThreadEvent::Complete, "t").await.is_err());
        let thread = store.transition_zed_thread(&thread.id, ZedThreadEvent::Reconnect, "t").await.unwrap();
        assert_eq!(thread.zed_thread_id, "acp-1", "the thread pointer survives a reconnect");

        assert!(store.transition_implementation_task(&implementation.id, ImplementationTaskEvent::Start, "t").await.is_err());
        store.transition_implementation_task(&implementation.id, ImplementationTaskEvent::Assign, "t").await.unwrap();
        let completed = store.transition_implementation_task(&implementation.id, ImplementationTaskEvent::Complete, "t").await.unwrap();
        assert_eq!(completed.status, ImplementationTaskStatus::Completed);
        assert!(completed.completed_at.is_some());
        let reopened = store.transition_implementation_task(&implementation.id, ImplementationTaskEvent::Reopen, "t").await.unwrap();
        assert!(reopened.completed_at.is_none());

        let missing = WorkSessionId::parse("stws_01arz3ndektsv4rrffq69g5fav").unwrap();
        assert!(matches!(
            store.transition_work_session(&missing, WorkSessionEvent::Activate, "t").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    async fn seed_unique_constraints_hold(db) {
        let store = db.store().await;
        let (task, session, work, _, _) = task_with_children(&store).await;
        // UNIQUE(helix_session_id): a Helix session backs one work session only.
        let again = store
            .create_work_session(
                &NewWorkSession {
                    spec_task_id: task.id.clone(),
                    helix_session_id: session.id.clone(),
                    name: None, description: None, phase: WorkSessionPhase::Implementation,
                    implementation_task_title: None, implementation_task_description: None,
                    implementation_task_index: None, parent_work_session_id: None,
                    spawned_by_session_id: None, agent_config: None, environment_config: None,
                },
                "t",
            )
            .await;
        assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");
        // UNIQUE(work_session_id): one thread per work session.
        let second_thread = store
            .create_zed_thread(&NewZedThread { work_session_id: work.id.clone(), zed_thread_id: "acp-2".into(), thread_config: None }, "t")
            .await;
        assert!(matches!(second_thread, Err(StoreError::Duplicate(_))), "{second_thread:?}");
        // UNIQUE(spec_task_id, zed_thread_id): within a task only.
        let other_session = store.create_session(&task.id, SessionRole::Implementation, "b", "t").await.unwrap();
        let other_work = store
            .create_work_session(
                &NewWorkSession {
                    spec_task_id: task.id.clone(),
                    helix_session_id: other_session.id.clone(),
                    name: Some("spawned".into()), description: None, phase: WorkSessionPhase::Implementation,
                    implementation_task_title: None, implementation_task_description: None,
                    implementation_task_index: None, parent_work_session_id: Some(work.id.clone()),
                    spawned_by_session_id: Some(work.id.clone()), agent_config: None, environment_config: None,
                },
                "t",
            )
            .await
            .unwrap();
        assert_eq!(other_work.parent_work_session_id.as_ref(), Some(&work.id));
        let clash = store
            .create_zed_thread(&NewZedThread { work_session_id: other_work.id.clone(), zed_thread_id: "acp-1".into(), thread_config: None }, "t")
            .await;
        assert!(matches!(clash, Err(StoreError::Duplicate(_))), "{clash:?}");
        let (_, _, other_task_work, _, _) = task_with_children(&store).await;
        assert_eq!(store.list_zed_threads(&other_task_work.spec_task_id).await.unwrap()[0].zed_thread_id, "acp-1");
        assert_eq!(store.list_work_sessions(&task.id).await.unwrap().len(), 2);
    }

    async fn batch_insert_is_all_or_nothing(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("batch")).await.unwrap();
        let batch = [implementation_task("1", 0), implementation_task("2", 1), implementation_task("1", 2)];
        let result = store.insert_implementation_tasks(&task.id, &batch, "t").await;
        assert!(matches!(result, Err(StoreError::Duplicate(_))), "{result:?}");
        assert!(store.list_implementation_tasks(&task.id).await.unwrap().is_empty());
        let events = store.list_events(&EventQuery { spec_task_id: Some(task.id.clone()), after: 0, limit: 100 }).await.unwrap();
        assert_eq!(events.len(), 1, "only the creation event: the failed batch left nothing");

        let ok = store.insert_implementation_tasks(&task.id, &batch[..2], "t").await.unwrap();
        let listed = store.list_implementation_tasks(&task.id).await.unwrap();
        assert_eq!(listed, ok);
        assert_eq!(listed[0].requirement_refs, ["1.1"]);
    }

    async fn delete_cascades_to_everything_the_task_owns(db) {
        let store = db.store().await;
        let (task, session, work, thread, implementation) = task_with_children(&store).await;
        store.append_interaction(&session.id, "hello", "t").await.unwrap();
        store.add_revision(&task.id, &NewRevision {
            requirements_spec: "# R".into(), technical_design: "# D".into(), implementation_plan: "# P".into(),
            feedback: None, interaction_id: None,
        }, "t").await.unwrap();
        let (survivor, survivor_session, ..) = task_with_children(&store).await;

        store.delete_spec_task(&task.id, "t").await.unwrap();

        assert!(matches!(store.get_spec_task(&task.id).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get_session(&session.id).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get_work_session(&work.id).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get_zed_thread(&thread.id).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get_implementation_task(&implementation.id).await, Err(StoreError::NotFound { .. })));
        assert!(store.list_revisions(&task.id).await.unwrap().is_empty());
        assert!(matches!(store.delete_spec_task(&task.id, "t").await, Err(StoreError::NotFound { .. })));
        // The history survives, ending with the deletion.
        let events = store.list_events(&EventQuery { spec_task_id: Some(task.id.clone()), after: 0, limit: 100 }).await.unwrap();
        assert_eq!(events.last().unwrap().kind, EventKind::SpecTaskDeleted);
        // Other tasks are untouched.
        assert_eq!(store.get_spec_task(&survivor.id).await.unwrap().id, survivor.id);
        assert_eq!(store.get_session(&survivor_session.id).await.unwrap().id, survivor_session.id);
    }

    async fn revisions_are_numbered_and_update_the_task(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("revs")).await.unwrap();
        assert_eq!(store.latest_revision_number(&task.id).await.unwrap(), None);
        let writes = (0..8).map(|i| {
            let store = store.clone();
            let id = task.id.clone();
            tokio::spawn(async move {
                store.add_revision(&id, &NewRevision {
                    requirements_spec: format!("# Requirements {i}"), technical_design: "# Design".into(),
                    implementation_plan: "- [ ] 1. Do".into(), feedback: Some(format!("round {i}")), interaction_id: None,
                }, "t").await
            })
        });
        let mut numbers: Vec<i32> = join_all(writes).await.into_iter().map(|r| r.unwrap().unwrap().revision).collect();
        numbers.sort();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
        let latest = store.get_revision(&task.id, 8).await.unwrap();
        let task = store.get_spec_task(&task.id).await.unwrap();
        assert_eq!(task.requirements_spec.as_deref(), Some(latest.requirements_spec.as_str()));
        assert_eq!(store.list_revisions(&task.id).await.unwrap().len(), 8);
        assert!(matches!(store.get_revision(&task.id, 9).await, Err(StoreError::NotFound { .. })));
    }

    async fn sessions_keep_interactions_in_order(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("s")).await.unwrap();
        let session = store.create_session(&task.id, SessionRole::Planning, "planning", "t").await.unwrap();
        for i in 0..5 {
            let interaction = store.append_interaction(&session.id, &format!("prompt {i}"), "t").await.unwrap();
            assert_eq!(interaction.seq, i);
            assert_eq!(interaction.state, InteractionState::Waiting);
        }
        let loaded = store.get_session(&session.id).await.unwrap();
        assert_eq!(loaded.role, SessionRole::Planning);
        assert_eq!(loaded.interactions.iter().map(|i| i.prompt_message.clone()).collect::<Vec<_>>(),
                   (0..5).map(|i| format!("prompt {i}")).collect::<Vec<_>>());
        let missing = SpecTaskId::parse("spt_01arz3ndektsv4rrffq69g5fav").unwrap();
        assert!(matches!(store.create_session(&missing, SessionRole::Planning, "x", "t").await, Err(StoreError::NotFound { .. })));
    }

    async fn event_ids_are_gapless_and_ordered_under_concurrency(db) {
        let store = db.store().await;
        let creates = (0..40).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_spec_task(&new_task(&format!("c{i}"))).await.unwrap() })
        });
        join_all(creates).await;
        let events = store.list_events(&EventQuery { spec_task_id: None, after: 0, limit: 1000 }).await.unwrap();
        assert_eq!(events.len(), 40);
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.last_event_id().await.unwrap(), events.last().unwrap().id);
        let page = store.list_events(&EventQuery { spec_task_id: None, after: events[9].id, limit: 5 }).await.unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), events[10..15].iter().map(|e| e.id).collect::<Vec<_>>());
    }

    async fn archived_tasks_refuse_edits_and_double_archive(db) {
        let store = db.store().await;
        let task = store.create_spec_task(&new_task("arch")).await.unwrap();
        store.set_archived(&task.id, true, "t").await.unwrap();
        assert!(matches!(store.set_archived(&task.id, true, "t").await, Err(StoreError::Conflict(_))));
        let patch = SpecTaskPatch { name: Some("new".into()), ..Default::default() };
        assert!(matches!(store.update_spec_task(&task.id, &patch, "t").await, Err(StoreError::Conflict(_))));
        store.set_archived(&task.id, false, "t").await.unwrap();
        assert_eq!(store.update_spec_task(&task.id, &patch, "t").await.unwrap().name, "new");
    }

    async fn list_filters_search_and_pages(db) {
        let store = db.store().await;
        let mut ids = Vec::new();
        for (i, (ty, pr)) in [(TaskType::Bug, Priority::High), (TaskType::Feature, Priority::Low), (TaskType::Bug, Priority::Low)].into_iter().enumerate() {
            let mut new = new_task(&format!("Fix 100% of the_bugs #{i}"));
            new.task_type = ty;
            new.priority = pr;
            ids.push(store.create_spec_task(&new).await.unwrap().id);
        }
        let all = store.list_spec_tasks(&SpecTaskFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.total, 3);
        assert_eq!(all.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), ids.iter().rev().cloned().collect::<Vec<_>>());
        let bugs = store.list_spec_tasks(&SpecTaskFilter { task_type: Some(TaskType::Bug), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(bugs.total, 2);
        let low_bugs = store.list_spec_tasks(&SpecTaskFilter { task_type: Some(TaskType::Bug), priority: Some(Priority::Low), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(low_bugs.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), [ids[2].clone()]);
        // Wildcards in the search text match literally; case does not matter.
        let q = store.list_spec_tasks(&SpecTaskFilter { q: Some("100% OF THE_BUGS #1".into()), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(q.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), [ids[1].clone()]);
        let none = store.list_spec_tasks(&SpecTaskFilter { q: Some("100_".into()), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(none.total, 0);
        let page = store.list_spec_tasks(&SpecTaskFilter { limit: 1, offset: 1, ..Default::default() }).await.unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.items[0].id, ids[1]);
    }

    async fn events_table_is_append_only(db) {
        use sqlx::Connection;
        let store = db.store().await;
        store.create_spec_task(&new_task("history")).await.unwrap();
        for statement in ["UPDATE events SET actor = 'mallory'", "DELETE FROM events"] {
            let result = if db.kind() == "sqlite" {
                let mut conn = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
                sqlx::query(statement).execute(&mut conn).await.map(|_| ())
            } else {
                let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
                sqlx::query(statement).execute(&mut conn).await.map(|_| ())
            };
            let err = result.expect_err(statement).to_string();
            assert!(err.contains("append-only"), "{err}");
        }
        assert_eq!(store.list_events(&EventQuery { spec_task_id: None, after: 0, limit: 10 }).await.unwrap().len(), 1);
    }

    async fn agent_tokens_are_hashed_superseded_revoked_at_session_end_and_never_revived(db) {
        let store = db.store().await;
        let (task, _, work, _, _) = task_with_children(&store).await;
        let day = Duration::from_secs(86_400);
        let mint = |owner| TokenMint { instance_id: "inst-1", minted_by: owner, ttl: day };
        let token = store.issue_agent_token(&work.id, mint("r/1")).await.unwrap();
        assert_eq!(token.len(), 64, "256 bits, hex");
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let hash = hash_agent_token(&token);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, token, "only the hash is kept");
        assert_eq!(hash, hash_agent_token(&token), "hashing is deterministic");
        let grant = store.authenticate_agent_token(&token).await.unwrap().unwrap();
        assert_eq!(grant, AgentGrant { work_session_id: work.id.clone(), spec_task_id: task.id.clone() });
        assert_eq!(store.authenticate_agent_token(&hash).await.unwrap(), None, "the stored hash is not a token");
        assert_eq!(store.authenticate_agent_token("0000").await.unwrap(), None);

        let other = store.issue_agent_token(&work.id, mint("r/1")).await.unwrap();
        assert_ne!(token, other, "every thread set-up gets a fresh token");
        assert_eq!(store.authenticate_agent_token(&token).await.unwrap(), None, "a newer set-up supersedes the older token");
        assert_eq!(store.authenticate_agent_token(&other).await.unwrap(), Some(grant));
        assert_eq!(store.agent_token_state(&work.id).await.unwrap(), AgentTokenState::Live);

        store.transition_work_session(&work.id, WorkSessionEvent::Activate, "t").await.unwrap();
        assert!(store.authenticate_agent_token(&other).await.unwrap().is_some(), "valid while active");
        store.transition_work_session(&work.id, WorkSessionEvent::Fail, "t").await.unwrap();
        assert_eq!(store.authenticate_agent_token(&other).await.unwrap(), None, "a finished session's token is refused");
        assert_eq!(store.agent_token_state(&work.id).await.unwrap(), AgentTokenState::Dead);
        store.transition_work_session(&work.id, WorkSessionEvent::Retry, "t").await.unwrap();
        store.transition_work_session(&work.id, WorkSessionEvent::Activate, "t").await.unwrap();
        assert_eq!(store.authenticate_agent_token(&other).await.unwrap(), None, "a retried session does not revive its old token");
        assert_eq!(store.agent_token_state(&work.id).await.unwrap(), AgentTokenState::Dead, "the next turn must set the thread up again");
        let fresh = store.issue_agent_token(&work.id, mint("r/1")).await.unwrap();
        assert!(store.authenticate_agent_token(&fresh).await.unwrap().is_some());

        // The process that minted it is gone, or its instance stopped: revoked.
        assert_eq!(store.revoke_agent_tokens_minted_by("r/other").await.unwrap(), 0);
        assert_eq!(store.revoke_agent_tokens_minted_by("r/1").await.unwrap(), 1);
        assert_eq!(store.authenticate_agent_token(&fresh).await.unwrap(), None);
        let again = store.issue_agent_token(&work.id, mint("r/2")).await.unwrap();
        assert_eq!(store.revoke_instance_agent_tokens("inst-1").await.unwrap(), 1);
        assert_eq!(store.authenticate_agent_token(&again).await.unwrap(), None);

        // A token outlives nothing past its TTL.
        let short = store
            .issue_agent_token(&work.id, TokenMint { instance_id: "inst-1", minted_by: "r/2", ttl: Duration::from_millis(1) })
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.authenticate_agent_token(&short).await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "the token never expired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(store.agent_token_state(&work.id).await.unwrap(), AgentTokenState::Dead);
        assert!(matches!(
            store.issue_agent_token(&WorkSessionId::parse("stws_01arz3ndektsv4rrffq69g5fav").unwrap(), mint("r/2")).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    async fn a_starting_process_requeues_its_dead_predecessors_turns_never_a_live_siblings(db) {
        let store = db.store().await;
        let mut claims = Vec::new();
        for owner in ["host/dead-predecessor", "host/live-sibling"] {
            let task = store.create_spec_task(&new_task(owner)).await.unwrap();
            store.start_planning(&task.id, SpecTaskEvent::StartPlanning, "plan it", "tester").await.unwrap();
            let claim = store
                .claim_next_turn(&[TurnKind::Planning], owner, Duration::from_secs(600))
                .await
                .unwrap()
                .expect("a queued turn");
            claims.push(claim);
        }
        // Same replica name, different processes: only the one known dead loses its turn.
        let requeued = store.requeue_turns_of_dead_owner("host/dead-predecessor", "host/starting").await.unwrap();
        assert_eq!(requeued, 1);
        assert_eq!(store.get_turn(&claims[0].turn.id).await.unwrap().status, TurnStatus::Queued);
        assert_eq!(store.get_turn(&claims[1].turn.id).await.unwrap().status, TurnStatus::Running);
        store.heartbeat_turn(&claims[1], Duration::from_secs(600)).await.unwrap();
        assert!(matches!(store.heartbeat_turn(&claims[0], Duration::from_secs(600)).await, Err(StoreError::ClaimLost(_))));
        assert_eq!(store.requeue_turns_of_dead_owner("host/dead-predecessor", "host/starting").await.unwrap(), 0);
    }

    async fn spawns_are_idempotent_per_parent_and_name_and_bounded_by_the_caps(db) {
        let store = db.store().await;
        let (task, _, work, _, _) = task_with_children(&store).await;
        store.transition_work_session(&work.id, WorkSessionEvent::Activate, "t").await.unwrap();
        let caps = SpawnCaps { max_per_task: 3, max_depth: 1 };
        let first = store.spawn_work_session(&work.id, "Security audit", "audit", "agent", Some(caps)).await.unwrap();
        assert!(first.created);
        let repeat = store.spawn_work_session(&work.id, "Security audit", "audit it again", "agent", Some(caps)).await.unwrap();
        assert!(!repeat.created, "a repeat finds the session it spawned");
        assert_eq!(repeat.work_session.id, first.work_session.id);
        let events = store.list_events(&EventQuery { spec_task_id: Some(task.id.clone()), after: 0, limit: 500 }).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == EventKind::WorkSessionCreated && e.payload["spawned"] == true).count(), 1);
        assert_eq!(store.list_work_sessions(&task.id).await.unwrap().len(), 2);

        // Depth: the spawned session (depth 1) may not spawn under max_depth 1.
        let child = &first.work_session.id;
        store.transition_work_session(child, WorkSessionEvent::Activate, "t").await.unwrap();
        let deep = store.spawn_work_session(child, "Deeper", "d", "agent", Some(caps)).await.unwrap_err();
        assert!(matches!(deep, StoreError::Conflict(ref m) if m.contains("spawn depth cap") && m.contains("max_spawn_depth = 1")), "{deep}");
        // Per task: two more spawns reach 3; the next is refused. A human's spawn is not capped.
        store.spawn_work_session(&work.id, "Docs", "d", "agent", Some(caps)).await.unwrap();
        store.spawn_work_session(&work.id, "Benchmarks", "b", "agent", Some(caps)).await.unwrap();
        let over = store.spawn_work_session(&work.id, "Fuzzing", "f", "agent", Some(caps)).await.unwrap_err();
        assert!(matches!(over, StoreError::Conflict(ref m) if m.contains("spawn cap reached") && m.contains("max_spawned_sessions = 3")), "{over}");
        let repeat = store.spawn_work_session(&work.id, "Docs", "d", "agent", Some(caps)).await.unwrap();
        assert!(!repeat.created, "a repeat past the cap still answers with the session");
        assert!(store.spawn_work_session(&work.id, "Fuzzing", "f", "human", None).await.unwrap().created);
    }

    async fn agent_declarations_need_an_active_session_that_has_not_given_up(db) {
        let store = db.store().await;
        let (_, _, work, _, implementation) = task_with_children(&store).await;
        let refused = store.declare_work_completed(&work.id, "done", "agent").await.unwrap_err();
        assert!(matches!(refused, StoreError::Conflict(ref m) if m.contains("pending")), "{refused}");
        store.transition_work_session(&work.id, WorkSessionEvent::Activate, "t").await.unwrap();
        let unassigned = store
            .report_task_progress(&work.id, &implementation.key, ImplementationTaskStatus::Completed, "n", "agent")
            .await
            .unwrap_err();
        assert!(matches!(unassigned, StoreError::Conflict(ref m) if m.contains("not one of")), "{unassigned}");
        let done = store.declare_work_completed(&work.id, "all done", "agent").await.unwrap();
        assert_eq!(done.agent_summary.as_deref(), Some("all done"));
        let repeated = store.declare_work_completed(&work.id, "all done, again", "agent").await.unwrap();
        assert_eq!(repeated.agent_summary.as_deref(), Some("all done"), "a repeat changes nothing");
        let gave_up = store.declare_work_failed(&work.id, "cannot", "agent").await.unwrap();
        assert_eq!(gave_up.agent_gave_up.as_deref(), Some("cannot"));
        assert_eq!(gave_up.status, WorkSessionStatus::Active, "the session fails when the turn ends");
        let repeated = store.declare_work_failed(&work.id, "cannot, said again", "agent").await.unwrap();
        assert_eq!(repeated.agent_gave_up.as_deref(), Some("cannot"), "a repeat changes nothing");
        let again = store.declare_work_completed(&work.id, "x", "agent").await.unwrap_err();
        assert!(matches!(again, StoreError::Conflict(ref m) if m.contains("given up")), "{again}");
        let events = store.list_events(&EventQuery { spec_task_id: Some(work.spec_task_id.clone()), after: 0, limit: 100 }).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == EventKind::AgentCompletionDeclared).count(), 1);
        assert_eq!(events.iter().filter(|e| e.kind == EventKind::AgentGaveUp).count(), 1);
        let gave_up_event = events.iter().find(|e| e.kind == EventKind::AgentGaveUp).unwrap();
        assert_eq!(gave_up_event.payload["reason"], "cannot");
    }

    async fn the_active_threads_of_a_lost_instance_are_disconnected_together(db) {
        let store = db.store().await;
        let plan = |name: &str, index: i32| WorkSessionPlan {
            name: name.to_owned(),
            description: name.to_owned(),
            task_title: name.to_owned(),
            task_description: name.to_owned(),
            task_index: index,
            implementation_task_ids: Vec::new(),
        };
        let lost = task_in(&store, SpecTaskStatus::ImplementationQueued).await;
        let sessions = store.start_implementation(&lost.id, "zin_lost", &[plan("a", 0), plan("b", 1), plan("c", 2)], "t").await.unwrap();
        let a = store.record_thread(&sessions[0].id, "acp-a", "t").await.unwrap();
        let b = store.record_thread(&sessions[1].id, "acp-b", "t").await.unwrap();
        let c = store.record_thread(&sessions[2].id, "acp-c", "t").await.unwrap();
        store.transition_zed_thread(&c.id, ZedThreadEvent::Complete, "t").await.unwrap();
        let other = task_in(&store, SpecTaskStatus::ImplementationQueued).await;
        let other_sessions = store.start_implementation(&other.id, "zin_other", &[plan("x", 0)], "t").await.unwrap();
        let x = store.record_thread(&other_sessions[0].id, "acp-x", "t").await.unwrap();

        let active: Vec<_> = store.active_threads_of_instance("zin_lost").await.unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(active, vec![a.id.clone(), b.id.clone()], "completed threads and other instances are not included");
        assert!(store.active_threads_of_instance("zin_nobody").await.unwrap().is_empty());

        // `b` went away on its own in the meantime: it is left alone, not an error.
        store.transition_zed_thread(&b.id, ZedThreadEvent::Disconnect, "runner").await.unwrap();
        let before = store.list_events(&EventQuery { spec_task_id: Some(lost.id.clone()), after: 0, limit: 1000 }).await.unwrap().len();
        let changed = store.disconnect_threads(&active, "supervisor").await.unwrap();
        assert_eq!(changed, vec![a.id.clone()]);
        let events = store.list_events(&EventQuery { spec_task_id: Some(lost.id.clone()), after: 0, limit: 1000 }).await.unwrap();
        assert_eq!(events.len(), before + 1, "one event per thread changed");
        let last = events.last().unwrap();
        assert_eq!((last.kind, last.entity_id.as_str(), last.actor.as_str()), (EventKind::ZedThreadStatusChanged, a.id.as_str(), "supervisor"));
        for (thread, status) in [(&a, ZedThreadStatus::Disconnected), (&b, ZedThreadStatus::Disconnected), (&c, ZedThreadStatus::Completed), (&x, ZedThreadStatus::Active)] {
            assert_eq!(store.get_zed_thread(&thread.id).await.unwrap().status, status);
        }
        assert!(store.disconnect_threads(&active, "supervisor").await.unwrap().is_empty(), "nothing left to change");
        assert!(store.active_threads_of_instance("zin_lost").await.unwrap().is_empty());
    }
}
