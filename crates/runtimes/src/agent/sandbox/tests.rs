//! Tests of the plan builder, and of [`apply`] in a real child process: the test binary runs
//! itself again (`--exact sandboxed_child`, with the plan and shell commands in an environment
//! variable); the child applies the plan, runs the commands the way an agent's Bash tool would,
//! and prints what each did; the parent checks the outcomes and that nothing outside changed.
//!
//! Why this file is long: every enforcement test shares the one re-run-itself child harness and
//! the scratch world above; split up, each part would need its own copy of both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::*;

/// Set in the child: the JSON [`ChildInput`].
const CHILD_INPUT: &str = "SPECTASK_SANDBOX_TEST_CHILD";
/// Marks the child's result line on stdout.
const RESULT_MARK: &str = "SANDBOX-RESULT ";

#[derive(Debug, Serialize, Deserialize)]
struct ChildInput {
    plan: SandboxPlan,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    commands: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChildOutput {
    report: SandboxReport,
    /// Per command: exit code (`-1` if killed) and its stdout + stderr.
    outcomes: Vec<(i32, String)>,
}

/// The child half of the `apply` tests: only acts when the parent set [`CHILD_INPUT`].
#[test]
fn sandboxed_child() {
    let Ok(input) = std::env::var(CHILD_INPUT) else {
        return;
    };
    let input: ChildInput = serde_json::from_str(&input).unwrap();
    let report = apply(&input.plan).unwrap();
    let outcomes = input
        .commands
        .iter()
        .map(|command| {
            let output = Command::new("bash")
                .arg("-c")
                .arg(command)
                .current_dir(&input.cwd)
                .envs(&input.env)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (output.status.code().unwrap_or(-1), text)
        })
        .collect();
    let output = ChildOutput { report, outcomes };
    println!("{RESULT_MARK}{}", serde_json::to_string(&output).unwrap());
}

/// Runs `commands` in a child process sandboxed by `sandbox`.
fn run_sandboxed(
    sandbox: &InstanceSandbox,
    cwd: &Path,
    home: &Path,
    commands: &[&str],
) -> ChildOutput {
    let mut env = sandbox.env.clone();
    env.entry("HOME".to_owned())
        .or_insert_with(|| home.to_string_lossy().into_owned());
    let input = ChildInput {
        plan: sandbox.plan.clone(),
        cwd: cwd.to_path_buf(),
        env,
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
    };
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agent::sandbox::tests::sandboxed_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_INPUT, serde_json::to_string(&input).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| line.split_once(RESULT_MARK).map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// A scratch world: a git workspace with one commit, a directory beside it, a data directory
/// with secrets and another instance's files, and the agent's home with `~/.claude`.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    workspace: PathBuf,
    outside: PathBuf,
    data: PathBuf,
    home: PathBuf,
}

const SECRET: &str = "s3cret-token-value";

fn git(cwd: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(status.status.success(), "git {args:?}: {status:?}");
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let workspace = root.join("ws");
    let outside = root.join("outside");
    let data = root.join("data");
    let home = root.join("home");
    for path in [&workspace, &outside, &data, &home] {
        std::fs::create_dir_all(path).unwrap();
    }
    std::fs::write(outside.join("existing.txt"), "original\n").unwrap();
    std::fs::write(workspace.join("README.md"), "hello\n").unwrap();
    git(&workspace, &["init", "-q", "-b", "main"]);
    git(&workspace, &["add", "README.md"]);
    git(&workspace, &["commit", "-qm", "first"]);
    std::fs::write(data.join("spectask.db"), SECRET).unwrap();
    std::fs::write(data.join("api-token"), SECRET).unwrap();
    std::fs::create_dir_all(data.join("instances/zi_other/tmp")).unwrap();
    std::fs::write(data.join("instances/zi_other/tmp/notes"), SECRET).unwrap();
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(home.join(".claude.json"), "{}").unwrap();
    World {
        _dir: dir,
        root,
        workspace,
        outside,
        data,
        home,
    }
}

fn claude_like() -> SandboxSettings {
    SandboxSettings::default().with_state(["~/.claude"], ["~/.claude.json"])
}

fn plan_for(world: &World, settings: &SandboxSettings, data: &Path) -> InstanceSandbox {
    plan_instance(&SandboxRequest {
        settings,
        instance_id: "zi_test",
        workspace: &world.workspace,
        extra_writable: &[],
        data_dir: data,
        inherited_home: Some(&world.home),
        spectask_port: Some(4000),
    })
    .unwrap()
    .unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_plan_confines_writes_to_the_workspace_temp_and_state() {
    let world = world();
    let sandbox = plan_for(&world, &claude_like(), &world.data);
    let plan = &sandbox.plan;
    let tmp = world.data.join("instances/zi_test/tmp");
    assert_eq!(
        plan.writable_dirs,
        vec![
            world.workspace.clone(),
            tmp.clone(),
            world.home.join(".claude")
        ]
    );
    assert_eq!(plan.writable_files, vec![world.home.join(".claude.json")]);
    assert!(plan.devices.contains(&PathBuf::from("/dev/null")));
    assert_eq!(sandbox.env["TMPDIR"], tmp.to_string_lossy());
    assert!(
        !sandbox.env.contains_key("HOME"),
        "an inherited home is not overridden"
    );
    assert_eq!(plan.pinned, vec![world.workspace.join(".git")]);
    assert_eq!(
        plan.read_only,
        vec![
            world.workspace.join(".git/hooks"),
            world.workspace.join(".git/config"),
            world.workspace.join(".git/config.worktree"),
        ]
    );
    assert_eq!(
        plan.hidden,
        vec![
            world.data.join("api-token"),
            world.data.join("instances/zi_other"),
            world.data.join("spectask.db"),
        ]
    );
    assert_eq!(plan.readable, None);
    assert_eq!(plan.tcp_connect, None);
    assert!(tmp.is_dir());
}

#[test]
fn the_plan_creates_what_it_protects_and_resolves_the_home() {
    let world = world();
    std::fs::remove_dir_all(world.workspace.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(world.workspace.join(".git/modules/libs/a/hooks")).unwrap();
    std::fs::write(
        world.workspace.join(".git/modules/libs/a/HEAD"),
        "ref: refs/heads/main\n",
    )
    .unwrap();
    std::fs::write(world.workspace.join(".git/modules/libs/a/config"), "").unwrap();
    let settings = SandboxSettings {
        home: HomeMode::Private,
        connect_ports: Some(vec![443, 4000]),
        readable: Some(vec!["/usr".to_owned(), "~/notes".to_owned()]),
        ..SandboxSettings::default().with_state(["~/.codex"], Vec::<String>::new())
    };
    let sandbox = plan_for(&world, &settings, &world.data);
    let home = world.data.join("instances/zi_test/home");
    assert_eq!(sandbox.env["HOME"], home.to_string_lossy());
    assert!(
        home.join(".codex").is_dir(),
        "a missing state directory is created"
    );
    assert!(sandbox.plan.writable_dirs.contains(&home));
    assert!(
        world.workspace.join(".git/hooks").is_dir(),
        "missing hooks are created empty"
    );
    assert_eq!(
        std::fs::read(world.workspace.join(".git/config.worktree")).unwrap(),
        b"",
        "a missing config.worktree is created empty"
    );
    for path in [
        ".git/hooks",
        ".git/config",
        ".git/config.worktree",
        ".git/modules/libs/a/hooks",
        ".git/modules/libs/a/config",
        ".git/modules/libs/a/config.worktree",
    ] {
        assert!(
            sandbox.plan.read_only.contains(&world.workspace.join(path)),
            "{path}"
        );
    }
    assert_eq!(sandbox.plan.tcp_connect, Some(vec![443, 4000]));
    assert_eq!(
        sandbox.plan.readable,
        Some(vec![PathBuf::from("/usr"), home.join("notes")])
    );
    // The private home of this instance is not a secret; other instances' are.
    assert!(
        !sandbox
            .plan
            .hidden
            .iter()
            .any(|p| p.starts_with(&sandbox.private_dir))
    );
}

#[test]
fn the_plan_refuses_what_it_cannot_name() {
    let world = world();
    let request = |settings: &SandboxSettings, id: &str| {
        plan_instance(&SandboxRequest {
            settings,
            instance_id: id,
            workspace: &world.workspace,
            extra_writable: &[],
            data_dir: &world.data,
            inherited_home: None,
            spectask_port: None,
        })
    };
    let off = SandboxSettings {
        mode: SandboxMode::Off,
        ..SandboxSettings::default()
    };
    assert_eq!(request(&off, "zi_test").unwrap(), None);
    assert!(request(&SandboxSettings::default(), "../x").is_err());
    let relative = SandboxSettings::default().with_state(["state"], Vec::<String>::new());
    assert!(request(&relative, "zi_test").is_err());
    let homeless = SandboxSettings::default().with_state(["~/.codex"], Vec::<String>::new());
    let err = request(&homeless, "zi_test").unwrap_err();
    assert!(err.to_string().contains("HOME"), "{err}");
}

#[test]
fn a_data_directory_inside_the_workspace_keeps_its_specs_writable_and_its_secrets_hidden() {
    let world = world();
    let data = world.workspace.join(".spectask");
    std::fs::create_dir_all(data.join("specs/spt_1")).unwrap();
    std::fs::write(data.join("api-token"), SECRET).unwrap();
    std::fs::write(data.join("spectask.db"), SECRET).unwrap();
    let sandbox = plan_for(&world, &claude_like(), &data);
    assert_eq!(
        sandbox.plan.pinned,
        vec![world.workspace.join(".git"), data.clone()]
    );
    if !probe().mount_namespace {
        eprintln!("skipped the enforcement half: no mount namespace here");
        return;
    }
    let out = run_sandboxed(
        &sandbox,
        &world.workspace,
        &world.home,
        &[
            "mkdir -p .spectask/specs/spt_1 && echo req > .spectask/specs/spt_1/requirements.md \
             && cat .spectask/specs/spt_1/requirements.md",
            "cat .spectask/api-token; cat .spectask/spectask.db",
            "rm -f .spectask/spectask.db",
            "mv .spectask .moved",
            "rm -rf .spectask",
        ],
    );
    assert_eq!(out.outcomes[0], (0, "req\n".to_owned()));
    assert!(!out.outcomes[1].1.contains(SECRET), "{:?}", out.outcomes[1]);
    for (i, outcome) in out.outcomes.iter().enumerate().skip(2) {
        assert_ne!(outcome.0, 0, "command {i} succeeded: {outcome:?}");
    }
    assert_eq!(
        std::fs::read_to_string(data.join("spectask.db")).unwrap(),
        SECRET
    );
    assert_eq!(
        std::fs::read_to_string(data.join("api-token")).unwrap(),
        SECRET
    );
}

#[test]
fn a_sandboxed_agent_writes_only_where_the_plan_allows() {
    let support = probe();
    if support.landlock_abi.is_none() || !support.mount_namespace {
        eprintln!("skipped: this kernel has no Landlock or no mount namespaces");
        return;
    }
    let world = world();
    let sandbox = plan_for(&world, &claude_like(), &world.data);
    let outside_before = listing(&world.outside);
    let root_before = listing(&world.root);
    let out = run_sandboxed(
        &sandbox,
        &world.workspace,
        &world.home,
        &[
            // 0..=4: allowed
            "echo ok > inside.txt && mkdir -p src && echo ok > src/lib.rs",
            "git add inside.txt && git -c user.name=a -c user.email=a@example.invalid commit -qm agent",
            "echo t > \"$TMPDIR/scratch\" && cat \"$TMPDIR/scratch\"",
            "echo s > ~/.claude/state && echo '{\"a\":1}' > ~/.claude.json",
            "echo x > /dev/null && head -c 4 /dev/urandom | wc -c",
            // 5..: refused
            "echo x > ../outside/redirect.txt",
            "python3 -c \"open('../outside/python.txt','w').write('x')\"",
            "cd .. && echo x > cd.txt",
            "echo changed > ../outside/existing.txt",
            "rm ../outside/existing.txt",
            "echo x > ~/escape.txt",
            "echo '#!/bin/sh' > .git/hooks/pre-commit",
            "echo '[core]' >> .git/config",
            "git config core.hooksPath /tmp",
            "mv .git .git-moved",
            "rm -rf .git/hooks",
        ],
    );
    assert!(out.report.filesystem, "{:?}", out.report);
    for (i, outcome) in out.outcomes.iter().enumerate() {
        if i <= 4 {
            assert_eq!(outcome.0, 0, "allowed command {i} failed: {outcome:?}");
        } else {
            assert_ne!(outcome.0, 0, "refused command {i} succeeded: {outcome:?}");
        }
    }
    assert!(out.outcomes[2].1.contains('t'));
    // Nothing outside changed.
    assert_eq!(listing(&world.outside), outside_before);
    assert_eq!(listing(&world.root), root_before);
    assert_eq!(
        std::fs::read_to_string(world.outside.join("existing.txt")).unwrap(),
        "original\n"
    );
    assert!(!world.home.join("escape.txt").exists());
    assert_eq!(
        std::fs::read_to_string(world.home.join(".claude/state")).unwrap(),
        "s\n"
    );
    // The agent's commit landed; hooks and config are as they were.
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(&world.workspace)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "agent\nfirst\n");
    assert!(!world.workspace.join(".git/hooks/pre-commit").exists());
    let config = std::fs::read_to_string(world.workspace.join(".git/config")).unwrap();
    assert!(!config.contains("hooksPath"), "{config}");
    assert!(out.report.mounts, "{:?}", out.report);
    // The mounts stayed in the child's namespace: here the hooks are writable as before.
    std::fs::write(world.workspace.join(".git/hooks/probe"), "x").unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(world.workspace.to_str().unwrap()),
        "{mounts}"
    );
}

#[test]
fn secrets_of_the_data_directory_are_unreadable() {
    if !probe().mount_namespace {
        eprintln!("skipped: no mount namespace here");
        return;
    }
    let world = world();
    let sandbox = plan_for(&world, &claude_like(), &world.data);
    let data = world.data.to_string_lossy().into_owned();
    let out = run_sandboxed(
        &sandbox,
        &world.workspace,
        &world.home,
        &[
            &format!("cat {data}/api-token {data}/spectask.db"),
            &format!("ls -A {data}/instances/zi_other; cat {data}/instances/zi_other/tmp/notes"),
            &format!("grep -r {SECRET} {data}"),
            &format!("echo x > {data}/api-token"),
        ],
    );
    assert!(out.report.mounts);
    for (i, outcome) in out.outcomes.iter().enumerate() {
        assert!(
            !outcome.1.contains(SECRET),
            "command {i} read a secret: {outcome:?}"
        );
    }
    assert_ne!(
        out.outcomes[2].0, 0,
        "grep found the secret: {:?}",
        out.outcomes[2]
    );
    // A hidden file is `/dev/null` here: a write to it vanishes.
    assert_eq!(
        std::fs::read_to_string(world.data.join("api-token")).unwrap(),
        SECRET
    );
}

#[test]
fn a_worktree_root_in_the_data_directory_is_writable_and_its_neighbours_hidden() {
    let world = world();
    let roots = world.data.join("worktrees");
    let root = roots.join("spt_1");
    let tree = root.join("stws_1");
    std::fs::create_dir_all(roots.join("spt_2")).unwrap();
    std::fs::write(roots.join("spt_2/notes"), SECRET).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let tree_arg = tree.to_str().unwrap();
    git(
        &world.workspace,
        &["worktree", "add", "-q", "-b", "stws_1", tree_arg],
    );
    let sandbox = plan_instance(&SandboxRequest {
        settings: &claude_like(),
        instance_id: "zi_test",
        workspace: &world.workspace,
        extra_writable: std::slice::from_ref(&root),
        data_dir: &world.data,
        inherited_home: Some(&world.home),
        spectask_port: None,
    })
    .unwrap()
    .unwrap();
    let plan = &sandbox.plan;
    assert!(plan.writable_dirs.contains(&root));
    assert!(plan.read_only.contains(&tree.join(".git")), "{plan:?}");
    let admin = world.workspace.join(".git/worktrees/stws_1");
    for name in ["gitdir", "commondir", "config.worktree"] {
        assert!(
            plan.read_only.contains(&admin.join(name)),
            "{name}: {plan:?}"
        );
    }
    assert_eq!(
        plan.hidden,
        vec![
            world.data.join("api-token"),
            world.data.join("instances/zi_other"),
            world.data.join("spectask.db"),
            roots.join("spt_2"),
        ]
    );
    let support = probe();
    if support.landlock_abi.is_none() || !support.mount_namespace {
        eprintln!("skipped the enforcement half: no Landlock or no mount namespace here");
        return;
    }
    let data = world.data.to_string_lossy().into_owned();
    let out = run_sandboxed(
        &sandbox,
        &tree,
        &world.home,
        &[
            // 0..=1: allowed
            "echo ok > inside.txt && cat inside.txt",
            "git add inside.txt && git -c user.name=a -c user.email=a@example.invalid commit -qm agent",
            // 2..=3: read nothing (a hidden file reads as empty)
            &format!("cat {data}/api-token"),
            &format!("cat {data}/worktrees/spt_2/notes"),
            // 4..: refused
            "echo 'gitdir: /tmp' > .git",
            &format!("echo /tmp > {}/commondir", admin.display()),
            &format!("echo /tmp/.git > {}/gitdir", admin.display()),
            &format!(
                "printf '[core]\\n\\tfsmonitor = /bin/true\\n' > {}/config.worktree",
                admin.display()
            ),
            &format!(
                "printf '[core]\\n\\tfsmonitor = /bin/true\\n' > {}/config.worktree",
                world.workspace.join(".git").display()
            ),
            &format!("echo x > {}/config", world.workspace.join(".git").display()),
            &format!("echo x > {data}/worktrees/spt_2/x"),
            &format!("echo x > {data}/worktrees/x"),
        ],
    );
    for (i, outcome) in out.outcomes.iter().enumerate() {
        assert!(
            !outcome.1.contains(SECRET),
            "command {i} read a secret: {outcome:?}"
        );
        if i <= 1 {
            assert_eq!(outcome.0, 0, "allowed command {i} failed: {outcome:?}");
        } else if i >= 4 {
            assert_ne!(outcome.0, 0, "refused command {i} succeeded: {outcome:?}");
        }
    }
    assert_eq!(out.outcomes[0].1, "ok\n");
    let log = Command::new("git")
        .args(["log", "-1", "--format=%s", "stws_1"])
        .current_dir(&world.workspace)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "agent\n");
    assert!(
        std::fs::read_to_string(tree.join(".git"))
            .unwrap()
            .starts_with("gitdir:")
    );
    assert!(!roots.join("x").exists() && !roots.join("spt_2/x").exists());
}

#[test]
fn a_restricted_network_reaches_only_its_ports() {
    let support = probe();
    if !support.network_rules {
        eprintln!("skipped: this kernel has no Landlock TCP rules");
        return;
    }
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let refused_port = refused.local_addr().unwrap().port();
    let world = world();
    let settings = SandboxSettings {
        connect_ports: Some(vec![allowed_port]),
        ..claude_like()
    };
    let sandbox = plan_for(&world, &settings, &world.data);
    assert_eq!(
        sandbox.plan.tcp_connect,
        Some({
            let mut ports = vec![allowed_port, 4000];
            ports.sort_unstable();
            ports
        })
    );
    let connect = |port: u16| format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let out = run_sandboxed(
        &sandbox,
        &world.workspace,
        &world.home,
        &[&connect(allowed_port), &connect(refused_port)],
    );
    assert!(out.report.network, "{:?}", out.report);
    assert_eq!(out.outcomes[0].0, 0, "{:?}", out.outcomes[0]);
    assert_ne!(out.outcomes[1].0, 0, "{:?}", out.outcomes[1]);
    assert!(!out.outcomes[1].1.contains("connected"));
}

#[test]
fn support_names_what_a_plan_would_miss() {
    let plan = SandboxPlan {
        pinned: vec![PathBuf::from("/ws/.git")],
        tcp_connect: Some(vec![443]),
        ..SandboxPlan::default()
    };
    let nothing = SandboxSupport::default();
    assert_eq!(nothing.missing_for(&plan).len(), 3);
    let everything = SandboxSupport {
        landlock_abi: Some(7),
        network_rules: true,
        mount_namespace: true,
        user_namespace: true,
    };
    assert!(everything.missing_for(&plan).is_empty());
    let old_kernel = SandboxSupport {
        landlock_abi: Some(3),
        mount_namespace: true,
        ..SandboxSupport::default()
    };
    assert_eq!(old_kernel.missing_for(&plan).len(), 1);
}

#[test]
fn this_machine_supports_the_whole_sandbox() {
    // The machines this project runs on (see the README's security model) have Landlock ABI 7
    // and namespaces; a regression in the probe would silently turn every sandbox off.
    let support = probe();
    assert!(
        support.landlock_abi.is_some_and(|abi| abi >= 4),
        "{support:?}"
    );
    assert!(
        support.network_rules && support.mount_namespace,
        "{support:?}"
    );
}
