//! What a turn asks of the client: files, permissions, commands and MCP tools.

use std::time::Duration;

use agent_client_protocol::v1::schema::{
    McpServer, McpServerHttp, NewSessionRequest, SessionUpdate, StopReason, ToolCallStatus,
};
use spectask_acp_test_agent::script::{Script, Step};

use crate::support::{AgentEnv, PermissionAnswer, Started, TestClient, agent_text, timeout};

#[tokio::test]
async fn write_and_read_files_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::WriteFile {
                path: "src/out.txt".to_owned(),
                content: "first line\nsecond line\n".to_owned(),
            },
            Step::WriteFile {
                path: "forbidden.txt".to_owned(),
                content: "nope".to_owned(),
            },
            Step::ReadFile {
                path: "src/out.txt".to_owned(),
            },
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(&workspace).await;
    assert_eq!(
        client.prompt(&session, "write").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/out.txt")).unwrap(),
        "first line\nsecond line\n"
    );
    assert!(!workspace.join("forbidden.txt").exists());

    let updates = client.take_updates();
    let statuses: Vec<(String, Option<ToolCallStatus>)> = updates
        .iter()
        .filter_map(|update| match update {
            SessionUpdate::ToolCall(call) => {
                Some((call.tool_call_id.0.to_string(), Some(call.status)))
            }
            SessionUpdate::ToolCallUpdate(update) => {
                Some((update.tool_call_id.0.to_string(), update.fields.status))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("tool-1".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-1".to_owned(), Some(ToolCallStatus::Completed)),
            ("tool-2".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-2".to_owned(), Some(ToolCallStatus::Failed)),
            ("tool-3".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-3".to_owned(), Some(ToolCallStatus::Completed)),
        ]
    );
    let SessionUpdate::ToolCall(write) = &updates[0] else {
        panic!("expected a tool call")
    };
    assert_eq!(
        write.locations[0].path,
        workspace.join("src/out.txt"),
        "the path is made absolute against the session cwd"
    );
    assert_eq!(agent_text(&updates), vec!["first line\n".to_owned()]);
    client.shutdown().await;
}

#[tokio::test]
async fn permission_allowed_runs_on_and_rejected_ends_the_turn() {
    let Started {
        dir: _dir,
        client,
        session,
    } = Started::new(vec![
        Step::RequestPermission {
            title: "Run rm".to_owned(),
            options: None,
        },
        Step::Chunks {
            count: 1,
            delay_ms: 0,
        },
    ])
    .await;

    client.answer_permission(PermissionAnswer::Select("allow"));
    assert_eq!(
        client.prompt(&session, "one").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    client.answer_permission(PermissionAnswer::Select("reject"));
    assert_eq!(
        client.prompt(&session, "two").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["permission refused: Run rm\n".to_owned()]
    );

    client.answer_permission(PermissionAnswer::Cancelled);
    assert_eq!(
        client.prompt(&session, "three").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["permission refused: Run rm\n".to_owned()]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn run_command_asks_then_runs_in_the_session_cwd_and_reports_its_exit() {
    let Started {
        dir,
        client,
        session,
    } = Started::new(vec![Step::RunCommand {
        command: "echo made > made.txt && cat made.txt && exit 3".to_owned(),
        ask_permission: true,
        background: false,
    }])
    .await;

    client.answer_permission(PermissionAnswer::Select("reject"));
    assert_eq!(
        client.prompt(&session, "one").await.unwrap(),
        StopReason::EndTurn
    );
    assert!(!dir.path().join("made.txt").exists());
    let updates = client.take_updates();
    assert_eq!(
        agent_text(&updates),
        vec!["permission refused: echo made > made.txt && cat made.txt && exit 3\n".to_owned()]
    );
    let execute_calls = updates
        .iter()
        .filter(|update| {
            matches!(update, SessionUpdate::ToolCall(call)
            if call.kind == agent_client_protocol::v1::schema::ToolKind::Execute
                && call.raw_input == Some(serde_json::json!({
                    "command": "echo made > made.txt && cat made.txt && exit 3"
                })))
        })
        .count();
    assert_eq!(execute_calls, 1);

    client.answer_permission(PermissionAnswer::Select("allow"));
    assert_eq!(
        client.prompt(&session, "two").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["exit 3\nmade\n".to_owned()]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn run_command_in_the_background_leaves_the_command_running() {
    let Started {
        dir,
        client,
        session,
    } = Started::new(vec![Step::RunCommand {
        // Finishes only after the turn has ended, which a foreground command cannot.
        command: "while [ ! -e go ]; do sleep 0.05; done; touch done".to_owned(),
        ask_permission: false,
        background: true,
    }])
    .await;
    let marker = dir.path().join("done");
    assert_eq!(
        client.prompt(&session, "go").await.unwrap(),
        StopReason::EndTurn
    );
    let text = agent_text(&client.take_updates());
    assert!(text[0].starts_with("started pid "), "{text:?}");
    std::fs::write(dir.path().join("go"), "").unwrap();
    timeout(async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    client.shutdown().await;
}

/// A minimal MCP server over streamable HTTP with JSON responses: `initialize`, notifications,
/// and one `tools/call` that echoes its name, arguments and the bearer token. Returns its URL.
async fn spawn_mcp_server() -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    async fn post(
        headers: HeaderMap,
        axum::Json(message): axum::Json<serde_json::Value>,
    ) -> axum::response::Response {
        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let result = match message["method"].as_str() {
            Some("initialize") => serde_json::json!({
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "test-mcp", "version": "0.0.0"}
            }),
            Some("tools/call") => {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                serde_json::json!({
                    "content": [{"type": "text", "text": format!(
                        "{} {} {auth}",
                        message["params"]["name"].as_str().unwrap_or(""),
                        message["params"]["arguments"]
                    )}],
                    "isError": false
                })
            }
            _ => serde_json::json!({}),
        };
        (
            [("mcp-session-id", "test-session")],
            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response()
    }

    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(post)
            .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
            .delete(|| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

#[tokio::test]
async fn call_mcp_tool_reaches_the_session_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = spawn_mcp_server().await;
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::CallMcpTool {
            server: "spectask".to_owned(),
            tool: "report_progress".to_owned(),
            arguments: serde_json::from_str(r#"{"task_key": "1.1"}"#).unwrap(),
        }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session =
        timeout(
            client
                .conn
                .send_request(NewSessionRequest::new(dir.path()).mcp_servers(vec![
                    McpServer::Http(McpServerHttp::new("spectask", url).headers(vec![
                        agent_client_protocol::v1::schema::HttpHeader::new(
                            "Authorization",
                            "Bearer secret-token",
                        ),
                    ])),
                ]))
                .block_task(),
        )
        .await
        .unwrap()
        .session_id;
    assert_eq!(
        client.prompt(&session, "mcp").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert_eq!(
        agent_text(&updates),
        vec![r#"report_progress {"task_key":"1.1"} Bearer secret-token"#.to_owned() + "\n"]
    );
    assert!(updates.iter().any(|update| matches!(
        update,
        SessionUpdate::ToolCallUpdate(u) if u.fields.status == Some(ToolCallStatus::Completed)
    )));
    client.shutdown().await;
}
