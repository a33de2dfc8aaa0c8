//! The fuzz crate (e2e/fuzz, its own workspace) checked without building
//! it: its scripts are valid bash and lint clean, and every fuzz target is
//! declared in its Cargo.toml and has committed seeds, so `run.sh` runs
//! each one from a corpus that reaches past the first parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::path::PathBuf;
use std::process::Command;

fn fuzz_dir() -> PathBuf {
    certsync_testkit::workspace_root().join("e2e/fuzz")
}

fn targets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn fuzz_scripts_are_valid_bash_and_lint_clean() {
    let shellcheck = Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_ok_and(|v| v.status.success());
    for script in ["run.sh", "seeds.sh"] {
        let path = fuzz_dir().join(script);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/usr/bin/env bash\n"), "{script}");
        assert!(text.contains("\nset -euo pipefail\n"), "{script}");
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "bash -n e2e/fuzz/{script}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if shellcheck {
            let out = Command::new("shellcheck")
                .arg("-x")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck e2e/fuzz/{script}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    if !shellcheck {
        eprintln!("note: shellcheck is not installed: only `bash -n` checked e2e/fuzz/*.sh");
    }
}

#[test]
fn every_fuzz_target_is_declared_and_seeded() {
    let targets = targets();
    assert!(targets.len() >= 10, "{targets:?}");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for t in &targets {
        let declared = format!("name = \"{t}\"\npath = \"fuzz_targets/{t}.rs\"");
        assert!(
            manifest.contains(&declared),
            "{t} has no [[bin]] in e2e/fuzz/Cargo.toml"
        );
        let seeds = std::fs::read_dir(fuzz_dir().join("seeds").join(t))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(seeds > 0, "{t} has no seeds under e2e/fuzz/seeds/{t}/");
    }
    assert_eq!(
        manifest.matches("[[bin]]").count(),
        targets.len(),
        "a [[bin]] without its fuzz_targets/*.rs"
    );
}
