//! Workspace rules checked by `cargo test`: every source file says what it owns, no test is
//! ignored or expects a panic, crate dependencies point inward to the domain, and the shipped
//! binary links no test double.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fixtures" || n == "node_modules")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "tools"] {
        rust_files(&root.join(dir), &mut files);
    }
    files
}

#[test]
fn every_file_opens_with_a_module_doc() {
    let missing: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc: {missing:#?}"
    );
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            banned.iter().any(|b| text.contains(b))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "assert the wrong behaviour with a FIXME instead: {offenders:#?}"
    );
}

/// `[dependencies]` entries of a manifest (not dev-dependencies).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            deps.push(name.trim().to_owned());
        }
    }
    deps
}

#[test]
fn dependencies_point_inward_to_the_domain() {
    let root = workspace_root();
    // crate directory → the spectask crates it may depend on.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("domain", &[][..]),
        ("store", &["spectask-domain"][..]),
        ("runtimes", &["spectask-domain"][..]),
        // The git layer: branches, worktrees, merges, diffs; knows nothing of spectask's domain.
        ("git", &[][..]),
        // A scripted ACP agent for tests: speaks the protocol, knows nothing of spectask.
        ("acp-test-agent", &[][..]),
        // Test doubles (scripted runtime, fake model servers): implement the runtimes' interface.
        (
            "test-doubles",
            &["spectask-domain", "spectask-runtimes"][..],
        ),
        (
            "engine",
            &[
                "spectask-domain",
                "spectask-store",
                "spectask-runtimes",
                "spectask-git",
            ][..],
        ),
        (
            "server",
            &[
                "spectask-domain",
                "spectask-store",
                "spectask-engine",
                "spectask-git",
            ][..],
        ),
        (
            "testkit",
            &[
                "spectask-server",
                "spectask-store",
                "spectask-engine",
                "spectask-runtimes",
                "spectask-test-doubles",
            ][..],
        ),
        (
            "cli",
            &[
                "spectask-server",
                "spectask-store",
                "spectask-engine",
                "spectask-runtimes",
                "spectask-git",
            ][..],
        ),
    ]);
    for (dir, permitted) in &allowed {
        let manifest = root.join("crates").join(dir).join("Cargo.toml");
        if !manifest.exists() {
            continue; // listed ahead of its arrival
        }
        let deps = dependencies(&manifest);
        for dep in deps.iter().filter(|d| d.starts_with("spectask")) {
            assert!(
                permitted.contains(&dep.as_str()),
                "crates/{dir} must not depend on {dep}"
            );
        }
    }
    // The domain does no I/O: no runtime, database, HTTP or clock-reading dependency.
    let domain = dependencies(&root.join("crates/domain/Cargo.toml"));
    for banned in [
        "tokio",
        "sqlx",
        "axum",
        "reqwest",
        "hyper",
        "tracing-subscriber",
    ] {
        assert!(
            !domain.iter().any(|d| d == banned),
            "domain depends on {banned}"
        );
    }
    let crates: Vec<_> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for dir in crates {
        assert!(
            allowed.contains_key(dir.as_str()),
            "new crate `{dir}`: add its allowed edges here and in ARCHITECTURE.md"
        );
    }
}

/// Runs cargo (the one running this test) in the workspace root and returns its stdout.
fn cargo(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_shipped_binary_links_no_test_double() {
    for double in [
        "spectask-test-doubles",
        "spectask-testkit",
        "spectask-acp-test-agent",
    ] {
        // Who depends on the double, over the whole workspace (so features unify as in a plain
        // workspace build), by normal and build edges only: dev-dependencies never reach a binary.
        let dependents = cargo(&[
            "tree",
            "--workspace",
            "-e",
            "normal,build",
            "--invert",
            double,
            "--no-dedupe",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ]);
        let names: Vec<&str> = dependents
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(
            names.contains(&double),
            "unexpected `cargo tree` output:\n{dependents}"
        );
        assert!(
            !names.contains(&"spectask"),
            "the spectask binary depends on {double}:\n{dependents}"
        );
    }

    // Doubles live in their own test-only crate; a `test-support` feature would put them back in
    // a production crate, reachable by feature unification.
    let metadata: serde_json::Value =
        serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"])).unwrap();
    let with_test_features: Vec<_> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| {
            package["features"]
                .as_object()
                .is_some_and(|features| features.keys().any(|f| f.starts_with("test")))
        })
        .map(|package| package["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        with_test_features.is_empty(),
        "crates with a test feature (use spectask-test-doubles instead): {with_test_features:?}"
    );
}

/// Files over this many lines say why at their top ("Why this file is long: …").
const LONG_FILE_LINES: usize = 600;

#[test]
fn long_files_say_why_they_are_long() {
    let unexplained: Vec<_> = all_rust_files()
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines = text.lines().count();
            let explained = text
                .lines()
                .take_while(|line| line.starts_with("//!"))
                .any(|line| line.contains("Why this file is long:"));
            (lines > LONG_FILE_LINES && !explained).then(|| format!("{} ({lines})", file.display()))
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "files over {LONG_FILE_LINES} lines: split them, or say at the top of the module doc \
         \"Why this file is long: …\": {unexplained:#?}"
    );
}

/// The code map of ARCHITECTURE.md: each `### ` section's text, keyed by the folders named in its
/// heading (`crates/store`, `tools/http-bench`, …).
fn code_map_sections() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("## Code map")
        .expect("ARCHITECTURE.md has a `## Code map`");
    let map = &text[start..];
    let map = match map[1..].find("\n## ") {
        Some(end) => &map[..end + 1],
        None => map,
    };
    let mut sections = BTreeMap::new();
    for section in map.split("\n### ").skip(1) {
        let heading = section.lines().next().unwrap_or_default();
        for (i, part) in heading.split('`').enumerate() {
            if i % 2 == 1 && part.contains('/') {
                sections.insert(part.to_owned(), section.to_owned());
            }
        }
    }
    sections
}

#[test]
fn every_module_file_is_in_the_code_map() {
    let root = workspace_root();
    let sections = code_map_sections();
    let mut missing = Vec::new();
    for dir in ["crates", "tools"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let folder = entry.unwrap().path();
            let src = folder.join("src");
            if !src.is_dir() {
                continue;
            }
            let name = format!("{dir}/{}", folder.file_name().unwrap().to_string_lossy());
            let Some(section) = sections.get(&name) else {
                missing.push(format!("{name} (no `### `{name}`` section)"));
                continue;
            };
            let mut files = Vec::new();
            rust_files(&src, &mut files);
            for file in files {
                let relative = file.strip_prefix(&src).unwrap();
                let file_name = relative.file_name().unwrap().to_string_lossy().into_owned();
                // A crate's root is its section; `dir/mod.rs` is named as `dir/`; any other file
                // by its name or its path below `src/`.
                let named = match file_name.as_str() {
                    "lib.rs" | "main.rs" if relative.parent() == Some(Path::new("")) => true,
                    "mod.rs" => {
                        let parent = relative.parent().unwrap();
                        let folder = parent.file_name().unwrap().to_string_lossy();
                        section.contains(&format!("{folder}/"))
                            || section.contains(&format!("{}/", parent.display()))
                    }
                    _ => {
                        section.contains(&file_name)
                            || section.contains(&relative.display().to_string())
                    }
                };
                if !named {
                    missing.push(format!("{name}/src/{}", relative.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "module files not named in ARCHITECTURE.md's code map (name `x.rs` or `dir/` in the \
         crate's section): {missing:#?}"
    );
}
