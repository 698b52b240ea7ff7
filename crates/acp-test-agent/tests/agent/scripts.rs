//! Scripts read from a file, rules, and a crashed agent whose successor loads the session.

use agent_client_protocol::v1::schema::{
    LoadSessionRequest, SessionId, SessionUpdate, StopReason, ToolCallStatus,
};
use spectask_acp_test_agent::script::{Rule, Script, Step, StopReasonName};

use crate::support::{AgentEnv, TestClient, agent_text, read_log, text_of, timeout};

#[tokio::test]
async fn script_file_is_reread_every_prompt_and_rules_pick_steps() {
    let dir = tempfile::tempdir().unwrap();
    let script_file = dir.path().join("script.json");
    let write_script = |script: &Script| {
        std::fs::write(&script_file, serde_json::to_string(script).unwrap()).unwrap();
    };
    write_script(&Script {
        load_session: Some(false),
        steps: vec![Step::Chunks {
            count: 1,
            delay_ms: 0,
        }],
        rules: vec![Rule {
            prompt_contains: "refuse".to_owned(),
            steps: vec![Step::Stop {
                reason: StopReasonName::Refusal,
            }],
            times: Some(1),
        }],
        ..Script::default()
    });
    let agent_env = AgentEnv {
        script_file: Some(script_file.clone()),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    assert!(!client.initialize().await.agent_capabilities.load_session);
    let session = client.new_session(dir.path()).await;
    assert_eq!(
        client.prompt(&session, "please refuse").await.unwrap(),
        StopReason::Refusal
    );
    // `times: 1` is used up: the default steps run.
    assert_eq!(
        client.prompt(&session, "please refuse").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    write_script(&Script::steps(vec![Step::Stop {
        reason: StopReasonName::MaxTokens,
    }]));
    assert_eq!(
        client.prompt(&session, "anything").await.unwrap(),
        StopReason::MaxTokens
    );

    // An unknown MCP server fails the tool call, not the turn.
    write_script(&Script::steps(vec![
        Step::CallMcpTool {
            server: "spectask".to_owned(),
            tool: "get_spec".to_owned(),
            arguments: serde_json::Map::new(),
        },
        Step::Chunks {
            count: 1,
            delay_ms: 0,
        },
    ]));
    assert_eq!(
        client.prompt(&session, "mcp").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert!(updates.iter().any(|update| matches!(
        update,
        SessionUpdate::ToolCallUpdate(u) if u.fields.status == Some(ToolCallStatus::Failed)
    )));
    assert_eq!(agent_text(&updates), vec!["chunk 1/1\n".to_owned()]);

    // A broken script is an error on the prompt, not a crash.
    std::fs::write(&script_file, "{not json").unwrap();
    assert!(client.prompt(&session, "x").await.is_err());
    client.shutdown().await;
}

#[tokio::test]
async fn crash_mid_turn_then_a_restarted_agent_loads_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("requests.jsonl");
    let agent_env = AgentEnv {
        script: Some(Script {
            steps: vec![Step::Chunks {
                count: 2,
                delay_ms: 0,
            }],
            rules: vec![Rule {
                prompt_contains: "crash".to_owned(),
                steps: vec![
                    Step::Chunks {
                        count: 1,
                        delay_ms: 0,
                    },
                    Step::Crash { exit_code: 3 },
                ],
                times: Some(1),
            }],
            ..Script::default()
        }),
        state: Some(state.clone()),
        log: Some(log.clone()),
        ..AgentEnv::default()
    };

    let first = TestClient::spawn(&agent_env).await;
    first.initialize().await;
    let session = first.new_session(dir.path()).await;
    assert_eq!(
        first.prompt(&session, "hello").await.unwrap(),
        StopReason::EndTurn
    );
    first.take_updates();
    assert!(
        first.prompt(&session, "now crash").await.is_err(),
        "a crash mid-turn ends the prompt with an error"
    );
    assert_eq!(
        agent_text(&first.take_updates()),
        vec!["chunk 1/1\n".to_owned()],
        "what was sent before the crash was flushed"
    );
    assert_eq!(first.shutdown().await, Some(3));

    let second = TestClient::spawn(&agent_env).await;
    assert!(second.initialize().await.agent_capabilities.load_session);
    timeout(
        second
            .conn
            .send_request(LoadSessionRequest::new(session.clone(), dir.path()))
            .block_task(),
    )
    .await
    .unwrap();
    let replay: Vec<(&str, String)> = second
        .take_updates()
        .iter()
        .map(|update| match update {
            SessionUpdate::UserMessageChunk(chunk) => ("user", text_of(chunk).to_owned()),
            SessionUpdate::AgentMessageChunk(chunk) => ("agent", text_of(chunk).to_owned()),
            other => panic!("unexpected replay update {other:?}"),
        })
        .collect();
    assert_eq!(
        replay,
        vec![
            ("user", "hello".to_owned()),
            ("agent", "chunk 1/2\nchunk 2/2\n".to_owned()),
            ("user", "now crash".to_owned()),
        ]
    );
    // The crash rule was used once, before the restart: the same prompt now runs the defaults.
    assert_eq!(
        second.prompt(&session, "now crash").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&second.take_updates()),
        vec!["chunk 1/2\n".to_owned(), "chunk 2/2\n".to_owned()]
    );

    // An id this agent never issued is not found.
    let unknown = timeout(
        second
            .conn
            .send_request(LoadSessionRequest::new(
                SessionId::new("tsa-unknown"),
                dir.path(),
            ))
            .block_task(),
    )
    .await;
    assert_eq!(unknown.unwrap_err().code.value(), -32002);
    second.shutdown().await;

    let records = read_log(&log);
    let seen: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|r| (r.method.as_str(), r.prompt.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("initialize", None),
            ("session/new", None),
            ("session/prompt", Some("hello")),
            ("session/prompt", Some("now crash")),
            ("initialize", None),
            ("session/load", None),
            ("session/prompt", Some("now crash")),
            ("session/load", None),
        ]
    );
    assert_ne!(records[0].pid, records[4].pid, "two agent processes");
    assert_eq!(
        records[2].session_id.as_deref(),
        Some(&*session.0),
        "the log names the session"
    );
    // Session set-ups name the session (the one `session/new` created) and the cwd they got.
    for setup in [&records[1], &records[5]] {
        assert_eq!(setup.session_id.as_deref(), Some(&*session.0), "{setup:?}");
        assert_eq!(setup.cwd.as_deref(), Some(dir.path()), "{setup:?}");
    }
    assert_eq!(records[2].cwd, None, "only set-ups name a cwd");
}
