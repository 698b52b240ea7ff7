//! Turns: streamed updates and their order, cancellation, floods and timed chunks.

use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{CancelNotification, SessionUpdate, StopReason};
use spectask_acp_test_agent::script::{Script, Step};

use crate::support::{AgentEnv, Started, TestClient, agent_text, timeout};

#[tokio::test]
async fn initialize_new_session_and_streamed_chunks_arrive_before_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::Thought {
                text: "thinking".to_owned(),
            },
            Step::Plan {
                entries: vec![serde_json::from_str(r#"{"content": "do it"}"#).unwrap()],
            },
            Step::Chunks {
                count: 5,
                delay_ms: 5,
            },
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    let init = client.initialize().await;
    assert_eq!(init.protocol_version, ProtocolVersion::V1);
    assert!(init.agent_capabilities.load_session);
    let session = client.new_session(dir.path()).await;
    assert!(!session.0.is_empty());

    assert_eq!(
        client.prompt(&session, "go").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert!(matches!(updates[0], SessionUpdate::AgentThoughtChunk(_)));
    assert!(matches!(&updates[1], SessionUpdate::Plan(plan) if plan.entries.len() == 1));
    let expected: Vec<String> = (1..=5).map(|i| format!("chunk {i}/5\n")).collect();
    assert_eq!(agent_text(&updates), expected);
    assert_eq!(updates.len(), 7);

    // A second session gets a different id.
    assert_ne!(client.new_session(dir.path()).await, session);
    client.shutdown().await;
}

#[tokio::test]
async fn hang_is_ended_promptly_by_session_cancel() {
    let Started {
        dir: _dir,
        client,
        session,
    } = Started::new(vec![
        Step::Chunks {
            count: 1,
            delay_ms: 0,
        },
        Step::Hang,
    ])
    .await;
    let prompt = tokio::spawn(client.prompt_request(&session, "hang").block_task());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !prompt.is_finished(),
        "a hanging turn must not end by itself"
    );
    let cancelled_at = std::time::Instant::now();
    client
        .conn
        .send_notification(CancelNotification::new(session.clone()))
        .unwrap();
    let response = timeout(prompt).await.unwrap().unwrap();
    assert_eq!(response.stop_reason, StopReason::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    client.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_ten_thousand_updates_arrives_complete_and_in_order() {
    let Started {
        dir: _dir,
        client,
        session,
    } = Started::new(vec![Step::Flood { updates: 10_000 }]).await;
    assert_eq!(
        client.prompt(&session, "flood").await.unwrap(),
        StopReason::EndTurn
    );
    let texts = agent_text(&client.take_updates());
    assert_eq!(texts.len(), 10_000);
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(*text, format!("{}\n", i + 1));
    }
    client.shutdown().await;
}

/// Stamped chunks carry their send time (microseconds since the epoch) and follow their
/// schedule rather than as fast as possible.
#[tokio::test]
async fn stamped_chunks_carry_their_send_time_on_a_schedule() {
    let micros_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    let Started {
        dir: _dir,
        client,
        session,
    } = Started::new(vec![Step::Stamped {
        count: 5,
        interval_ms: 40,
        interval_us: 0,
    }])
    .await;
    let before = micros_now();
    assert_eq!(
        client.prompt(&session, "stamp").await.unwrap(),
        StopReason::EndTurn
    );
    let after = micros_now();
    let stamps: Vec<u128> = agent_text(&client.take_updates())
        .iter()
        .map(|text| {
            text.strip_prefix('@')
                .and_then(|t| t.strip_suffix('\n'))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(stamps.len(), 5);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(before <= stamps[0] && stamps[4] <= after, "{stamps:?}");
    // Four intervals elapse between the first and the last; one is slack for the timer's
    // millisecond granularity and the wall clock read after each wake-up.
    assert!(stamps[4] - stamps[0] >= 3 * 40_000, "{stamps:?}");
    client.shutdown().await;
}
