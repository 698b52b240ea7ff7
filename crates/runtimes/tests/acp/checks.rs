//! Checks run for an instance (`AgentRuntime::run_check`): in a sandbox planned as the
//! instance's agent's is, in a private temp directory of their own that leaves the agent's alone
//! and is removed afterwards, with their exit code and output.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use spectask_runtimes::agent::{AgentRuntime, CheckCommand};

use crate::support::{Fixture, require_agent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_runs_in_the_sandbox_beside_the_agent_without_touching_its_temp_directory() {
    let fixture = Fixture::new(require_agent!());
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().canonicalize().unwrap();
    let runtime = fixture
        .runtime(&json!({"steps": [{"kind": "chunks", "count": 1}]}))
        .with_data_dir(data_dir.clone());
    let spec = fixture.spec("i1", None);
    runtime.ensure_instance(&spec).await.unwrap();
    let agent_tmp = data_dir
        .join("instances")
        .join(spec.instance_id.as_str())
        .join("tmp");
    assert!(
        agent_tmp.is_dir(),
        "the agent's temp directory {}",
        agent_tmp.display()
    );
    std::fs::write(agent_tmp.join("agent-scratch"), "x").unwrap();
    std::fs::write(fixture.workspace().join("marker.txt"), "m").unwrap();
    let check = |command: &str| CheckCommand {
        command: command.to_owned(),
        cwd: fixture.workspace(),
        timeout: Duration::from_secs(60),
    };

    let out = runtime
        .run_check(
            &spec,
            &check("echo \"tmp=$TMPDIR\"; touch \"$TMPDIR/check-scratch\"; test -f marker.txt"),
        )
        .await
        .unwrap();
    assert!(out.passed(), "{out:?}");
    assert!(
        agent_tmp.join("agent-scratch").exists(),
        "the agent's temp directory was left alone"
    );
    let check_tmp = out
        .output_tail
        .lines()
        .find_map(|line| line.strip_prefix("tmp="))
        .unwrap();
    assert_ne!(Path::new(check_tmp), agent_tmp);
    assert!(
        !Path::new(check_tmp).exists(),
        "the check's private directory is removed"
    );
    let sandboxed = runtime.sandbox_status(&spec.instance_id).unwrap().active;
    assert_eq!(out.sandboxed, sandboxed);

    let out = runtime
        .run_check(&spec, &check("echo broken >&2; exit 4"))
        .await
        .unwrap();
    assert!(!out.passed());
    assert_eq!(out.exit_code, Some(4));
    assert!(out.output_tail.contains("broken"), "{out:?}");

    if sandboxed {
        // Confined like the agent: nothing outside its writable roots.
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("escaped.txt");
        let out = runtime
            .run_check(&spec, &check(&format!("echo x > '{}'", target.display())))
            .await
            .unwrap();
        assert!(!out.passed(), "{out:?}");
        assert!(!target.exists());
    }
    runtime.shutdown_instance(&spec.instance_id).await.unwrap();
}
