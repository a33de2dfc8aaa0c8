//! The harness proven against a real Envoy, without the wasm filter: what it
//! serves per SNI, SDS rotation by `..data` swap, config validation, the
//! report receiver's modes, and what Envoy's admin API shows for secrets
//! served from files (the filter's input).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::Result;
use certsync_contract::report::{
    LoadedCertificate, PodRef, Report, Trigger, REPORT_PATH, REPORT_VERSION,
};
use certsync_contract::{sds, summarize_chain};
use certsync_testkit::bootstrap::{Bootstrap, HTTPS_BODY, HTTP_BODY};
use certsync_testkit::http1;
use certsync_testkit::pki::{self, TestCa, TestCert};
use certsync_testkit::sds::{PemEncoding, SdsDir, TlsSecret};
use certsync_testkit::{poll, probe, sds_stat_name, Envoy, Receiver, ReceiverMode};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const RSA_SNI: &str = "rsa.example.com";
const ECDSA_SNI: &str = "shop.example.com";
const PICKUP: Duration = Duration::from_secs(10);

/// Two SNI hosts: the RSA fixture and a fresh ECDSA leaf, each in its own
/// Kubernetes-style volume under one temp dir.
struct TwoHosts {
    _root: tempfile::TempDir,
    rsa_dir: SdsDir,
    ecdsa_dir: SdsDir,
    ca: TestCa,
    rsa: TestCert,
    ecdsa: TestCert,
}

impl TwoHosts {
    fn new() -> Result<TwoHosts> {
        let root = tempfile::tempdir()?;
        let ca = TestCa::new()?;
        let rsa = pki::rsa_fixture()?;
        let ecdsa = ca.leaf(&[ECDSA_SNI])?;
        let rsa_dir = SdsDir::single(
            root.path().join("rsa-tls"),
            TlsSecret::from_cert(sds::credential("rsa-tls"), &rsa),
        )?;
        let ecdsa_dir = SdsDir::single(
            root.path().join("shop-tls"),
            TlsSecret::from_cert(sds::credential("shop-tls"), &ecdsa),
        )?;
        Ok(TwoHosts {
            _root: root,
            rsa_dir,
            ecdsa_dir,
            ca,
            rsa,
            ecdsa,
        })
    }

    fn config(&self) -> Result<Bootstrap> {
        Bootstrap::builder()
            .host(RSA_SNI, self.rsa_dir.source("kubernetes://rsa-tls")?)
            .host(ECDSA_SNI, self.ecdsa_dir.source("kubernetes://shop-tls")?)
            .http_listener(true)
            .build()
    }
}

#[test]
fn each_sni_host_serves_its_expected_certificate() -> Result<()> {
    let hosts = TwoHosts::new()?;
    let config = hosts.config()?;
    let envoy = Envoy::start(&config)?;

    let rsa = probe(config.https_port, RSA_SNI)?;
    assert_eq!(rsa.fingerprint, hosts.rsa.fingerprint);
    assert_eq!(rsa.chain_len, 2, "leaf + intermediate");
    let ecdsa = probe(config.https_port, ECDSA_SNI)?;
    assert_eq!(ecdsa.fingerprint, hosts.ecdsa.fingerprint);
    assert_eq!(ecdsa.chain_len, 2);
    assert_ne!(rsa.fingerprint, ecdsa.fingerprint);

    // The served chain is the one in the secret, byte for byte.
    let summary = summarize_chain(hosts.ecdsa.chain_pem.as_bytes())?;
    assert_eq!(summary.sha256, ecdsa.fingerprint);

    // HTTP over the TLS connection reaches the direct response.
    let (_, response) = certsync_testkit::https_get(config.https_port, RSA_SNI, "/")?;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), HTTPS_BODY);

    // An SNI with no filter chain is refused.
    assert!(probe(config.https_port, "unknown.example.com").is_err());

    // The plain user listener answers too.
    let plain = http1::get(
        ([127, 0, 0, 1], config.http_port.unwrap_or_default()).into(),
        "/",
    )?;
    assert_eq!((plain.status, plain.text().as_str()), (200, HTTP_BODY));

    assert!(envoy.admin_get("/stats")?.contains("listener.127.0.0.1_"));
    Ok(())
}

#[test]
fn sds_rotation_by_data_swap_is_served_without_restart() -> Result<()> {
    let mut hosts = TwoHosts::new()?;
    let config = hosts.config()?;
    let mut envoy = Envoy::start(&config)?;
    let pid = envoy.pid();
    assert_eq!(
        probe(config.https_port, ECDSA_SNI)?.fingerprint,
        hosts.ecdsa.fingerprint
    );
    let before = envoy.admin_get("/stats?filter=update_success")?;

    let old_payload = hosts.ecdsa_dir.data_dir();
    let renewed = hosts.ca.leaf(&[ECDSA_SNI])?;
    let started = Instant::now();
    hosts
        .ecdsa_dir
        .rotate(TlsSecret::from_cert("kubernetes://shop-tls", &renewed))?;
    poll("the rotated certificate to be served", PICKUP, || {
        Ok((probe(config.https_port, ECDSA_SNI)?.fingerprint == renewed.fingerprint).then_some(()))
    })?;
    eprintln!("rotation served after {:?}", started.elapsed());

    assert_eq!(envoy.pid(), pid, "same process");
    assert!(envoy.is_running());
    assert!(
        !old_payload.is_some_and(|p| p.exists()),
        "old payload removed"
    );
    // The other host is untouched.
    assert_eq!(
        probe(config.https_port, RSA_SNI)?.fingerprint,
        hosts.rsa.fingerprint
    );
    let after = envoy.admin_get("/stats?filter=update_success")?;
    assert_ne!(before, after, "SDS update counted:\n{before}\n{after}");

    // A second rotation works the same way (the watch survives the swap).
    let third = hosts.ca.leaf(&[ECDSA_SNI])?;
    hosts
        .ecdsa_dir
        .rotate(TlsSecret::from_cert("kubernetes://shop-tls", &third))?;
    poll("the second rotation to be served", PICKUP, || {
        Ok((probe(config.https_port, ECDSA_SNI)?.fingerprint == third.fingerprint).then_some(()))
    })?;
    Ok(())
}

#[test]
fn restart_serves_the_current_certificates() -> Result<()> {
    let mut hosts = TwoHosts::new()?;
    let config = hosts.config()?;
    let mut envoy = Envoy::start(&config)?;
    let first_pid = envoy.pid();
    let renewed = hosts.ca.leaf(&[ECDSA_SNI])?;
    hosts
        .ecdsa_dir
        .rotate(TlsSecret::from_cert("kubernetes://shop-tls", &renewed))?;
    envoy.restart()?;
    assert_ne!(envoy.pid(), first_pid);
    assert_eq!(
        probe(config.https_port, ECDSA_SNI)?.fingerprint,
        renewed.fingerprint
    );
    assert_eq!(
        probe(config.https_port, RSA_SNI)?.fingerprint,
        hosts.rsa.fingerprint
    );
    Ok(())
}

#[test]
fn several_envoys_run_at_once() -> Result<()> {
    let hosts = TwoHosts::new()?;
    let a = hosts.config()?;
    let b = hosts.config()?;
    let _envoy_a = Envoy::start(&a)?;
    let _envoy_b = Envoy::start(&b)?;
    assert_eq!(
        probe(a.https_port, RSA_SNI)?.fingerprint,
        hosts.rsa.fingerprint
    );
    assert_eq!(
        probe(b.https_port, RSA_SNI)?.fingerprint,
        hosts.rsa.fingerprint
    );
    Ok(())
}

#[test]
fn generated_config_passes_envoy_validate() -> Result<()> {
    let hosts = TwoHosts::new()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("envoy.json");
    hosts.config()?.write(&path)?;
    Envoy::validate(&path)?;

    // And a broken one is rejected with Envoy's reason.
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    doc["static_resources"]["clusters"][0]["type"] = Value::from("NOT_A_TYPE");
    std::fs::write(&path, doc.to_string())?;
    let error = format!("{:#}", Envoy::validate(&path).unwrap_err());
    assert!(error.contains("NOT_A_TYPE"), "{error}");
    Ok(())
}

#[test]
fn envoy_that_cannot_start_fails_fast_with_its_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("envoy.json");
    std::fs::write(
        &path,
        r#"{"static_resources": {"clusters": [{"name": "x", "type": "NOPE"}]}}"#,
    )?;
    let started = Instant::now();
    let mut envoy = Envoy::spawn(
        &path,
        certsync_testkit::ports::free_port()?,
        Default::default(),
    )?;
    let error = format!("{:#}", envoy.wait_ready().unwrap_err());
    assert!(error.contains("exited"), "{error}");
    assert!(error.contains("NOPE"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

fn sample_report(seq: u64) -> Result<Report> {
    let cert = pki::p256_fixture()?;
    Ok(Report {
        version: REPORT_VERSION,
        pod: PodRef {
            name: "gw-0".into(),
            namespace: "istio-system".into(),
        },
        node_id: "router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local".into(),
        seq,
        trigger: Trigger::Startup,
        certificates: vec![LoadedCertificate {
            resource: "kubernetes://p256-tls".into(),
            version: String::new(),
            cert: summarize_chain(cert.chain_pem.as_bytes())?,
            chain_sha256: Vec::new(),
        }],
        errors: Vec::new(),
    })
}

#[test]
fn receiver_records_reports_in_every_mode() -> Result<()> {
    let receiver = Receiver::start()?;
    let addr = receiver.addr();
    let json = [("content-type", "application/json")];

    // Ok: decoded and recorded with its headers.
    let report = sample_report(1)?;
    let auth = [
        ("content-type", "application/json"),
        ("authorization", "Bearer s3cret"),
    ];
    let response = http1::post(addr, REPORT_PATH, &auth, &report.encode())?;
    assert_eq!(response.status, 200);
    let got = receiver.wait_for_count(1, Duration::from_secs(2))?;
    assert_eq!(got[0].report.as_ref(), Some(&report));
    assert_eq!(got[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(got[0].header("Content-Type"), Some("application/json"));
    assert_eq!(receiver.last_report().map(|r| r.seq), Some(1));

    // Not a report: 400, still recorded with the reason.
    let response = http1::post(addr, REPORT_PATH, &json, b"{\"version\":1}")?;
    assert_eq!(response.status, 400);
    assert!(receiver.reports()[1].decode_error.is_some());

    // Other paths are not reports.
    assert_eq!(http1::get(addr, "/healthz")?.status, 404);
    assert_eq!(receiver.other_requests(), ["GET /healthz"]);
    assert_eq!(receiver.count(), 2);

    // Token required.
    receiver.require_token(Some("s3cret"));
    assert_eq!(
        http1::post(addr, REPORT_PATH, &json, &report.encode())?.status,
        401
    );
    assert_eq!(
        http1::post(addr, REPORT_PATH, &auth, &report.encode())?.status,
        200
    );
    receiver.require_token(None);

    // Fail.
    receiver.set_mode(ReceiverMode::Fail(503))?;
    assert_eq!(
        http1::post(addr, REPORT_PATH, &json, &report.encode())?.status,
        503
    );
    assert_eq!(receiver.reports().last().map(|r| r.status), Some(503));

    // Slow.
    receiver.set_mode(ReceiverMode::Slow(Duration::from_millis(300)))?;
    let started = Instant::now();
    assert_eq!(
        http1::post(addr, REPORT_PATH, &json, &report.encode())?.status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Down: an open keep-alive connection is closed, new ones are refused.
    receiver.set_mode(ReceiverMode::Ok)?;
    let mut kept = TcpStream::connect(addr)?;
    kept.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = report.encode();
    write!(
        kept,
        "POST {REPORT_PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    kept.write_all(&body)?;
    let first = http1::read_response(&mut kept)?;
    assert_eq!(first.status, 200);
    receiver.set_mode(ReceiverMode::Down)?;
    let mut rest = Vec::new();
    // A clean end or a reset is a close; the read timeout running out is not.
    let closed = match kept.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    assert!(closed, "open connection closed when going down");
    assert!(http1::post(addr, REPORT_PATH, &json, &report.encode()).is_err());

    // Back up on the same port.
    receiver.set_mode(ReceiverMode::Ok)?;
    let count = receiver.count();
    assert_eq!(
        http1::post(addr, REPORT_PATH, &json, &report.encode())?.status,
        200
    );
    assert_eq!(receiver.count(), count + 1);

    // wait_for sees reports that arrive while it waits.
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let late = sample_report(99).map(|r| r.encode()).unwrap_or_default();
        http1::post(addr, REPORT_PATH, &[], &late).map(|r| r.status)
    });
    let got = receiver.wait_for(
        |reports| {
            reports
                .iter()
                .any(|r| r.report.as_ref().is_some_and(|r| r.seq == 99))
        },
        Duration::from_secs(5),
    )?;
    assert!(got.len() > count);
    assert_eq!(poster.join().ok().and_then(Result::ok), Some(200));
    let timeout = receiver.wait_for(|reports| reports.len() > 1000, Duration::from_millis(100));
    assert!(timeout.is_err());
    Ok(())
}

/// Truncates long strings so a config dump can be printed (and never holds key bytes).
fn trimmed(value: &Value) -> Value {
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), trimmed(v))).collect(),
        Value::Array(items) => items.iter().map(trimmed).collect(),
        Value::String(s) if s.len() > 72 => {
            Value::from(format!("{}…[{} chars]", &s[..48], s.len()))
        }
        other => other.clone(),
    }
}

/// What `/config_dump?resource=dynamic_active_secrets` shows for file-based
/// SDS secrets; the filter parses exactly this.
#[test]
fn config_dump_shows_file_sds_secrets() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let shop = ca.leaf(&[ECDSA_SNI])?;
    let rsa = pki::rsa_fixture()?;
    let shop_dir = SdsDir::single(
        root.path().join("shop-tls"),
        TlsSecret::from_cert("kubernetes://shop-tls", &shop),
    )?;
    let file_cert = sds::file_cert("/etc/certs/rsa.crt", "/etc/certs/rsa.key");
    let mut rsa_dir = SdsDir::create(root.path().join("rsa-files"))?;
    rsa_dir.set_version_info(Some("v1".into()));
    rsa_dir.set(
        "rsa.yaml",
        TlsSecret::from_cert(file_cert.clone(), &rsa).with_encoding(PemEncoding::InlineBytes),
    )?;
    let config = Bootstrap::builder()
        .host(ECDSA_SNI, shop_dir.source("kubernetes://shop-tls")?)
        .host(RSA_SNI, rsa_dir.source(&file_cert)?)
        .build()?;
    let envoy = Envoy::start(&config)?;

    let dump: Value =
        serde_json::from_str(&envoy.admin_get("/config_dump?resource=dynamic_active_secrets")?)?;
    println!(
        "dynamic_active_secrets:\n{}",
        serde_json::to_string_pretty(&trimmed(&dump))?
    );
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    assert_eq!(configs.len(), 2);
    let by_name = |name: &str| {
        configs
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default()
    };

    let k8s = by_name("kubernetes://shop-tls");
    assert_eq!(
        k8s["@type"],
        "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret"
    );
    assert!(
        k8s.get("version_info").is_none(),
        "no version_info without one in the file"
    );
    assert!(k8s["last_updated"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let tls = &k8s["secret"]["tls_certificate"];
    assert_eq!(
        tls["certificate_chain"]["inline_string"],
        shop.chain_pem.as_str()
    );
    assert_eq!(tls["private_key"]["inline_string"], "[redacted]");

    let file = by_name(&file_cert);
    assert_eq!(
        file["version_info"], "v1",
        "version_info comes from the file"
    );
    let tls = &file["secret"]["tls_certificate"];
    assert!(
        tls["certificate_chain"]["inline_bytes"].is_string(),
        "bytes stay base64"
    );
    assert_eq!(
        tls["private_key"]["inline_bytes"], "W3JlZGFjdGVkXQ==",
        "base64 of [redacted]"
    );

    // No key material anywhere in the admin API.
    let everything = envoy.admin_get("/config_dump?include_eds")?;
    assert!(!everything.contains("PRIVATE KEY"));
    assert!(!everything.contains(shop.key_pem.lines().nth(1).unwrap_or("-")));

    // mask keeps only the named fields (paths relative to DynamicSecret).
    let masked: Value = serde_json::from_str(&envoy.admin_get(
        "/config_dump?resource=dynamic_active_secrets&mask=name,version_info,last_updated",
    )?)?;
    println!("masked:\n{}", serde_json::to_string_pretty(&masked)?);
    for c in masked["configs"].as_array().cloned().unwrap_or_default() {
        assert!(c.get("secret").is_none());
        assert!(c["name"].is_string() && c["last_updated"].is_string());
    }
    let chains: Value = serde_json::from_str(&envoy.admin_get(
        "/config_dump?resource=dynamic_active_secrets&mask=name,version_info,last_updated,secret.tls_certificate.certificate_chain",
    )?)?;
    for c in chains["configs"].as_array().cloned().unwrap_or_default() {
        assert!(c["secret"]["tls_certificate"].get("private_key").is_none());
        assert!(c["secret"]["tls_certificate"]["certificate_chain"].is_object());
    }

    // name_regex is a full match on the resource name.
    let names = |regex: &str| -> Result<Vec<String>> {
        let query = format!(
            "/config_dump?resource=dynamic_active_secrets&mask=name&name_regex={}",
            http1::percent_encode(regex)
        );
        let doc: Value = serde_json::from_str(&envoy.admin_get(&query)?)?;
        Ok(doc["configs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    };
    assert_eq!(names("kubernetes://.*")?, ["kubernetes://shop-tls"]);
    assert!(
        names("kubernetes")?.is_empty(),
        "a prefix alone does not match"
    );
    // Nothing matching is an empty object, not an empty `configs` list.
    let none =
        envoy.admin_get("/config_dump?resource=dynamic_active_secrets&name_regex=nomatch")?;
    assert_eq!(none.trim(), "{}");
    assert_eq!(names(".*rsa.*")?, [file_cert.as_str()]);
    assert_eq!(names(".*")?.len(), 2);

    // last_updated moves on rotation; version_info follows the file.
    let before = by_name(&file_cert)["last_updated"].clone();
    rsa_dir.set_version_info(Some("v2".into()));
    let p256 = pki::p256_fixture()?;
    rsa_dir.rotate(TlsSecret::from_cert(file_cert.clone(), &p256))?;
    let after = poll("the rotation in config_dump", PICKUP, || {
        let doc: Value = serde_json::from_str(&envoy.admin_get(&format!(
            "/config_dump?resource=dynamic_active_secrets&mask=name,version_info,last_updated&name_regex={}",
            http1::percent_encode(&file_cert)
        ))?)?;
        let entry = doc["configs"][0].clone();
        Ok((entry["version_info"] == "v2").then_some(entry))
    })?;
    assert_ne!(after["last_updated"], before);
    assert_eq!(
        envoy.stat(&sds_stat_name(&file_cert, "update_success"))?,
        Some(2)
    );
    assert_eq!(
        envoy.stat(&sds_stat_name("kubernetes://shop-tls", "update_success"))?,
        Some(1)
    );
    println!("after rotation: {after}");
    let stats = envoy.admin_get("/stats?filter=^sds\\.")?;
    println!("sds stats:\n{stats}");
    Ok(())
}

/// A rotation Envoy rejects (key does not match the chain, or not PEM at
/// all) leaves the old certificate in service, yet `config_dump` already
/// shows the rejected secret and a new `last_updated`: only the stat
/// `sds.<name>.update_rejected` tells them apart. The filter must not take
/// `dynamic_active_secrets` as proof of what is served.
#[test]
fn rejected_rotation_keeps_serving_the_old_certificate() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let served = ca.leaf(&[ECDSA_SNI])?;
    let other = ca.leaf(&[ECDSA_SNI])?;
    let mut dir = SdsDir::single(
        root.path().join("shop-tls"),
        TlsSecret::from_cert("kubernetes://shop-tls", &served),
    )?;
    let config = Bootstrap::builder()
        .host(ECDSA_SNI, dir.source("kubernetes://shop-tls")?)
        .build()?;
    let envoy = Envoy::start(&config)?;
    let rejected = &sds_stat_name("kubernetes://shop-tls", "update_rejected");
    let success = &sds_stat_name("kubernetes://shop-tls", "update_success");
    assert_eq!(envoy.stat(rejected)?, Some(0));

    // Another leaf's chain with the served leaf's key.
    dir.rotate(TlsSecret::new(
        "kubernetes://shop-tls",
        other.chain_pem.clone(),
        served.key_pem.clone(),
    ))?;
    poll("the mismatched rotation to be rejected", PICKUP, || {
        Ok((envoy.stat(rejected)? == Some(1)).then_some(()))
    })?;
    assert_eq!(envoy.stat(success)?, Some(1));
    assert_eq!(
        probe(config.https_port, ECDSA_SNI)?.fingerprint,
        served.fingerprint
    );
    let dump: Value =
        serde_json::from_str(&envoy.admin_get("/config_dump?resource=dynamic_active_secrets")?)?;
    let shown =
        &dump["configs"][0]["secret"]["tls_certificate"]["certificate_chain"]["inline_string"];
    assert_eq!(
        shown,
        other.chain_pem.as_str(),
        "config_dump shows the rejected chain"
    );

    // Not PEM at all: the same.
    dir.rotate(TlsSecret::new(
        "kubernetes://shop-tls",
        "not a chain",
        "not a key",
    ))?;
    poll("the garbage rotation to be rejected", PICKUP, || {
        Ok((envoy.stat(rejected)? == Some(2)).then_some(()))
    })?;
    assert_eq!(
        probe(config.https_port, ECDSA_SNI)?.fingerprint,
        served.fingerprint
    );
    let dump: Value =
        serde_json::from_str(&envoy.admin_get("/config_dump?resource=dynamic_active_secrets")?)?;
    let shown =
        &dump["configs"][0]["secret"]["tls_certificate"]["certificate_chain"]["inline_string"];
    assert_eq!(shown, "not a chain");

    // A good rotation afterwards is served again.
    dir.rotate(TlsSecret::from_cert("kubernetes://shop-tls", &other))?;
    poll("the good rotation to be served", PICKUP, || {
        Ok((probe(config.https_port, ECDSA_SNI)?.fingerprint == other.fingerprint).then_some(()))
    })?;
    assert_eq!(envoy.stat(success)?, Some(2));
    Ok(())
}
