//! Instances and threads as a real agent host keeps them, turns in flight, disconnects and
//! shutdowns, and the dispatch log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spectask_runtimes::agent::{AgentError, AgentRuntime, InstanceSpec, StopReason};
use tokio::sync::mpsc;

use super::*;
use crate::scripted::{Behaviour, Rule, Script, ScriptedRuntime};

#[tokio::test]
async fn turns_need_an_ensured_instance_and_a_loaded_thread() {
    let runtime = ScriptedRuntime::new(Script::always(Behaviour::Refuse));
    let (result, _) = run(&runtime, &request("i1", "x", "t1", "p")).await;
    assert_eq!(
        result,
        Err(AgentError::UnknownInstance(instance_id("i1").to_string()))
    );
    assert_eq!(
        runtime
            .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
            .await,
        Err(AgentError::UnknownInstance(instance_id("i1").to_string()))
    );

    runtime.ensure_instance(&spec("i1")).await.unwrap();
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    runtime.ensure_instance(&spec("i2")).await.unwrap();
    // Never created nor resumed here: refused, never silently a new thread.
    let (result, _) = run(&runtime, &request("i1", "other-thread", "t2", "p")).await;
    assert_eq!(
        result,
        Err(AgentError::UnknownThread("other-thread".into()))
    );
    // A thread belongs to the instance that created it.
    let thread = runtime
        .create_thread(&instance_id("i2"), &work_session("stws_2"), None)
        .await
        .unwrap()
        .into_string();
    let (result, _) = run(&runtime, &request("i1", &thread, "t3", "p")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(thread.clone())));
    // Resuming an id this runtime never created is how a restarted server continues.
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id("other-thread"),
            None,
        )
        .await
        .unwrap();
    let (result, _) = run(&runtime, &request("i1", "other-thread", "t4", "p")).await;
    assert_eq!(result, Ok(StopReason::Refusal));

    let outcomes: Vec<_> = runtime
        .dispatches()
        .into_iter()
        .map(|d| d.outcome.unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "unknown_instance",
            "unknown_thread",
            "unknown_thread",
            "refusal"
        ]
    );
    assert_eq!(
        runtime.threads(),
        vec![(
            instance_id("i2").to_string(),
            thread,
            work_session_id("stws_2").to_string()
        )]
    );
}

#[tokio::test]
async fn thread_ids_are_unique_across_runtime_objects() {
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let runtime = ScriptedRuntime::new(Script::always(Behaviour::Refuse));
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        for n in 1..=3 {
            let id = runtime
                .create_thread(&instance_id("i1"), &work_session("stws"), None)
                .await
                .unwrap()
                .into_string();
            assert!(id.starts_with("scripted-") && id.ends_with(&format!("-{n}")));
            assert!(ids.insert(id), "duplicate thread id");
        }
    }
}

#[tokio::test]
async fn one_turn_at_a_time_per_thread() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
    let (tx, _rx) = mpsc::channel(8);
    let first = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t1", "p");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    until_running(&runtime, 1).await;
    let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
    assert!(
        matches!(&result, Err(AgentError::Failed(m)) if m.contains("already running turn `t1`")),
        "{result:?}"
    );
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    assert_eq!(first.await.unwrap(), Ok(StopReason::Cancelled));
}

#[tokio::test]
async fn max_concurrent_turns_is_a_high_water_mark_per_instance() {
    let runtime = ScriptedRuntime::new(Script::always(Behaviour::Hang));
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    runtime.ensure_instance(&spec("i2")).await.unwrap();
    let mut turns = Vec::new();
    let mut threads = Vec::new();
    for (n, instance) in ["i1", "i1", "i1", "i2"].into_iter().enumerate() {
        let thread = runtime
            .create_thread(&instance_id(instance), &work_session("stws"), None)
            .await
            .unwrap()
            .into_string();
        threads.push((instance, thread.clone()));
        let runtime = runtime.clone();
        let request = request(instance, &thread, &format!("t{n}"), "p");
        turns.push(tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(8);
            runtime.run_turn(&request, tx).await
        }));
    }
    until_running(&runtime, 4).await;
    for (instance, thread) in &threads {
        runtime
            .cancel_turn(&instance_id(instance), &thread_id(thread))
            .await
            .unwrap();
    }
    for turn in turns {
        assert_eq!(turn.await.unwrap(), Ok(StopReason::Cancelled));
    }
    assert_eq!(runtime.max_concurrent_turns(instance_id("i1").as_str()), 3);
    assert_eq!(runtime.max_concurrent_turns(instance_id("i2").as_str()), 1);
    assert_eq!(runtime.max_concurrent_turns(instance_id("i3").as_str()), 0);
    assert_eq!(runtime.running_turns(), 0);
}

#[tokio::test]
async fn disconnect_behaviour_drops_every_turn_of_the_instance_and_unloads_threads() {
    let script = Script {
        default: Behaviour::Hang,
        rules: vec![Rule {
            prompt_contains: "crash".into(),
            behaviour: Behaviour::Disconnect { after_chunks: 1 },
            times: Some(1),
        }],
    };
    let runtime = ScriptedRuntime::new(script);
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    runtime.ensure_instance(&spec("i2")).await.unwrap();
    let hanging = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
        .await
        .unwrap()
        .into_string();
    let crashing = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_2"), None)
        .await
        .unwrap()
        .into_string();
    let elsewhere = runtime
        .create_thread(&instance_id("i2"), &work_session("stws_3"), None)
        .await
        .unwrap()
        .into_string();
    let spawn = |thread: &str, turn: &str, prompt: &str| {
        let runtime = runtime.clone();
        let request = request(
            if thread == elsewhere { "i2" } else { "i1" },
            thread,
            turn,
            prompt,
        );
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(8);
            runtime.run_turn(&request, tx).await
        })
    };
    let hung = spawn(&hanging, "t1", "wait");
    let other = spawn(&elsewhere, "t2", "wait");
    until_running(&runtime, 2).await;
    let (result, events) = run(&runtime, &request("i1", &crashing, "t3", "crash")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    assert_eq!(events, vec![chunk(1, 1, "t3")]);
    let hung = tokio::time::timeout(LONG, hung).await.unwrap().unwrap();
    assert!(matches!(hung, Err(AgentError::Disconnected(_))), "{hung:?}");
    // Other instances are unaffected.
    assert_eq!(runtime.running_turns(), 1);

    // The threads are gone until the instance is ensured and each thread resumed.
    let (result, _) = run(&runtime, &request("i1", &hanging, "t4", "p")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(hanging.clone())));
    assert_eq!(
        runtime
            .resume_thread(
                &instance_id("i1"),
                &work_session("ws1"),
                &thread_id(&hanging),
                None
            )
            .await,
        Err(AgentError::UnknownInstance(instance_id("i1").to_string()))
    );
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    let (result, _) = run(&runtime, &request("i1", &hanging, "t5", "p")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(hanging.clone())));
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&hanging),
            None,
        )
        .await
        .unwrap();
    runtime.set_script(Script::always(Behaviour::Refuse));
    let (result, _) = run(&runtime, &request("i1", &hanging, "t6", "p")).await;
    assert_eq!(result, Ok(StopReason::Refusal));

    runtime
        .cancel_turn(&instance_id("i2"), &thread_id(&elsewhere))
        .await
        .unwrap();
    assert_eq!(other.await.unwrap(), Ok(StopReason::Cancelled));
    let outcomes: Vec<_> = runtime
        .dispatches()
        .into_iter()
        .map(|d| (d.turn_id, d.outcome.unwrap()))
        .collect();
    assert!(outcomes[2].1.starts_with("disconnected: "), "{outcomes:?}");
    assert!(outcomes[0].1.starts_with("disconnected: "), "{outcomes:?}");
    assert_eq!(outcomes[3].1, "unknown_thread");
}

#[tokio::test]
async fn disconnect_instance_fails_turns_in_flight() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(8);
            runtime.run_turn(&request, tx).await
        })
    };
    until_running(&runtime, 1).await;
    runtime.disconnect_instance(instance_id("i1").as_str());
    let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(thread)));
}

#[tokio::test]
async fn shutdown_instance_ends_its_turns_and_forgets_it() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(8);
            runtime.run_turn(&request, tx).await
        })
    };
    until_running(&runtime, 1).await;
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
    assert_eq!(
        result,
        Err(AgentError::UnknownInstance(instance_id("i1").to_string()))
    );
}

#[tokio::test]
async fn wait_for_dispatches_returns_what_arrived() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Refuse)).await;
    let none = runtime
        .wait_for_dispatches(1, Duration::from_millis(10))
        .await;
    assert!(none.is_empty());
    let waiter = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.wait_for_dispatches(2, LONG).await })
    };
    assert_eq!(
        run(&runtime, &request("i1", &thread, "t1", "p")).await.0,
        Ok(StopReason::Refusal)
    );
    assert_eq!(
        run(&runtime, &request("i1", &thread, "t2", "p")).await.0,
        Ok(StopReason::Refusal)
    );
    let got = waiter.await.unwrap();
    assert!(got.len() >= 2);
    assert_eq!(got[0].turn_id, "t1");
    assert_eq!(got[1].turn_id, "t2");
}

fn read_log(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_dispatch_log_has_one_json_line_per_call_and_survives_a_new_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dispatch.jsonl");
    let runtime = ScriptedRuntime::new(Script::always(succeed(1)))
        .with_dispatch_log(&path)
        .unwrap();
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
        .await
        .unwrap()
        .into_string();
    assert_eq!(
        run(&runtime, &request("i1", &thread, "turn_1", "p"))
            .await
            .0,
        Ok(StopReason::EndTurn)
    );
    assert_eq!(
        run(&runtime, &request("i1", "ghost", "turn_2", "p"))
            .await
            .0,
        Err(AgentError::UnknownThread("ghost".into()))
    );
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();

    // A second runtime object (as after a restart) appends to the same file.
    let restarted = ScriptedRuntime::new(Script::always(succeed(1)))
        .with_dispatch_log(&path)
        .unwrap();
    restarted.ensure_instance(&spec("i1")).await.unwrap();
    restarted
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&thread),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        run(&restarted, &request("i1", &thread, "turn_3", "p"))
            .await
            .0,
        Ok(StopReason::EndTurn)
    );

    let lines = read_log(&path);
    let field = |line: &serde_json::Value, name: &str| line[name].as_str().map(str::to_owned);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                field(l, "event").unwrap(),
                field(l, "turn_id"),
                field(l, "outcome"),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        summary,
        vec![
            ("ensure_instance".into(), None, None),
            ("create_thread".into(), None, None),
            ("turn_started".into(), s("turn_1"), None),
            ("turn_ended".into(), s("turn_1"), s("end_turn")),
            ("turn_started".into(), s("turn_2"), None),
            ("turn_ended".into(), s("turn_2"), s("unknown_thread")),
            ("cancel_turn".into(), None, None),
            ("shutdown_instance".into(), None, None),
            ("ensure_instance".into(), None, None),
            ("resume_thread".into(), None, None),
            ("turn_started".into(), s("turn_3"), None),
            ("turn_ended".into(), s("turn_3"), s("end_turn")),
        ]
    );
    for line in &lines {
        assert_eq!(line["instance_id"], instance_id("i1").as_str());
        assert!(line["at_ms"].as_u64().unwrap() > 0);
    }
    assert_eq!(lines[1]["thread_id"], thread.as_str());
    assert_eq!(
        lines[1]["work_session_id"],
        work_session_id("stws_1").as_str()
    );
    assert_eq!(lines[3]["thread_id"], thread.as_str());
    assert_eq!(lines[9]["thread_id"], thread.as_str());
    assert!(lines[0].get("thread_id").is_none());
}

#[tokio::test]
async fn threads_keep_the_cwd_they_were_given_within_the_instances_roots() {
    let runtime = ScriptedRuntime::new(Script::always(Behaviour::Refuse));
    let (workspace, root) = (PathBuf::from("/p/ws"), PathBuf::from("/d/worktrees/spt_1"));
    let spec = InstanceSpec {
        workspace: Some(workspace.clone()),
        extra_roots: vec![root.clone()],
        ..spec("i1")
    };
    runtime.ensure_instance(&spec).await.unwrap();
    let owner = work_session("stws_1");
    let in_root = runtime
        .create_thread(&instance_id("i1"), &owner, Some(&root.join("stws_1")))
        .await
        .unwrap();
    let default = runtime
        .create_thread(&instance_id("i1"), &owner, None)
        .await
        .unwrap();
    assert_eq!(runtime.thread_cwd(&in_root), Some(root.join("stws_1")));
    assert_eq!(runtime.thread_cwd(&default), Some(workspace.clone()));
    let refused = runtime
        .create_thread(
            &instance_id("i1"),
            &owner,
            Some(Path::new("/d/worktrees/spt_2")),
        )
        .await;
    assert!(matches!(refused, Err(AgentError::Config(_))), "{refused:?}");
    // Resuming without a cwd keeps the thread's; with one, moves it.
    runtime.disconnect_instance("i1");
    runtime.ensure_instance(&spec).await.unwrap();
    runtime
        .resume_thread(&instance_id("i1"), &owner, &in_root, None)
        .await
        .unwrap();
    assert_eq!(runtime.thread_cwd(&in_root), Some(root.join("stws_1")));
    runtime
        .refresh_thread(&instance_id("i1"), &owner, &default, Some(&root.join("b")))
        .await
        .unwrap();
    assert_eq!(runtime.thread_cwd(&default), Some(root.join("b")));
    assert_eq!(runtime.thread_cwd(&thread_id("never-seen")), None);
}
