//! The binary as a user starts it: help text, zero configuration, binding, the API token, a bad
//! database URL, one `serve` per data directory, and the default agent detected on `PATH`.

use serde_json::Value;

use crate::support::{BIN, command, get_json, start, start_command, start_on};

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_explains_every_option() {
    let top = help(&["--help"]);
    assert!(top.contains("serve") && top.contains("--log"), "{top}");
    let serve = help(&["serve", "--help"]);
    for needle in [
        "--bind",
        "SPECTASK_BIND",
        "127.0.0.1:8080",
        "--data-dir",
        "SPECTASK_DATA_DIR",
        ".spectask",
        "--database-url",
        "DATABASE_URL",
        "postgres://",
        "--workspace-root",
        "--db-max-connections",
        "--api-token",
        "SPECTASK_API_TOKEN",
        "--allowed-host",
        "SPECTASK_ALLOWED_HOSTS",
    ] {
        assert!(
            serve.contains(needle),
            "serve --help lacks {needle}:\n{serve}"
        );
    }
}

#[tokio::test]
async fn zero_configuration_start_creates_a_sqlite_database() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, base) = start(cwd.path(), &[]).await;
    let health: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["database"], "sqlite");
    assert!(cwd.path().join(".spectask/spectask.db").is_file());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_wildcard_bind_without_a_token_does_not_start() {
    let cwd = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0:0", "[::]:0"] {
        let out = command(cwd.path())
            .args(["serve", "--bind", bind, "--data-dir", "data"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bind}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("without an API token") && stderr.contains("--api-token"),
            "{stderr}"
        );
        assert!(!stderr.contains("spectask listening"), "{stderr}");
        // It stopped before anything was opened: no database, no generated token.
        assert!(!cwd.path().join("data/spectask.db").exists());
        assert!(!cwd.path().join("data/api-token").exists());
    }
}

#[tokio::test]
async fn a_wildcard_bind_with_a_token_serves_and_requires_it() {
    let cwd = tempfile::tempdir().unwrap();
    let token = "a-token-for-this-test-0123456789";
    let (mut child, base) = start_on(cwd.path(), "0.0.0.0:0", &["--api-token", token]).await;
    let client = reqwest::Client::new();
    let list = format!("{base}/api/v1/spec-tasks");
    let refused = client.get(&list).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = client.get(&list).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let served = client.get(&list).bearer_auth(token).send().await.unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_generated_token_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let file = cwd.path().join(".spectask/api-token");
    let (mut child, base) = start(cwd.path(), &[]).await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "256 bits as hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let client = reqwest::Client::new();
    let list = format!("{base}/api/v1/spec-tasks");
    // Optional on loopback, but a wrong one is refused.
    assert_eq!(
        client.get(&list).send().await.unwrap().status(),
        reqwest::StatusCode::OK
    );
    let wrong = client
        .get(&list)
        .bearer_auth("f".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    child.kill().await.unwrap();
    child.wait().await.unwrap();

    let (mut child, base) = start(cwd.path(), &[]).await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        token,
        "the token changed"
    );
    let served = client
        .get(format!("{base}/api/v1/spec-tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_database_url_fails_with_a_clear_message() {
    let cwd = tempfile::tempdir().unwrap();
    let out = command(cwd.path())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            "mysql://root@localhost/x",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database url"), "{stderr}");
}

/// One `serve` per data directory: a second one refuses to start with a clear message, and the
/// first keeps serving.
#[tokio::test]
async fn a_second_serve_on_the_same_data_directory_refuses_to_start() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut first, base) = start(cwd.path(), &[]).await;
    let second = command(cwd.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is in use by process"), "{stderr}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(
        health.status().is_success(),
        "the first server goes on serving"
    );
    first.kill().await.unwrap();
}

/// Starts `spectask serve` with a `PATH` holding only fake programs named `programs`, and
/// returns its agent listing.
async fn agents_with_programs_on_path(programs: &[&str]) -> Value {
    use std::os::unix::fs::PermissionsExt;

    let cwd = tempfile::tempdir().unwrap();
    let bin = cwd.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for program in programs {
        let path = bin.join(program);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = command(cwd.path());
    cmd.env("PATH", &bin);
    let (mut child, base) = start_command(cmd, "127.0.0.1:0", &[]).await;
    let agents = get_json(&reqwest::Client::new(), format!("{base}/api/v1/agents")).await;
    child.kill().await.unwrap();
    agents
}

#[tokio::test]
async fn the_only_built_in_agent_on_path_is_the_default() {
    let agents = agents_with_programs_on_path(&["codex-acp"]).await;
    assert_eq!(
        (&agents["default_agent"], &agents["default_agent_source"]),
        (&Value::from("codex-acp"), &Value::from("detected")),
        "{agents}"
    );
    let codex = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["name"] == "codex-acp")
        .unwrap();
    assert_eq!(
        (&codex["available"], &codex["default"], &codex["source"]),
        (
            &Value::from(true),
            &Value::from(true),
            &Value::from("preset")
        )
    );

    // Two found: no default is guessed.
    let agents = agents_with_programs_on_path(&["codex-acp", "gemini"]).await;
    assert_eq!(
        (&agents["default_agent"], &agents["default_agent_source"]),
        (&Value::Null, &Value::Null),
        "{agents}"
    );
}
