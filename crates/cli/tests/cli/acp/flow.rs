//! The whole flow in one editor: plan, request changes, approve, implement with a forwarded
//! permission and a follow-up in a loaded work session, the history, and the final approval.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_plans_reviews_approves_and_follows_the_threads_over_acp() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 20));
    fixture
        .planner
        .push(streamed(&spec_reply("Signed greeting"), 20));
    let mut editor = Editor::connect(fixture.spawn_acp()).await;

    let init = editor.initialize().await;
    assert!(init.agent_capabilities.load_session);
    assert!(init.agent_capabilities.session_capabilities.list.is_some());

    // The first prompt creates the task; planning streams in; the editor is asked to approve.
    let project = fixture.repo.path().to_path_buf();
    let thread = editor.new_session(&project).await;
    let turn = editor.prompt(&thread, "Write a greeting");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Approve the spec (revision 1)")
    );
    let updates = editor.updates(&thread);
    let text = agent_text(&updates);
    assert!(text.contains("# Requirements: Greeting"), "{text}");
    assert!(text.contains("# Implementation Plan: Greeting"), "{text}");
    let links: Vec<String> = updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::AgentMessageChunk(chunk) => match &chunk.content {
                ContentBlock::ResourceLink(link) => Some(link.uri.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(links.len(), 3, "{links:?}");
    let tasks = fixture.get("/spec-tasks").await;
    let id = tasks["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
    for (link, file) in links
        .iter()
        .zip(["requirements.md", "design.md", "tasks.md"])
    {
        assert!(
            link.ends_with(&format!(".spectask/specs/{id}/{file}")),
            "{link}"
        );
        let path = PathBuf::from(link.trim_start_matches("file://"));
        assert!(path.is_file(), "{link} is not a file");
    }

    // Request changes: the turn ends asking what should change; the next prompt says it.
    answer(question, "request_changes");
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&thread)).contains("What should change in revision 1?"));
    let turn = editor.prompt(&thread, "Sign the parts");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Approve the spec (revision 2)")
    );
    assert!(agent_text(&editor.updates(&thread)).contains("# Requirements: Signed greeting"));
    let revisions = fixture.get(&format!("/spec-tasks/{id}/revisions")).await;
    let second = revisions["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 2)
        .unwrap_or_else(|| panic!("no revision 2: {revisions}"));
    assert!(
        second["feedback"]
            .as_str()
            .is_some_and(|f| f.contains("Sign the parts")),
        "{second}"
    );

    // Approve: the plan and the work sessions stream in; the agent's question is forwarded.
    answer(question, "approve");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Write part-one.txt")
    );
    let options: Vec<String> = question
        .request
        .options
        .iter()
        .map(|o| o.option_id.0.to_string())
        .collect();
    assert_eq!(options, ["reject", "allow"]);

    // While part one waits for that answer, its thread is loaded as a thread of its own and told
    // something more: the message is queued after the running turn, and its turn streams back.
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let part_one = sessions["work_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ws| {
            ws["implementation_task_title"]
                .as_str()
                .is_some_and(|t| t.contains("part one"))
        })
        .unwrap()
        .clone();
    let ws = part_one["id"].as_str().unwrap().to_owned();
    editor
        .cx
        .send_request(LoadSessionRequest::new(ws.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    assert!(user_text(&editor.updates(&ws)).contains("Task 1: Write part one"));
    let follow_up = editor.prompt(&ws, "Also add a test");
    answer(question, "allow");
    assert_eq!(follow_up.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&ws)).contains("Added a test for the greeting."));
    let helix = part_one["helix_session_id"].as_str().unwrap();
    let thread_session = fixture.get(&format!("/sessions/{helix}")).await;
    let last = thread_session["interactions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["prompt_message"]
            .as_str()
            .is_some_and(|p| p.contains("Also add a test")),
        "{last}"
    );
    assert!(
        last["response_message"]
            .as_str()
            .unwrap()
            .contains("Added a test")
    );

    // The task's turn ends at the review.
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);
    let updates = editor.updates(&thread);
    let text = agent_text(&updates);
    assert!(text.contains("Ready for review"), "{text}");
    assert!(text.contains("Say `approve`"), "{text}");

    // The plan arrived in order: no entry ever went back, and the last has every entry done.
    let plans = plans(&updates);
    assert!(plans.len() >= 2, "{plans:?}");
    for pair in plans.windows(2) {
        for (before, after) in pair[0].iter().zip(&pair[1]) {
            assert!(rank(before) <= rank(after), "{plans:?}");
        }
    }
    let last = plans.last().unwrap();
    assert_eq!(last.len(), 2);
    assert!(
        last.iter().all(|s| *s == PlanEntryStatus::Completed),
        "{plans:?}"
    );

    // Each work session is a tool call of its own, with its thread's output.
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let ws_ids: Vec<String> = sessions["work_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ws| ws["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ws_ids.len(), 2);
    let calls = tool_call_ids(&updates);
    for ws in &ws_ids {
        assert!(calls.contains(&format!("work-session:{ws}")), "{calls:?}");
    }
    let outputs: String = updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::ToolCallUpdate(update) => update.fields.content.as_ref(),
            _ => None,
        })
        .flatten()
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(outputs.contains("Wrote part one."), "{outputs}");
    let requests = fixture
        .get(&format!("/spec-tasks/{id}/permission-requests"))
        .await;
    assert_eq!(requests["permission_requests"][0]["choice"], "allow");

    // The history: the project's tasks and each of their sessions.
    let listed: ListSessionsResponse = editor
        .cx
        .send_request(ListSessionsRequest::new().cwd(project.clone()))
        .block_task()
        .await
        .unwrap();
    let listed_ids: Vec<String> = listed
        .sessions
        .iter()
        .map(|s| s.session_id.0.to_string())
        .collect();
    assert!(listed_ids.contains(&id), "{listed_ids:?}");
    for ws in &ws_ids {
        assert!(listed_ids.contains(ws), "{listed_ids:?}");
    }
    let elsewhere: ListSessionsResponse = editor
        .cx
        .send_request(ListSessionsRequest::new().cwd(fixture.cwd.path().to_path_buf()))
        .block_task()
        .await
        .unwrap();
    assert!(elsewhere.sessions.is_empty());

    // Loading the task replays its prompt, the planning, the statuses and the plan.
    editor
        .cx
        .send_request(LoadSessionRequest::new(id.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    let replay = editor.updates(&id);
    assert!(user_text(&replay).contains("Write a greeting"));
    let text = agent_text(&replay);
    assert!(text.contains("# Requirements: Greeting"), "{text}");
    assert!(text.contains("# Requirements: Signed greeting"), "{text}");
    assert!(text.contains("spec_review → spec_revision"), "{text}");
    let replayed_plans = self::plans(&replay);
    assert!(
        replayed_plans
            .last()
            .is_some_and(|p| p.iter().all(|s| *s == PlanEntryStatus::Completed)),
        "{replayed_plans:?}"
    );

    // Loading part one's thread again replays all of it: both turns, their text and tools.
    editor
        .cx
        .send_request(LoadSessionRequest::new(ws.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    let replay = editor.updates(&ws);
    let text = agent_text(&replay);
    assert!(text.matches("Wrote part one.").count() >= 1, "{text}");
    assert!(
        text.matches("Added a test for the greeting.").count() >= 2,
        "{text}"
    );
    assert!(!tool_call_ids(&replay).is_empty());
    // A completed session takes no more messages: the editor is told why.
    let refused = editor
        .cx
        .send_request(PromptRequest::new(
            ws.clone(),
            vec![ContentBlock::Text(TextContent::new("One more thing"))],
        ))
        .block_task()
        .await
        .unwrap_err();
    assert!(refused.message.contains("completed"), "{refused:?}");

    // The task thread again: `approve` finishes the task.
    let done = editor.prompt(&id, "approve");
    assert_eq!(done.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&id)).contains("The task is done."));
    let task = fixture.get(&format!("/spec-tasks/{id}")).await;
    assert_eq!(task["status"], "done");

    drop(editor);
    fixture.stop().await;
}
