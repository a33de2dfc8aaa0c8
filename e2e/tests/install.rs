//! The kustomize install (`controller/deploy`): every overlay rendered by
//! `kubectl kustomize`, every object checked strictly (k8s-openapi round
//! trip), every cert-sync container's arguments parsed by the controller's
//! own flag parser into the role its mode needs, and every patch to Istio's
//! ingress gateway Deployment applied (`kubectl patch --local`) to a
//! Deployment shaped like the one Istio installs, then checked the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod manifests;

use certsync_controller::config::{Args, Role};
use clap::Parser;
use manifests::*;
use serde_json::{json, Value};

const OVERLAYS: [&str; 4] = ["credential", "merged", "directory", "verify"];
const GW: &str = "istio-system";

fn overlay(mode: &str) -> Vec<Doc> {
    kustomize(&format!("controller/deploy/overlays/{mode}"))
}

/// The controller's flags as a container passes them (`POD_NAME` comes from
/// the environment, as the Downward API sets it).
fn parse_args(container: &Value) -> Args {
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no args", container["name"]))
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    Args::try_parse_from(std::iter::once("cert-sync").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{}: {e}", container["name"]))
}

fn controller_container(docs: &[Doc]) -> Value {
    find(docs, "Deployment", "cert-sync").value["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn every_overlay_renders_and_every_object_decodes_strictly() {
    for mode in OVERLAYS {
        let docs = overlay(mode);
        let mut failures = Vec::new();
        for doc in &docs {
            match check_kubernetes(doc.api_version(), doc.kind(), &doc.value) {
                Some(Ok(())) => {}
                Some(Err(e)) => failures.push(format!("{}:\n{e}", doc.label())),
                None => failures.push(format!("{}: no strict check for this kind", doc.label())),
            }
            if doc.kind() != "CustomResourceDefinition" && !doc.kind().starts_with("Cluster") {
                assert_eq!(doc.namespace(), GW, "{}", doc.label());
            }
        }
        assert!(failures.is_empty(), "{mode}: {}", failures.join("\n\n"));
        for (kind, name) in [
            ("CustomResourceDefinition", "certmerges.certsync.istio.io"),
            (
                "CustomResourceDefinition",
                "vaultcertificates.certsync.istio.io",
            ),
            ("ServiceAccount", "cert-sync"),
            ("ClusterRole", "cert-sync"),
            ("Role", "cert-sync"),
            ("Deployment", "cert-sync"),
            ("Service", "cert-sync"),
            ("PodDisruptionBudget", "cert-sync"),
        ] {
            find(&docs, kind, name);
        }
    }
}

#[test]
fn the_controller_deployment_is_production_shaped() {
    for mode in OVERLAYS {
        let docs = overlay(mode);
        let deployment = &find(&docs, "Deployment", "cert-sync").value;
        let spec = &deployment["spec"];
        assert_eq!(
            spec["replicas"], 2,
            "{mode}: a standby takes over the Lease"
        );
        let pod = &spec["template"]["spec"];
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(spec["selector"]["matchLabels"], *labels);
        let spread = &pod["topologySpreadConstraints"][0];
        assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(spread["labelSelector"]["matchLabels"], *labels);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = controller_container(&docs);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(
            c["readinessProbe"]["periodSeconds"].as_u64().unwrap() <= 2,
            "{mode}: the module probe needs a Ready endpoint soon"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(c["resources"]["requests"]["memory"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        let pdb = &find(&docs, "PodDisruptionBudget", "cert-sync").value;
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], *labels);
        assert_eq!(pdb["spec"]["minAvailable"], 1);
        let service = &find(&docs, "Service", "cert-sync").value;
        assert_eq!(service["spec"]["selector"], *labels);
        // The port the gateways are told (WasmPlugin url, report cluster).
        let args = parse_args(&c);
        assert_eq!(
            service["spec"]["ports"][0]["port"].as_u64(),
            Some(u64::from(args.controller_port))
        );
    }
}

#[test]
fn each_overlay_runs_the_controller_in_its_mode() {
    let expect = [
        ("credential", "credential", Role::Full),
        ("merged", "merged", Role::Full),
        ("directory", "directory", Role::Central),
    ];
    for (mode, policy_mode, role) in expect {
        let docs = overlay(mode);
        let args = parse_args(&controller_container(&docs));
        assert_eq!(args.role(), role, "{mode}");
        let policy = args.policy().unwrap();
        assert_eq!(
            format!("{:?}", policy.mode)
                .to_lowercase()
                .split([' ', '{'])
                .next(),
            Some(policy_mode),
            "{mode}: {:?}",
            policy.mode
        );
        assert!(args.manage_gateway_config && args.leader_election, "{mode}");
        assert!(args.publish && args.verify_referenced, "{mode}");
        // Gateway config management needs a module to serve.
        assert!(args.filter_wasm.is_some(), "{mode}");
        args.gateway_settings(Some("ab".repeat(32)), Some("token"))
            .unwrap();
    }
}

/// The verify-only overlay publishes nothing and may write no Secret.
#[test]
fn the_verify_overlay_publishes_nothing_and_writes_no_secret() {
    let docs = overlay("verify");
    let args = parse_args(&controller_container(&docs));
    assert!(!args.publish && args.verify_referenced);
    assert_eq!(args.role(), Role::Full);
    for doc in docs
        .iter()
        .filter(|d| d.kind() == "Role" || d.kind() == "ClusterRole")
    {
        for rule in doc.value["rules"].as_array().into_iter().flatten() {
            let on_secrets = rule["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r == "secrets");
            let writes = rule["verbs"].as_array().into_iter().flatten().any(|v| {
                ["create", "update", "patch", "delete"].contains(&v.as_str().unwrap_or(""))
            });
            assert!(!(on_secrets && writes), "{}: {rule}", doc.label());
        }
    }
}

/// Istio's ingress gateway Deployment as istioctl's default profile
/// installs it, reduced to what the patches meet: the `istio-proxy`
/// container with its volumes, uid 1337.
fn istio_ingressgateway() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istio-ingressgateway", "namespace": GW,
                     "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        "spec": {
            "selector": {"matchLabels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
            "template": {
                "metadata": {"labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
                "spec": {
                    "serviceAccountName": "istio-ingressgateway-service-account",
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true, "fsGroup": 1337},
                    "containers": [{
                        "name": "istio-proxy",
                        "image": "docker.io/istio/proxyv2:1.28.10",
                        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                        "ports": [{"containerPort": 15021, "name": "status-port", "protocol": "TCP"}],
                        "volumeMounts": [
                            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
                            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}
                        ]
                    }],
                    "volumes": [
                        {"name": "workload-socket", "emptyDir": {}},
                        {"name": "istio-envoy", "emptyDir": {}}
                    ]
                }
            }
        }
    })
}

/// Applies the patches in order to the gateway Deployment; the result must
/// decode strictly and keep what was there.
fn patched_gateway(patches: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut current = istio_ingressgateway();
    for patch in patches {
        let file = dir.path().join("gateway.json");
        std::fs::write(&file, serde_json::to_vec(&current).unwrap()).unwrap();
        current = patch_locally(&file, patch);
    }
    check_kubernetes("apps/v1", "Deployment", &current)
        .unwrap()
        .unwrap_or_else(|e| panic!("{patches:?}: {e}"));
    let proxy = container(
        &current["spec"]["template"]["spec"]["containers"],
        "istio-proxy",
    );
    assert_eq!(
        proxy["args"][1], "router",
        "the gateway's own container is kept"
    );
    current
}

fn container<'a>(containers: &'a Value, name: &str) -> &'a Value {
    containers
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {containers}"))
}

fn mount_of<'a>(container: &'a Value, volume: &str) -> &'a Value {
    container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume))
        .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn the_merged_patch_mounts_the_merged_secret_where_the_controller_writes_it() {
    let gateway = patched_gateway(&["controller/deploy/overlays/merged/ingressgateway-patch.yaml"]);
    let pod = &gateway["spec"]["template"]["spec"];
    let proxy = container(&pod["containers"], "istio-proxy");
    let mount = mount_of(proxy, "cert-sync-merged");
    assert_eq!(mount["readOnly"], true);
    let secret = &volume(pod, "cert-sync-merged")["secret"];
    let args = parse_args(&controller_container(&overlay("merged")));
    assert_eq!(secret["secretName"], args.merged_secret.as_str());
    assert_eq!(
        secret["optional"], true,
        "the gateway starts before the first publication"
    );
    assert_eq!(mount["mountPath"], "/etc/istio/ingressgateway-certs");
    // Kept: the gateway's own volumes.
    volume(pod, "istio-envoy");
}

#[test]
fn the_directory_patches_share_the_certificate_directory_with_the_proxy() {
    let central = parse_args(&controller_container(&overlay("directory")));
    let variants: [(&[&str], bool, bool); 3] = [
        (
            &["controller/deploy/overlays/directory/ingressgateway-writer-sidecar.yaml"],
            true,
            false,
        ),
        (
            &["controller/deploy/overlays/directory/ingressgateway-writer-init.yaml"],
            false,
            true,
        ),
        (
            &[
                "controller/deploy/overlays/directory/ingressgateway-writer-init.yaml",
                "controller/deploy/overlays/directory/ingressgateway-writer-sidecar.yaml",
            ],
            true,
            true,
        ),
    ];
    for (patches, sidecar, init) in variants {
        let gateway = patched_gateway(patches);
        let pod = &gateway["spec"]["template"]["spec"];
        let proxy = container(&pod["containers"], "istio-proxy");
        let seen_by_proxy = mount_of(proxy, "cert-sync-certs");
        assert_eq!(seen_by_proxy["readOnly"], true);
        assert_eq!(
            seen_by_proxy["mountPath"],
            central.cert_dir.display().to_string().as_str(),
            "the central instance names the files where the proxy sees them"
        );
        assert!(volume(pod, "cert-sync-certs")["emptyDir"].is_object());
        let mut writers = Vec::new();
        if sidecar {
            writers.push((
                container(&pod["containers"], "cert-sync-writer"),
                Role::Writer,
            ));
        }
        if init {
            writers.push((
                container(&pod["initContainers"], "cert-sync-init"),
                Role::Once { files: true },
            ));
        }
        for (writer, role) in writers {
            let args = parse_args(writer);
            assert_eq!(args.role(), role, "{}", writer["name"]);
            assert_eq!(args.cert_dir, central.cert_dir);
            assert_eq!(
                mount_of(writer, "cert-sync-certs")["mountPath"],
                seen_by_proxy["mountPath"]
            );
            // istio-proxy (uid 1337) must read the key files it writes.
            assert_eq!(writer["securityContext"]["runAsUser"], 1337);
            assert_eq!(writer["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(
                writer["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "Pod Security restricted"
            );
            if role.long_running() {
                // Not the gateway's HTTP(S) ports, not Istio's, not the
                // filter's status listener.
                let taken = [
                    8080, 8443, 15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053,
                    15090, 15099,
                ];
                let port = args.http_addr.port();
                assert!(
                    !taken.contains(&port),
                    "{}: --http-addr port {port} is taken in a gateway pod",
                    writer["name"]
                );
            }
        }
    }
}

#[test]
fn the_writers_are_bound_to_the_gateways_service_account_with_read_only_rights() {
    let docs = overlay("directory");
    let binding = &find(&docs, "ClusterRoleBinding", "cert-sync-writer").value;
    let subject = &binding["subjects"][0];
    let gateway = istio_ingressgateway();
    assert_eq!(
        subject["name"],
        gateway["spec"]["template"]["spec"]["serviceAccountName"]
    );
    assert_eq!(subject["namespace"], GW);
    let role = &find(&docs, "ClusterRole", "cert-sync-writer").value;
    for rule in role["rules"].as_array().unwrap() {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let writes = verbs
            .iter()
            .any(|v| matches!(*v, "create" | "update" | "patch" | "delete" | "*"));
        assert!(
            !writes || resources == ["events"],
            "the writer writes nothing but Events: {rule}"
        );
    }
}
