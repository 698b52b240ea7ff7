//! Binding a planning session to its agent, on both databases: the task's instance is set once,
//! the ACP session is recorded once, only under the running turn's claim, and a session that is
//! forgotten on failure leaves the task in `spec_failed` in the same commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

async fn planning_claim(store: &Store) -> TurnClaim {
    let task = store
        .create_spec_task(&NewSpecTask {
            name: "plan".into(),
            name_derived: false,
            description: "plan".into(),
            task_type: TaskType::Feature,
            priority: Priority::Medium,
            original_prompt: "plan".into(),
            spec_agent: Some("agent".into()),
            implementation_agent: None,
            project_path: None,
            workspace_config: None,
            created_by: "tester".into(),
        })
        .await
        .unwrap();
    store
        .start_planning(&task.id, SpecTaskEvent::StartPlanning, "prompt", "tester")
        .await
        .unwrap();
    store
        .claim_next_turn(
            &[TurnKind::Planning],
            "worker",
            Duration::from_secs(30),
            None,
        )
        .await
        .unwrap()
        .expect("the planning turn is queued")
}

backend_tests! {
    async fn the_instance_and_the_agent_session_are_bound_once(db) {
        let store = db.store().await;
        let claim = planning_claim(&store).await;
        let first = store.bind_planning_instance(&claim, "zin_a").await.unwrap();
        let second = store.bind_planning_instance(&claim, "zin_b").await.unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("zin_a", "zin_a"), "an existing instance is kept");
        let task = store.get_spec_task(&claim.turn.spec_task_id).await.unwrap();
        assert_eq!(task.zed_instance_id.as_deref(), Some("zin_a"));

        store.record_planning_thread(&claim, "acp-1").await.unwrap();
        let again = store.record_planning_thread(&claim, "acp-2").await.unwrap_err();
        assert!(matches!(again, StoreError::Conflict(_)), "{again}");
        let session = store.get_session(&claim.turn.session_id).await.unwrap();
        assert_eq!(session.agent_thread_id.as_deref(), Some("acp-1"));
        let events = store.list_events(&EventQuery { spec_task_id: Some(claim.turn.spec_task_id.clone()), after: 0, limit: 1000 }).await.unwrap();
        let bound: Vec<_> = events.iter().filter(|e| e.kind == EventKind::SessionAgentThreadBound).collect();
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].payload["agent_thread_id"], "acp-1");

        // Without the claim nothing is written.
        store.release_turn(&claim).await.unwrap();
        let stale = store.bind_planning_instance(&claim, "zin_c").await.unwrap_err();
        assert!(matches!(stale, StoreError::ClaimLost(_)), "{stale}");
    }

    async fn a_forgotten_session_fails_the_planning_in_the_same_commit(db) {
        let store = db.store().await;
        let claim = planning_claim(&store).await;
        store.record_planning_thread(&claim, "acp-1").await.unwrap();
        let task = store.fail_planning_forgetting_thread(&claim, "cannot load acp-1").await.unwrap();
        assert_eq!((task.status, task.error.as_deref()), (SpecTaskStatus::SpecFailed, Some("cannot load acp-1")));
        let session = store.get_session(&claim.turn.session_id).await.unwrap();
        assert_eq!(session.agent_thread_id, None);
        let turn = store.get_turn(&claim.turn.id).await.unwrap();
        assert_eq!(turn.status, TurnStatus::Failed);
        // The claim is spent: a second failure changes nothing.
        assert!(matches!(store.fail_planning_forgetting_thread(&claim, "again").await, Err(StoreError::ClaimLost(_))));
        assert_eq!(store.get_spec_task(&claim.turn.spec_task_id).await.unwrap().error.as_deref(), Some("cannot load acp-1"));
    }
}
