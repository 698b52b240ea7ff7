//! Shared set-up for the store tests: new tasks, tasks driven into a state, and tasks with
//! children.

use std::collections::{HashMap, VecDeque};

use serde_json::json;
use spectask_domain::*;
use spectask_store::*;

pub fn new_task(prompt: &str) -> NewSpecTask {
    NewSpecTask {
        name: prompt.to_owned(),
        name_derived: false,
        description: prompt.to_owned(),
        task_type: TaskType::Feature,
        priority: Priority::Medium,
        original_prompt: prompt.to_owned(),
        spec_agent: None,
        implementation_agent: None,
        project_path: None,
        workspace_config: Some(json!({"k": [1, 2]})),
        created_by: "tester".into(),
    }
}

/// The shortest event path from `from` to `to` through a transition table.
pub fn path<S: Copy + Eq + std::hash::Hash + 'static, E: Copy>(
    from: S,
    to: S,
    events: &[E],
    allowed: impl Fn(E) -> &'static [S],
    target: impl Fn(E) -> S,
) -> Vec<E> {
    let mut prev: HashMap<S, (S, E)> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(s) = queue.pop_front() {
        if s == to {
            break;
        }
        for &e in events {
            let t = target(e);
            if allowed(e).contains(&s) && t != from && !prev.contains_key(&t) {
                prev.insert(t, (s, e));
                queue.push_back(t);
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = to;
    while cur != from {
        let (p, e) = prev[&cur];
        out.push(e);
        cur = p;
    }
    out.reverse();
    out
}

pub async fn task_in(store: &Store, status: SpecTaskStatus) -> SpecTask {
    let task = store.create_spec_task(&new_task("walk")).await.unwrap();
    for event in path(
        SpecTaskStatus::Backlog,
        status,
        SpecTaskEvent::ALL,
        SpecTaskEvent::allowed_from,
        SpecTaskEvent::target,
    ) {
        store
            .transition_spec_task(&task.id, event, "tester")
            .await
            .unwrap();
    }
    let task = store.get_spec_task(&task.id).await.unwrap();
    assert_eq!(task.status, status);
    task
}

/// A task with one work session, its thread and one implementation task.
pub async fn task_with_children(
    store: &Store,
) -> (
    SpecTask,
    Session,
    SpecTaskWorkSession,
    SpecTaskZedThread,
    SpecTaskImplementationTask,
) {
    let task = store.create_spec_task(&new_task("parent")).await.unwrap();
    let session = store
        .create_session(&task.id, SessionRole::Implementation, "impl", "tester")
        .await
        .unwrap();
    let work = store
        .create_work_session(
            &NewWorkSession {
                spec_task_id: task.id.clone(),
                helix_session_id: session.id.clone(),
                name: Some("Backend API".into()),
                description: Some("endpoints".into()),
                phase: WorkSessionPhase::Implementation,
                implementation_task_title: Some("Backend API".into()),
                implementation_task_description: Some("endpoints".into()),
                implementation_task_index: Some(0),
                parent_work_session_id: None,
                spawned_by_session_id: None,
                agent_config: Some(json!({"agent": "claude"})),
                environment_config: None,
            },
            "tester",
        )
        .await
        .unwrap();
    let thread = store
        .create_zed_thread(
            &NewZedThread {
                work_session_id: work.id.clone(),
                zed_thread_id: "acp-1".into(),
                thread_config: None,
            },
            "tester",
        )
        .await
        .unwrap();
    let implementation = store
        .insert_implementation_tasks(&task.id, &[implementation_task("1", 0)], "tester")
        .await
        .unwrap()
        .remove(0);
    (task, session, work, thread, implementation)
}

pub fn implementation_task(key: &str, index: i32) -> NewImplementationTask {
    NewImplementationTask {
        key: key.into(),
        title: format!("Task {key}"),
        description: Some("do it".into()),
        acceptance_criteria: None,
        estimated_effort: Some("small".into()),
        priority: 0,
        index,
        phase: None,
        parent_key: None,
        requirement_refs: vec!["1.1".into()],
        checks: vec![],
        dependencies: vec![],
    }
}
