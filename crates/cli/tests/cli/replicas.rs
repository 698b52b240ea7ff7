//! Several replicas on one PostgreSQL database: two `spectask serve` processes share it, eight
//! SpecTasks implement at once with our scripted ACP test agent, and at no moment do two agent
//! processes run for one SpecTask (sampled from `/proc`) or two live replicas run turns of one
//! SpecTask (sampled from the database). The work spreads over both; then one replica is
//! SIGKILLed mid-implementation and the other takes its instances over, and every task completes
//! with no duplicate work session, thread or completed turn.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spectask_testkit::{TREE_VAR, TestDatabase, require_test_agent};

use crate::support;

const TASKS: usize = 8;
const LEASE_SECS: &str = "3";

/// Every turn streams for a few seconds, so a kill lands mid-implementation.
fn agent_script() -> Value {
    json!({"steps": [
        {"kind": "chunks", "count": 25, "delay_ms": 100},
        {"kind": "message", "text": "Done.\n"}
    ]})
}

fn plan() -> &'static str {
    "# Implementation Plan\n\n- [ ] 1. Write part one\n- [ ] 2. Write part two\n  - Depends on: 1\n"
}

/// A replica's working directory: its data directory names the test agent, tagged with `marker`.
/// The agent keeps its sessions in `state` (shared, as a real agent's own session store on one
/// machine is), so the replica that takes an instance over resumes its threads there.
fn replica_dir(agent: &Path, marker: &str, state: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".spectask");
    std::fs::create_dir_all(&data).unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(&script, agent_script().to_string()).unwrap();
    std::fs::write(
        data.join("spectask.toml"),
        format!(
            "default_agent = 'test'\n[agents.test]\ncommand = '{agent}'\n\
             env = {{ SPECTASK_TEST_AGENT_SCRIPT_FILE = '{script}', {TREE_VAR} = '{marker}', \
             SPECTASK_TEST_AGENT_STATE = '{state}' }}\nstate_dirs = ['{state}']\n",
            agent = agent.display(),
            script = script.display(),
            state = state.display(),
        ),
    )
    .unwrap();
    dir
}

async fn start_replica(
    dir: &Path,
    database: &str,
    name: &str,
    max_active: &str,
) -> (tokio::process::Child, String) {
    support::start(
        dir,
        &[
            "--database-url",
            database,
            "--replica-id",
            name,
            "--max-active-instances",
            max_active,
            "--turn-lease-secs",
            LEASE_SECS,
            "--instance-lease-secs",
            LEASE_SECS,
        ],
    )
    .await
}

/// The test agent processes alive now, by the project directory they run in.
fn agents_by_project(marker: &str) -> BTreeMap<PathBuf, Vec<u32>> {
    let mut by_project: BTreeMap<PathBuf, Vec<u32>> = BTreeMap::new();
    for (pid, comm) in spectask_testkit::agent_tree(marker) {
        // The shim carries the marker too; the agent is the test agent binary.
        if !comm.starts_with("spectask-acp") {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            by_project.entry(cwd).or_default().push(pid);
        }
    }
    by_project
}

/// What the sampler saw at its worst.
#[derive(Debug, Default)]
struct Worst {
    samples: u64,
    /// Agent processes for one project at once (the test agent's cwd is its task's project).
    agents_per_task: usize,
    /// Live replicas with a running turn of one task at once.
    owners_per_task: usize,
    violations: Vec<String>,
}

/// Samples the processes and the database until `stop`.
async fn sample(
    pool: sqlx::PgPool,
    marker: String,
    dead_owner_prefix: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
) -> Worst {
    let mut worst = Worst::default();
    while !stop.load(Ordering::Relaxed) {
        worst.samples += 1;
        for (project, pids) in agents_by_project(&marker) {
            worst.agents_per_task = worst.agents_per_task.max(pids.len());
            if pids.len() > 1 {
                worst.violations.push(format!(
                    "{} agents at once in {}: {pids:?}",
                    pids.len(),
                    project.display()
                ));
            }
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT spec_task_id, owner FROM turns WHERE status = 'running' AND owner IS NOT NULL",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let dead = dead_owner_prefix.lock().unwrap().clone();
        let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (task, owner) in rows {
            // A killed replica's turns stay `running` until their lease expires: not live.
            if dead
                .as_ref()
                .is_some_and(|prefix| owner.starts_with(prefix))
            {
                continue;
            }
            owners.entry(task).or_default().insert(owner);
        }
        for (task, set) in owners {
            worst.owners_per_task = worst.owners_per_task.max(set.len());
            if set.len() > 1 {
                worst
                    .violations
                    .push(format!("{task} run by {set:?} at once"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worst
}

async fn import_and_approve(url: &str, project: &Path, n: usize) -> String {
    let client = reqwest::Client::new();
    let task = support::post_json(
        &client,
        format!("{url}/api/v1/spec-tasks/import"),
        &json!({
            "format": "kiro",
            "source": format!("replicas-{n}"),
            "name": format!("Replicated task {n}"),
            "project_path": project,
            "requirements_spec": "# Requirements\n\n1. WHEN asked THE SYSTEM SHALL write two parts.\n",
            "technical_design": "# Design\n\nTwo files.\n",
            "implementation_plan": plan(),
        }),
    )
    .await;
    let id = task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{task}"))
        .to_owned();
    let approved = support::post_json(
        &client,
        format!("{url}/api/v1/spec-tasks/{id}/approve-specs"),
        &json!({"approved": true, "revision": 1}),
    )
    .await;
    assert_eq!(approved["status"], "spec_approved", "{approved}");
    id
}

/// The replica owning each task's instance now.
async fn lease_owners(pool: &sqlx::PgPool) -> BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT spec_task_id, owner FROM instance_leases WHERE lease_expires_at > NOW()",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_work_and_one_takes_over_when_the_other_is_killed() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres(
            "replicas::two_replicas_share_the_work_and_one_takes_over_when_the_other_is_killed",
        );
        return;
    };
    let database = db.url().to_owned();
    let marker = format!("replicas-{}", std::process::id());
    let state = tempfile::tempdir().unwrap();
    let one = replica_dir(&agent, &marker, state.path());
    let two = replica_dir(&agent, &marker, state.path());
    let projects: Vec<tempfile::TempDir> =
        (0..TASKS).map(|_| tempfile::tempdir().unwrap()).collect();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database)
        .await
        .unwrap();

    let (mut first, url_one) = start_replica(one.path(), &database, "r1", "4").await;
    let dead: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(
        pool.clone(),
        marker.clone(),
        dead.clone(),
        stop.clone(),
    ));

    // The first replica takes its share of four instances.
    let mut ids = Vec::new();
    for (n, project) in projects.iter().enumerate().take(TASKS / 2) {
        ids.push(import_and_approve(&url_one, project.path(), n).await);
    }
    let owners = spectask_testkit::wait_until("the first replica to hold four instances", || {
        let pool = pool.clone();
        async move {
            let owners = lease_owners(&pool).await;
            (owners.len() == TASKS / 2).then_some(owners)
        }
    })
    .await;
    let first_owner = owners.values().next().unwrap().clone();
    assert!(
        owners
            .values()
            .all(|o| *o == first_owner && o.starts_with("r1/")),
        "{owners:?}"
    );

    // The second replica joins; the other four go to it (the first is full).
    let (mut second, url_two) = start_replica(two.path(), &database, "r2", "8").await;
    for (n, project) in projects.iter().enumerate().skip(TASKS / 2) {
        ids.push(import_and_approve(&url_two, project.path(), n).await);
    }
    let owners = spectask_testkit::wait_until("both replicas to hold four instances each", || {
        let pool = pool.clone();
        async move {
            let owners = lease_owners(&pool).await;
            let second = owners.values().filter(|o| o.starts_with("r2/")).count();
            (owners.len() == TASKS && second == TASKS / 2).then_some(owners)
        }
    })
    .await;
    let r1_tasks: Vec<String> = owners
        .iter()
        .filter(|(_, o)| o.starts_with("r1/"))
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(r1_tasks.len(), TASKS / 2);

    // Mid-implementation (none of r1's tasks is done), r1 dies.
    let client = reqwest::Client::new();
    for id in &r1_tasks {
        let task = support::get_json(&client, format!("{url_two}/api/v1/spec-tasks/{id}")).await;
        assert_eq!(task["status"], "implementation", "{task}");
    }
    *dead.lock().unwrap() = Some("r1/".to_owned());
    let killed = Instant::now();
    first.start_kill().unwrap();
    let _ = first.wait().await;

    // r2 takes every one of r1's instances over.
    spectask_testkit::wait_until("the second replica to take the instances over", || {
        let pool = pool.clone();
        let r1_tasks = r1_tasks.clone();
        async move {
            let owners = lease_owners(&pool).await;
            r1_tasks
                .iter()
                .all(|t| owners.get(t).is_some_and(|o| o.starts_with("r2/")))
                .then_some(())
        }
    })
    .await;
    let takeover = killed.elapsed();

    // Every task completes, through the survivor.
    for id in &ids {
        let url = url_two.clone();
        let id = id.clone();
        spectask_testkit::wait_until("every task to reach implementation_review", || {
            let (url, id) = (url.clone(), id.clone());
            async move {
                let task = support::get_json(
                    &reqwest::Client::new(),
                    format!("{url}/api/v1/spec-tasks/{id}"),
                )
                .await;
                assert_ne!(task["status"], "implementation_failed", "{task}");
                (task["status"] == "implementation_review").then_some(())
            }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let worst = sampler.await.unwrap();
    eprintln!(
        "replicas: takeover {takeover:?} after SIGKILL (leases {LEASE_SECS} s); {} samples, at worst {} agent(s) and {} live owner(s) per task",
        worst.samples, worst.agents_per_task, worst.owners_per_task
    );
    assert!(worst.violations.is_empty(), "{:#?}", worst.violations);
    assert!(worst.samples > 10, "the sampler hardly ran: {worst:?}");
    assert_eq!(worst.agents_per_task, 1, "{worst:?}");

    // No duplicate work session, thread or completed turn.
    for id in &ids {
        let sessions = support::get_json(
            &client,
            format!("{url_two}/api/v1/spec-tasks/{id}/work-sessions"),
        )
        .await;
        let sessions = sessions["work_sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        let threads = support::get_json(
            &client,
            format!("{url_two}/api/v1/spec-tasks/{id}/zed-threads"),
        )
        .await;
        let threads = threads["zed_threads"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(threads.len(), 2, "{threads:?}");
        let turns =
            support::get_json(&client, format!("{url_two}/api/v1/spec-tasks/{id}/turns")).await;
        let mut completed: BTreeMap<String, usize> = BTreeMap::new();
        for turn in turns["turns"].as_array().unwrap() {
            if turn["kind"] == "implementation" && turn["status"] == "completed" {
                *completed
                    .entry(turn["work_session_id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        assert_eq!(completed.len(), 2, "{turns}");
        assert!(completed.values().all(|n| *n == 1), "{completed:?}");
    }

    // The work spread over both replicas: each claimed turns before the kill.
    let claimers: BTreeSet<String> = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT actor FROM events WHERE kind = 'turn.status_changed' AND payload->>'event' = 'claim'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|actor| actor.split('/').next().unwrap_or_default().to_owned())
    .collect();
    assert_eq!(claimers, BTreeSet::from(["r1".to_owned(), "r2".to_owned()]));

    let _ = second.start_kill();
    let _ = second.wait().await;
    pool.close().await;
    drop(db);
}
