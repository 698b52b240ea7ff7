//! Sessions across crashes, freezes and restarts (supervision and its back-off), the MCP
//! servers a thread's session is given, and each thread's working directory under the
//! instance's extra roots.

use std::time::Duration;

use serde_json::{Value, json};
use spectask_runtimes::agent::acp::SupervisionSettings;
use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentRuntime, AgentToolServer, InstanceSpec, McpEndpoint, StopReason,
};
use spectask_test_doubles::ids::{
    instance_id, planning_session, thread_id, work_session, work_session_id,
};
use tokio::sync::mpsc;

use crate::support::{
    Fixture, LONG, chunks, quick_supervision, request, require_agent, started, turn, wait_gone,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_turn_disconnects_and_a_restart_loads_the_same_session() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [{"prompt_contains": "crash", "times": 1,
                   "steps": [{"kind": "chunks", "count": 2}, {"kind": "crash", "exit_code": 3}]}]
    });
    let runtime = fixture.runtime(&script);
    let thread = started(&runtime, &fixture, "i1").await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_2", "crash now")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    assert_eq!(
        chunks(&events),
        vec!["chunk 1/2\n".to_owned(), "chunk 2/2\n".to_owned()],
        "what the agent sent before dying is delivered"
    );
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_3", "hello")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );

    // Restart: the thread must be resumed before use, and resuming loads the same session.
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_4", "hello")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(thread.clone())));
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&thread),
            None,
        )
        .await
        .unwrap();
    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_5", "crash again")).await;
    assert_eq!(result, Ok(StopReason::EndTurn), "the crash rule fired once");
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);

    let requests = fixture.requests();
    let news: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/new")
        .collect();
    let loads: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/load")
        .collect();
    assert_eq!(news.len(), 1, "never a second session");
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].1.as_deref(), Some(thread.as_str()));
    assert_ne!(news[0].2, loads[0].2, "loaded by the restarted process");
    // A thread this agent never had cannot be resumed.
    assert!(matches!(
        runtime
            .resume_thread(
                &instance_id("i1"),
                &work_session("ws1"),
                &thread_id("no-such-session"),
                None
            )
            .await,
        Err(AgentError::UnknownThread(_))
    ));
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_load_session_a_restarted_instance_cannot_resume() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"load_session": false, "steps": [{"kind": "chunks", "count": 1}]});
    let runtime = fixture.runtime(&script);
    let thread = started(&runtime, &fixture, "i1").await;
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&thread),
            None,
        )
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    assert_eq!(
        runtime
            .resume_thread(
                &instance_id("i1"),
                &work_session("ws1"),
                &thread_id(&thread),
                None
            )
            .await,
        Err(AgentError::UnknownThread(thread.clone()))
    );
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

/// A tool server that hands out numbered tokens and remembers whom for.
#[derive(Debug, Default)]
struct StubTools {
    issued: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl AgentToolServer for StubTools {
    async fn endpoints_for_thread(
        &self,
        instance_id: &spectask_runtimes::agent::InstanceId,
        work_session_id: &spectask_domain::WorkSessionId,
    ) -> spectask_runtimes::agent::AgentResult<Vec<McpEndpoint>> {
        let mut issued = self.issued.lock().unwrap();
        issued.push((instance_id.to_string(), work_session_id.to_string()));
        Ok(vec![McpEndpoint {
            name: "spectask".to_owned(),
            url: "http://127.0.0.1:9/mcp".to_owned(),
            headers: vec![(
                "Authorization".to_owned(),
                format!("Bearer token-{}", issued.len()),
            )],
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_session_threads_get_the_tool_servers_mcp_server_on_new_and_load() {
    let fixture = Fixture::new(require_agent!());
    let tools = std::sync::Arc::new(StubTools::default());
    let runtime = fixture
        .runtime(&json!({"steps": []}))
        .with_tool_server(tools.clone());
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_a"), None)
        .await
        .unwrap()
        .into_string();
    runtime
        .create_thread(&instance_id("i1"), &planning_session("ses_planning"), None)
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("stws_a"),
            &thread_id(&thread),
            None,
        )
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();

    let logged: Vec<(String, Value)> = fixture
        .logged()
        .into_iter()
        .filter(|r| r["method"] == "session/new" || r["method"] == "session/load")
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["mcp_servers"].clone(),
            )
        })
        .collect();
    let ours = json!(["spectask http://127.0.0.1:9/mcp [Authorization]"]);
    assert_eq!(
        logged,
        vec![
            ("session/new".to_owned(), ours.clone()),
            ("session/new".to_owned(), Value::Null),
            ("session/load".to_owned(), ours),
        ],
        "work-session threads get the server (with its header), planning threads none"
    );
    assert_eq!(
        *tools.issued.lock().unwrap(),
        vec![
            (
                instance_id("i1").to_string(),
                work_session_id("stws_a").to_string()
            ),
            (
                instance_id("i1").to_string(),
                work_session_id("stws_a").to_string()
            )
        ],
        "a fresh token for every set-up of a work session's thread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_is_probed_killed_restarted_and_its_session_loaded_again() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [{"prompt_contains": "freeze", "times": 1,
                   "steps": [{"kind": "chunks", "count": 1}, {"kind": "freeze"}]}]
    });
    let runtime = fixture
        .runtime(&script)
        .with_supervision(quick_supervision());
    let thread = started(&runtime, &fixture, "i1").await;
    // Several probe intervals of a healthy, idle agent: probes are answered, nothing is lost.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(runtime.take_lost_instances(), vec![]);
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    let first_pid = fixture.requests()[0].2 as u32;

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_2", "freeze now")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);
    wait_gone(first_pid, "the frozen agent to be killed").await;
    let losses = runtime.take_lost_instances();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].instance_id, instance_id("i1"));
    assert!(losses[0].reason.contains("stopped answering"), "{losses:?}");
    assert!(!runtime.thread_is_live(&instance_id("i1"), &thread_id(&thread)));

    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("stws_1"),
            &thread_id(&thread),
            None,
        )
        .await
        .unwrap();
    assert!(runtime.thread_is_live(&instance_id("i1"), &thread_id(&thread)));
    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_3", "freeze again")).await;
    assert_eq!(
        result,
        Ok(StopReason::EndTurn),
        "the freeze rule fired once"
    );
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);
    let requests = fixture.requests();
    let loads: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/load")
        .collect();
    assert_eq!(loads.len(), 1);
    assert_eq!(
        loads[0].1.as_deref(),
        Some(thread.as_str()),
        "the same session"
    );
    assert_ne!(
        loads[0].2,
        u64::from(first_pid),
        "loaded by the new process"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|(m, _, _)| m == "session/new")
            .count(),
        1,
        "never a second session"
    );
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    assert_eq!(
        runtime.take_lost_instances(),
        vec![],
        "a shutdown is not a loss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_the_agent_never_answers_declares_it_hung() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [{"kind": "chunks", "count": 1}, {"kind": "freeze"}]});
    let settings = SupervisionSettings {
        // Only the unanswered cancel can notice the freeze.
        probe_interval: Duration::from_secs(600),
        ..quick_supervision()
    };
    let runtime = fixture.runtime(&script).with_supervision(settings);
    let thread = started(&runtime, &fixture, "i1").await;
    let (tx, mut rx) = mpsc::channel(8);
    let go = request("i1", &thread, "turn_1", "go");
    let run = runtime.run_turn(&go, tx);
    tokio::pin!(run);
    tokio::select! {
        event = rx.recv() => assert_eq!(event, Some(AgentEvent::MessageChunk("chunk 1/1\n".to_owned()))),
        result = &mut run => panic!("the turn ended early: {result:?}"),
    }
    // Give the agent time to stop itself after the chunk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let result = tokio::time::timeout(LONG, run)
        .await
        .expect("the turn ended");
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    let losses = runtime.take_lost_instances();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert!(losses[0].reason.contains("cancelled prompt"), "{losses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_exponentially_up_to_a_cap() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"crash_on_start": 6, "steps": [{"kind": "chunks", "count": 1}]});
    let runtime = fixture
        .runtime(&script)
        .with_supervision(quick_supervision());
    let spec = fixture.spec("i1", None);
    for attempt in 1..=6 {
        let result = tokio::time::timeout(LONG, runtime.ensure_instance(&spec))
            .await
            .unwrap();
        assert!(result.is_err(), "start {attempt} should have crashed");
    }
    tokio::time::timeout(LONG, runtime.ensure_instance(&spec))
        .await
        .unwrap()
        .unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
        .await
        .unwrap()
        .into_string();
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let starts: Vec<u64> = fixture
        .request_times()
        .into_iter()
        .filter(|(method, _)| method == "initialize")
        .map(|(_, ts)| ts)
        .collect();
    assert_eq!(starts.len(), 7);
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 100 ms doubling, capped at 400 ms: 100, 200, 400, 400, 400, 400 at least.
    for (gap, least) in gaps.iter().zip([100, 200, 400, 400, 400, 400]) {
        assert!(*gap >= least, "gaps {gaps:?}");
    }
    // Uncapped, the last delay would be 3.2 s.
    assert!(gaps[5] < 3000, "the delay is not capped: {gaps:?}");
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

/// The `session/new` and `session/load` requests the agent logged: `(method, session id, cwd,
/// pid)`.
fn session_setups(fixture: &Fixture) -> Vec<(String, String, String, u64)> {
    fixture
        .logged()
        .into_iter()
        .filter(|r| r["method"] == "session/new" || r["method"] == "session/load")
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["session_id"].as_str().unwrap().to_owned(),
                r["cwd"].as_str().unwrap().to_owned(),
                r["pid"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_thread_works_in_its_own_cwd_under_an_extra_root_across_restarts() {
    let fixture = Fixture::new(require_agent!());
    let root = fixture.root().join("data/worktrees/spt_test");
    let (dir_a, dir_b) = (root.join("stws_a"), root.join("stws_b"));
    for dir in [&dir_a, &dir_b, &fixture.root().join("outside")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let script = json!({
        "steps": [
            {"kind": "write_file", "path": "note.txt", "content": "hi\n"},
            {"kind": "run_command", "command": "pwd && echo x > by-agent.txt", "ask_permission": false}
        ],
        "rules": [{"prompt_contains": "crash", "times": 1, "steps": [{"kind": "crash", "exit_code": 3}]}]
    });
    let runtime = fixture.runtime(&script);
    let instance = instance_id("i1");
    // A planning-time instance without the root is replaced once a spec names it.
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let spec = InstanceSpec {
        extra_roots: vec![root.clone()],
        ..fixture.spec("i1", None)
    };
    runtime.ensure_instance(&spec).await.unwrap();
    let initializes: Vec<u64> = fixture
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == "initialize")
        .map(|(_, _, pid)| pid)
        .collect();
    assert_eq!(initializes.len(), 2, "{initializes:?}");
    assert_ne!(initializes[0], initializes[1], "a new agent process");
    runtime.ensure_instance(&spec).await.unwrap();

    let thread_a = runtime
        .create_thread(&instance, &work_session("stws_a"), Some(&dir_a))
        .await
        .unwrap();
    let thread_b = runtime
        .create_thread(&instance, &work_session("stws_b"), Some(&dir_b))
        .await
        .unwrap();
    for cwd in [
        fixture.root().join("outside"),
        fixture.root().join("missing"),
    ] {
        let refused = runtime
            .create_thread(&instance, &work_session("stws_c"), Some(&cwd))
            .await;
        assert!(matches!(refused, Err(AgentError::Config(_))), "{refused:?}");
    }
    for (thread, dir) in [(&thread_a, &dir_a), (&thread_b, &dir_b)] {
        let (result, events) = turn(&runtime, &request("i1", thread.as_str(), "t", "work")).await;
        assert_eq!(result, Ok(StopReason::EndTurn));
        assert!(
            chunks(&events)
                .concat()
                .contains(&format!("{}\n", dir.display())),
            "{events:?}"
        );
        // The client's write and the sandboxed agent's own both land in the thread's directory.
        assert_eq!(
            std::fs::read_to_string(dir.join("note.txt")).unwrap(),
            "hi\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("by-agent.txt")).unwrap(),
            "x\n"
        );
    }
    assert!(!fixture.workspace().join("note.txt").exists());

    // The agent dies; after the restart each thread is loaded with the cwd it had.
    let (result, _) = turn(&runtime, &request("i1", thread_a.as_str(), "t", "crash")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    runtime.ensure_instance(&spec).await.unwrap();
    runtime
        .resume_thread(&instance, &work_session("stws_a"), &thread_a, None)
        .await
        .unwrap();
    runtime
        .resume_thread(&instance, &work_session("stws_b"), &thread_b, Some(&dir_b))
        .await
        .unwrap();
    std::fs::remove_file(dir_a.join("note.txt")).unwrap();
    let (result, _) = turn(&runtime, &request("i1", thread_a.as_str(), "t", "work")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    assert!(
        dir_a.join("note.txt").is_file(),
        "relative paths are still the thread's"
    );
    // A refresh loads the session again, with the same cwd.
    runtime
        .refresh_thread(&instance, &work_session("stws_a"), &thread_a, None)
        .await
        .unwrap();
    runtime.shutdown_instance(&instance).await.unwrap();

    let (a, b) = (thread_a.as_str(), thread_b.as_str());
    let (dir_a, dir_b) = (dir_a.display().to_string(), dir_b.display().to_string());
    let setups = session_setups(&fixture);
    let seen: Vec<(&str, &str, &str)> = setups
        .iter()
        .map(|(method, session, cwd, _)| (method.as_str(), session.as_str(), cwd.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("session/new", a, dir_a.as_str()),
            ("session/new", b, dir_b.as_str()),
            ("session/load", a, dir_a.as_str()),
            ("session/load", b, dir_b.as_str()),
            ("session/load", a, dir_a.as_str()),
        ]
    );
    assert_ne!(setups[0].3, setups[2].3, "loaded by the restarted agent");
}
