//! Data: unique constraints, all-or-nothing batches, cascades, revisions, session order, the
//! event log and task lists.

use futures::future::join_all;
use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

use crate::support::*;

backend_tests! {
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

}
