//! What agents leave in the store: tokens, turns requeued after a dead process, spawns,
//! declarations, and the threads of a lost instance.

use std::time::Duration;

use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

use crate::support::*;

backend_tests! {
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
                .claim_next_turn(&[TurnKind::Planning], owner, Duration::from_secs(600), None)
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
