//! Guarded transitions of every state machine, their events, races, and archived tasks.

use futures::future::join_all;
use serde_json::json;
use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

use crate::support::*;

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

}
