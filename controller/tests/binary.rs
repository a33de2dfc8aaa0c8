//! The `cert-sync` binary as an operator runs it, against the fake API
//! server: `--once` in directory mode (the init-container case), and a
//! running controller whose whole log is searched for private-key bytes and
//! whose state `cert-sync status` prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn cert_sync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cert-sync"));
    command.env_remove("RUST_LOG");
    command
}

/// Runs `command` off the test's runtime (the fake API server lives on it)
/// and asserts it succeeded.
async fn run_ok(command: Command) -> std::process::Output {
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn key_lines() -> Vec<&'static str> {
    [fixture!("p256.pkcs8.key"), fixture!("rsa.pkcs8.key")]
        .iter()
        .flat_map(|k| k.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

#[tokio::test]
async fn once_in_directory_mode_writes_the_files_and_exits() {
    let server = FakeApiServer::start().await.unwrap();
    server.put(mk_pair("shop", "tls", P256, true)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let certs = dir.path().join("certs");
    let mut command = cert_sync();
    command
        .env("KUBECONFIG", &kubeconfig)
        .args(["--mode", "directory", "--once", "--cert-dir"])
        .arg(&certs);
    run_ok(command).await;
    let crt = std::fs::read_to_string(dir.path().join("certs/shop/tls.crt")).unwrap();
    assert_eq!(crt, fixture!("p256.chain.pem"));
    assert!(
        server.list("secrets", Some(GW)).is_empty(),
        "directory mode writes no Secret"
    );
}

#[tokio::test]
async fn managing_the_gateway_config_without_a_module_is_refused_at_start() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    // Else the WasmPlugin would name a module nobody serves, and every
    // gateway pod would run without the filter, silently.
    let mut command = cert_sync();
    command.env("KUBECONFIG", &kubeconfig).args([
        "--pod-name",
        "test",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--filter-wasm"), "{stderr}");
    assert!(server
        .get("wasmplugins.extensions.istio.io", GW, "cert-sync")
        .is_none());
}

#[tokio::test]
async fn a_running_controller_publishes_refuses_and_never_logs_key_bytes() {
    let server = FakeApiServer::start().await.unwrap();
    server.put(mk_pair("shop", "good", P256, true)).unwrap();
    // Key in the certificate slot: the refusal must not quote it.
    server.put(mk_swapped("shop", "swapped")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = cert_sync()
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "debug")
        .args(["--log-format", "json", "--pod-name", "test"])
        .args(["--manage-gateway-config=false", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as it runs: a debug log fills a pipe's 64 KiB long before the
    // test ends, and a blocked write would stall the controller.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout_task = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr_task = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get("secrets", GW, "shop.good").is_none() {
        assert!(Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The refusal is announced (its Event recorded) in the same pass.
    let refused = || {
        let mut events = server.list("events.events.k8s.io", None);
        events.extend(server.list("events", None));
        events.iter().any(|e| {
            (e["regarding"]["name"] == "swapped" || e["involvedObject"]["name"] == "swapped")
                && e["reason"] == "MalformedCertificate"
        })
    };
    while !refused() {
        assert!(Instant::now() < deadline, "the refusal was never announced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // `cert-sync status`, from the controller and from the manifest.
    // The fake API server runs on this test's runtime: run the CLI off it.
    // Verification and the manifest follow the pass that published (a
    // burst of changes is published first): until then `status` says it
    // has nothing yet and fails, as it would for a user; ask again.
    let status = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        async move {
            loop {
                let mut command = cert_sync();
                command
                    .env("KUBECONFIG", &kubeconfig)
                    .arg("status")
                    .args(&args);
                let output = tokio::process::Command::from(command)
                    .output()
                    .await
                    .unwrap();
                if output.status.success() {
                    return String::from_utf8(output.stdout).unwrap();
                }
                assert!(
                    Instant::now() < deadline,
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let server_url = format!("http://127.0.0.1:{port}");
    let live = status(vec!["--server".into(), server_url.clone()]).await;
    let header = live.lines().next().unwrap_or_default();
    for column in [
        "SOURCE",
        "TARGET",
        "SHA256",
        "NOT-AFTER",
        "PODS",
        "STATE",
        "AGE",
    ] {
        assert!(header.contains(column), "{live}");
    }
    let good = live
        .lines()
        .find(|l| l.starts_with("shop/good"))
        .unwrap_or_default();
    assert!(
        good.contains("secret/shop.good") && good.contains("NoPods"),
        "{live}"
    );
    assert!(
        live.lines()
            .any(|l| l.starts_with("shop/swapped") && l.contains("Refused (MalformedCertificate)")),
        "{live}"
    );
    let from_manifest = status(vec!["-n".into(), GW.into()]).await;
    assert!(
        from_manifest.lines().any(|l| l.starts_with("shop/good")),
        "{from_manifest}"
    );
    // The same rows whatever it reads: the refusal too.
    let sources = |table: &str| -> Vec<String> {
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    assert!(
        from_manifest
            .lines()
            .any(|l| l.starts_with("shop/swapped") && l.contains("Refused (MalformedCertificate)")),
        "{from_manifest}"
    );
    assert_eq!(
        sources(&live),
        sources(&from_manifest),
        "{live}\n{from_manifest}"
    );

    // `cert-sync status | head -1`: the reader goes away; no panic, exit 0.
    let mut piped = cert_sync();
    piped
        .env("KUBECONFIG", &kubeconfig)
        .args(["status", "-n", GW])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child_status = tokio::process::Command::from(piped).spawn().unwrap();
    drop(child_status.stdout.take());
    let output = child_status.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("panicked"),
        "{:?}: {stderr}",
        output.status
    );
    let json = status(vec![
        "--server".into(),
        server_url,
        "-o".into(),
        "json".into(),
    ])
    .await;
    let view: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["publications"][0]["source"], "shop/good");
    for line in key_lines() {
        assert!(!json.contains(line), "private key bytes in the status");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout_task.join().unwrap()),
        String::from_utf8_lossy(&stderr_task.join().unwrap())
    );
    assert!(
        log.contains("MalformedCertificate"),
        "the refusal is logged with its reason"
    );
    for line in key_lines() {
        assert!(!log.contains(line), "private key bytes in the log");
    }
    assert!(
        !log.contains("PRIVATE KEY-----\n"),
        "a PEM key block in the log"
    );
    assert!(server.get("secrets", GW, "shop.swapped").is_none());
}
