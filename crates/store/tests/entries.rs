//! Interaction entries in the store, on both databases: a batch is written with the reply text
//! under the turn's claim, read back in pages, refused whole when the claim is lost, and cleared
//! by a reset; many turns' output written at once (combined into shared writes) lands in each
//! turn's own order, with one event per batch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

fn message(text: &str) -> EntryBody {
    EntryBody::Message(TextEntry {
        text: text.to_owned(),
    })
}

fn tool_call(id: &str, status: &str) -> EntryBody {
    let mut call = ToolCallEntry::unknown(id);
    call.status = status.to_owned();
    EntryBody::ToolCall(call)
}

/// A planning turn claimed by `worker`.
async fn claimed(store: &Store) -> TurnClaim {
    claimed_named(store, "entries").await
}

async fn claimed_named(store: &Store, name: &str) -> TurnClaim {
    let new = NewSpecTask {
        name: name.into(),
        name_derived: false,
        description: String::new(),
        task_type: TaskType::Feature,
        priority: Priority::Medium,
        original_prompt: "record entries".into(),
        spec_agent: None,
        implementation_agent: None,
        project_path: None,
        workspace_config: None,
        created_by: "tester".into(),
    };
    let task = store.create_spec_task(&new).await.unwrap();
    store
        .start_planning(&task.id, SpecTaskEvent::StartPlanning, "plan it", "tester")
        .await
        .unwrap();
    store
        .claim_next_turn(
            &[TurnKind::Planning],
            "worker",
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap()
        .expect("a queued turn")
}

fn bodies(entries: &[InteractionEntry]) -> Vec<(i32, EntryBody)> {
    entries.iter().map(|e| (e.seq, e.body.clone())).collect()
}

backend_tests! {
    async fn entries_are_appended_with_the_text_paged_guarded_and_reset(db) {
        let store = db.store().await;
        let claim = claimed(&store).await;
        let (session, interaction) = (&claim.turn.session_id, &claim.turn.interaction_id);

        store.append_turn_output(&claim, "ab".into(), vec![message("ab"), tool_call("t1", "pending")]).await.unwrap();
        store.append_turn_output(&claim, "".into(), vec![tool_call("t1", "completed")]).await.unwrap();
        store.append_turn_output(&claim, "c".into(), vec![message("c")]).await.unwrap();
        let all = store.list_interaction_entries(session, interaction, None, 500).await.unwrap();
        assert_eq!(bodies(&all), [
            (0, message("ab")),
            (1, tool_call("t1", "pending")),
            (2, tool_call("t1", "completed")),
            (3, message("c")),
        ]);
        let shown = store.get_session(session).await.unwrap();
        assert_eq!((shown.interactions[0].response_message.as_str(), shown.interactions[0].entry_count), ("abc", 4));

        let page = store.list_interaction_entries(session, interaction, Some(1), 2).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(store.list_interaction_entries(session, interaction, Some(3), 10).await.unwrap().is_empty());

        // A worker that lost its claim writes nothing at all.
        let stale = TurnClaim { token: "stale".into(), ..claim.clone() };
        let err = store.append_turn_output(&stale, "x".into(), vec![message("x")]).await.unwrap_err();
        assert!(matches!(err, StoreError::ClaimLost(_)), "{err:?}");
        assert!(matches!(store.reset_turn_output(&stale).await.unwrap_err(), StoreError::ClaimLost(_)));
        assert_eq!(store.list_interaction_entries(session, interaction, None, 500).await.unwrap().len(), 4);

        // Unknown session, unknown interaction, an interaction of another session: not found.
        let other = store.create_session(&claim.turn.spec_task_id, SessionRole::Implementation, "other", "tester").await.unwrap();
        let unknown_session = SessionId::from_ulid(ulid::Ulid::new());
        let unknown_interaction = InteractionId::from_ulid(ulid::Ulid::new());
        for (s, i) in [(&unknown_session, interaction), (session, &unknown_interaction), (&other.id, interaction)] {
            let err = store.list_interaction_entries(s, i, None, 10).await.unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        }

        // A reset starts the interaction clean; seqs start again at 0.
        store.reset_turn_output(&claim).await.unwrap();
        assert!(store.list_interaction_entries(session, interaction, None, 500).await.unwrap().is_empty());
        store.append_turn_output(&claim, "d".into(), vec![message("d")]).await.unwrap();
        let after = store.list_interaction_entries(session, interaction, None, 500).await.unwrap();
        assert_eq!(bodies(&after), [(0, message("d"))]);
        let shown = store.get_session(session).await.unwrap();
        assert_eq!((shown.interactions[0].response_message.as_str(), shown.interactions[0].entry_count), ("d", 1));

        // Ending the turn stores the whole reply in place of its streamed pieces: shown once.
        store.append_turn_output(&claim, "e".into(), vec![]).await.unwrap();
        assert_eq!(store.get_session(session).await.unwrap().interactions[0].response_message, "de");
        store.fail_planning_turn(&claim, "de", "stopped here").await.unwrap();
        let shown = store.get_session(session).await.unwrap();
        assert_eq!((shown.interactions[0].response_message.as_str(), shown.interactions[0].error.as_deref()), ("de", Some("stopped here")));
    }

    async fn many_turns_output_written_at_once_lands_in_each_turns_order(db) {
        let store = db.store().await;
        let mut claims = Vec::new();
        for index in 0..24 {
            claims.push(claimed_named(&store, &format!("turn {index}")).await);
        }
        let before = store.last_event_id().await.unwrap();
        // Every turn writes five batches one after another, all turns at once; a worker whose
        // claim was lost writes beside them; and one turn has two batches in flight at once.
        let writers = claims.iter().enumerate().map(|(index, claim)| {
            let store = store.clone();
            let claim = claim.clone();
            async move {
                for batch in 0..5 {
                    let text = format!("{index}.{batch};");
                    store.append_turn_output(&claim, text.clone(), vec![message(&text), tool_call(&format!("t{batch}"), "pending")]).await.unwrap();
                }
            }
        });
        let stale = TurnClaim { token: "stale".into(), ..claims[0].clone() };
        let stale_writer = store.append_turn_output(&stale, "lost".into(), vec![message("lost")]);
        let (_, lost) = tokio::join!(futures::future::join_all(writers), stale_writer);
        assert!(matches!(lost, Err(StoreError::ClaimLost(_))), "{lost:?}");
        let last = &claims[23];
        let (first, second) = tokio::join!(
            store.append_turn_output(last, "x".into(), vec![message("x")]),
            store.append_turn_output(last, "y".into(), vec![message("y")]),
        );
        first.unwrap();
        second.unwrap();

        for (index, claim) in claims.iter().enumerate() {
            let entries = store.list_interaction_entries(&claim.turn.session_id, &claim.turn.interaction_id, None, 500).await.unwrap();
            let mut expected: Vec<(i32, EntryBody)> = (0..5)
                .flat_map(|batch| [message(&format!("{index}.{batch};")), tool_call(&format!("t{batch}"), "pending")])
                .enumerate()
                .map(|(seq, body)| (seq as i32, body))
                .collect();
            let mut reply: String = (0..5).map(|batch| format!("{index}.{batch};")).collect();
            if index == 23 {
                expected.extend([(10, message("x")), (11, message("y"))]);
                reply.push_str("xy");
            }
            assert_eq!(bodies(&entries), expected, "turn {index}");
            let shown = store.get_session(&claim.turn.session_id).await.unwrap();
            assert_eq!(shown.interactions[0].response_message, reply, "turn {index}");
            assert_eq!(shown.interactions[0].entry_count as usize, expected.len());

            // One event per batch, in the turn's order, each naming its text and its seqs.
            let events = store.list_events(&EventQuery { spec_task_id: Some(claim.turn.spec_task_id.clone()), after: before, limit: 100 }).await.unwrap();
            let updates: Vec<(String, i64, i64)> = events
                .iter()
                .filter(|event| event.kind == EventKind::InteractionUpdated)
                .map(|event| {
                    let p = &event.payload;
                    (p["delta"].as_str().unwrap().to_owned(), p["entries"]["first_seq"].as_i64().unwrap(), p["entries"]["count"].as_i64().unwrap())
                })
                .collect();
            let mut want: Vec<(String, i64, i64)> = (0..5).map(|batch| (format!("{index}.{batch};"), batch * 2, 2)).collect();
            if index == 23 {
                want.extend([("x".to_owned(), 10, 1), ("y".to_owned(), 11, 1)]);
            }
            assert_eq!(updates, want, "turn {index}");
        }
    }
}
