//! The kind + Istio end-to-end (`e2e/kind/run.sh`, `just e2e-kind`) needs
//! Docker and the network, so CI cannot run it. Everything it builds or
//! applies is checked here instead, so a broken manifest fails `cargo test`
//! rather than a user's first run:
//!
//! * every YAML document in `e2e/kind/manifests/` and `controller/crds/`,
//!   and the controller install run.sh applies (`kubectl kustomize` of
//!   `controller/deploy/overlays/credential`; `install.rs` checks every
//!   overlay), parses, and has a check of its own (a kind nobody
//!   checks is an error);
//! * Kubernetes objects (core, apps, rbac, apiextensions) decode into
//!   k8s-openapi types *strictly*: re-encoded, they must equal the input, so
//!   a misspelled or misplaced field (which the API server would silently
//!   drop) fails;
//! * Istio objects (Gateway, VirtualService) pass `wasmplugin/schema/validate.mjs`
//!   (Istio's CRD schemas from the pinned npm package, plus unknown fields);
//! * the IstioOperator exposes the stats the filter needs, the kind config is
//!   sane;
//! * the pieces fit: names, namespaces, selectors, ports, the image, the module
//!   path and the uid agree across run.sh, the manifests, the Dockerfile and
//!   the gateway-side objects the controller renders;
//!
//! `kind_script.rs` checks run.sh itself, the Dockerfile and the test PKI.
//!
//! Envoy `--mode validate` does not apply to these files: none of them is
//! Envoy configuration. The Envoy parts the controller applies in the cluster
//! (EnvoyFilter clusters and the wasm filter) are validated by
//! `wasmplugin/tests/envoy.rs`; here they are only checked to point at the
//! controller's Service as deployed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod manifests;

use manifests::*;
use serde_json::Value;

const MANIFEST_DIRS: [&str; 2] = ["e2e/kind/manifests", "controller/crds"];

/// The kind e2e's own manifests, the CRDs, and the controller install as
/// run.sh applies it (the overlay, rendered).
fn all_docs() -> Vec<Doc> {
    let mut docs: Vec<Doc> = MANIFEST_DIRS
        .iter()
        .flat_map(|dir| yaml_files(dir))
        .flat_map(|file| parse_docs(&file, &read(&file)))
        .collect();
    docs.extend(kustomize(OVERLAY));
    docs
}

fn docs_of(file: &str) -> Vec<Doc> {
    parse_docs(file, &read(file))
}

fn is_istio_routing(doc: &Doc) -> bool {
    doc.api_version() == "networking.istio.io/v1"
        && matches!(doc.kind(), "Gateway" | "VirtualService")
}

fn is_istio_operator(doc: &Doc) -> bool {
    doc.api_version() == "install.istio.io/v1alpha1" && doc.kind() == "IstioOperator"
}

fn is_kind_cluster(doc: &Doc) -> bool {
    doc.api_version() == "kind.x-k8s.io/v1alpha4" && doc.kind() == "Cluster"
}

#[test]
fn every_document_parses_and_has_a_check() {
    let docs = all_docs();
    for file in MANIFEST_DIRS.iter().flat_map(|d| yaml_files(d)) {
        assert!(
            docs.iter().any(|d| d.file == file),
            "{file} holds no YAML document"
        );
    }
    for doc in &docs {
        assert!(
            !doc.api_version().is_empty() && !doc.kind().is_empty(),
            "{}: apiVersion and kind are required",
            doc.label()
        );
        if !is_kind_cluster(doc) {
            assert!(
                !doc.name().is_empty(),
                "{}: metadata.name is required",
                doc.label()
            );
        }
        let covered = check_kubernetes(doc.api_version(), doc.kind(), &Value::Null).is_some()
            || is_istio_routing(doc)
            || is_istio_operator(doc)
            || is_kind_cluster(doc);
        assert!(
            covered,
            "{}: no check in e2e/tests/kind_manifests.rs covers {} {}; add one",
            doc.label(),
            doc.api_version(),
            doc.kind()
        );
    }
}

#[test]
fn kubernetes_objects_decode_strictly() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in all_docs() {
        if let Some(result) = check_kubernetes(doc.api_version(), doc.kind(), &doc.value) {
            checked += 1;
            if let Err(e) = result {
                failures.push(format!("{}:\n{e}", doc.label()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Namespace, Deployment, Service (app.yaml); the CRD; the overlay:
    // ServiceAccount, 4 RBAC objects, Deployment, Service, PDB, the CRD.
    assert!(checked >= 13, "only {checked} Kubernetes objects checked");
}

#[test]
fn the_strict_decoder_catches_a_misspelled_or_misplaced_field() {
    let docs = kustomize(OVERLAY);
    let deployment = &find(&docs, "Deployment", "cert-sync").value;
    let check = |value: &Value| check_kubernetes("apps/v1", "Deployment", value).unwrap();
    check(deployment).unwrap();
    // (pointer to the parent object, field, value) -> what the error says
    let cases: [(&str, &str, Value, &str); 3] = [
        (
            "/spec/template/spec/containers/0",
            "imagePullPolicyy",
            "Never".into(),
            "/spec/template/spec/containers/0/imagePullPolicyy: unknown field",
        ),
        (
            "/spec/template/spec",
            "runAsUser",
            0.into(),
            "/spec/template/spec/runAsUser: unknown field",
        ),
        ("/spec", "replicas", "two".into(), "decode:"),
    ];
    for (parent, field, value, says) in cases {
        let mut broken = deployment.clone();
        broken.pointer_mut(parent).unwrap()[field] = value;
        let err = check(&broken).expect_err(says);
        assert!(err.contains(says), "{says}: {err}");
    }
}

#[test]
fn istio_objects_validate_against_istio_schemas() {
    let objects: Vec<Value> = all_docs()
        .into_iter()
        .filter(is_istio_routing)
        .map(|d| d.value)
        .collect();
    assert!(
        objects.len() >= 2,
        "expected a Gateway and a VirtualService"
    );
    let verdict = istio_schema(&objects, "valid");
    assert!(
        verdict.ok,
        "Istio schema validation failed:\n{}",
        verdict.stderr
    );
    assert_eq!(
        verdict.stdout.lines().count(),
        objects.len(),
        "{}",
        verdict.stdout
    );
}

#[test]
fn the_istio_schema_check_catches_mistakes_in_the_e2e_gateway() {
    let docs = docs_of("e2e/kind/manifests/gateway.yaml");
    let gateway = find(&docs, "Gateway", "cert-sync-e2e").value.clone();

    let mut typo = gateway.clone();
    let tls = typo["spec"]["servers"][0]["tls"].as_object_mut().unwrap();
    let name = tls.remove("credentialName").unwrap();
    tls.insert("credentialname".into(), name);
    let verdict = istio_schema(&[typo], "typo");
    assert!(!verdict.ok);
    assert!(
        verdict
            .stderr
            .contains("unknown field /spec/servers/0/tls/credentialname"),
        "{}",
        verdict.stderr
    );

    let mut bad_enum = gateway;
    bad_enum["spec"]["servers"][0]["tls"]["mode"] = "STRICT".into();
    let verdict = istio_schema(&[bad_enum], "enum");
    assert!(!verdict.ok);
    assert!(
        verdict.stderr.contains("/spec/servers/0/tls/mode"),
        "{}",
        verdict.stderr
    );
}

#[test]
fn istio_install_exposes_the_stats_the_filter_needs() {
    let docs = docs_of("e2e/kind/manifests/istio-operator.yaml");
    let op = docs
        .iter()
        .find(|d| is_istio_operator(d))
        .expect("an IstioOperator");
    let spec = op.value["spec"].as_object().expect("spec");
    for key in spec.keys() {
        assert!(
            [
                "profile",
                "meshConfig",
                "components",
                "values",
                "hub",
                "tag"
            ]
            .contains(&key.as_str()),
            "IstioOperator spec.{key}: not a field this e2e expects"
        );
    }
    let matcher = op.value["spec"]["meshConfig"]["defaultConfig"]["proxyStatsMatcher"]
        .as_object()
        .expect("spec.meshConfig.defaultConfig.proxyStatsMatcher");
    for key in matcher.keys() {
        assert!(
            ["inclusionPrefixes", "inclusionSuffixes", "inclusionRegexps"].contains(&key.as_str()),
            "proxyStatsMatcher.{key}: unknown field"
        );
    }
    let list = |key: &str| -> Vec<String> {
        matcher
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    // The filter's tripwire (see README, "How the filter works"): the names
    // its stats query asks for, so a renamed counter cannot drift apart.
    for suffix in [
        "ssl_context_update_by_sds",
        "update_rejected",
        "key_rotation_failed",
    ] {
        assert!(
            certsync_filter::tripwire::PATH.contains(suffix),
            "the filter's tripwire no longer reads {suffix}"
        );
        assert!(
            list("inclusionSuffixes").contains(&suffix.to_owned()),
            "proxyStatsMatcher.inclusionSuffixes must include {suffix}"
        );
    }
    // The filter's own counters and gauges (`wasmcustom.cert_sync.…`) need
    // no entry: istio-agent always includes the prefixes
    // "cluster_manager,listener_manager,server,cluster.xds-grpc,wasm"
    // (istio 1.28.10 pkg/bootstrap/config.go:60), and `wasm` covers them.
    assert!(
        !list("inclusionPrefixes").contains(&"wasmcustom".to_owned()),
        "wasmcustom is always included by Istio: listing it suggests users must"
    );

    let gateways = op.value["spec"]["components"]["ingressGateways"]
        .as_array()
        .expect("spec.components.ingressGateways");
    assert!(
        gateways
            .iter()
            .any(|g| g["name"] == "istio-ingressgateway" && g["enabled"] == true),
        "the istio-ingressgateway must be enabled explicitly (its values apply only then)"
    );
    let values = &op.value["spec"]["values"]["gateways"]["istio-ingressgateway"];
    let replicas: u64 = var(&run_sh_vars(), "GATEWAY_REPLICAS").parse().unwrap();
    assert!(
        replicas >= 2,
        "the e2e proves N/N with more than one gateway pod"
    );
    assert_eq!(
        values["autoscaleMin"], replicas,
        "autoscaleMin vs run.sh GATEWAY_REPLICAS"
    );
    assert_eq!(
        values["autoscaleMax"], replicas,
        "autoscaleMax vs run.sh GATEWAY_REPLICAS"
    );
    assert_eq!(values["type"], "NodePort", "kind has no load balancer");
}

#[test]
fn kind_cluster_config_is_sane() {
    let docs = docs_of("e2e/kind/manifests/kind-cluster.yaml");
    assert_eq!(docs.len(), 1);
    let cluster = &docs[0];
    assert!(is_kind_cluster(cluster), "{}", cluster.label());
    for key in cluster.value.as_object().unwrap().keys() {
        assert!(
            [
                "kind",
                "apiVersion",
                "name",
                "nodes",
                "networking",
                "featureGates",
                "kubeadmConfigPatches",
                "containerdConfigPatches"
            ]
            .contains(&key.as_str()),
            "kind Cluster: unknown field {key}"
        );
    }
    let nodes = cluster.value["nodes"].as_array().expect("nodes");
    assert!(nodes.iter().any(|n| n["role"] == "control-plane"));
    for node in nodes {
        assert!(
            matches!(node["role"].as_str(), Some("control-plane" | "worker")),
            "{node}"
        );
        // The node image is pinned once, in run.sh.
        assert!(
            node.get("image").is_none(),
            "pin the node image in run.sh (KIND_NODE_IMAGE)"
        );
    }
    let vars = run_sh_vars();
    let image = var(&vars, "KIND_NODE_IMAGE");
    assert!(
        image.starts_with("kindest/node:v") && image.contains("@sha256:"),
        "{image}: pin tag and digest"
    );
    assert!(var(&vars, "KIND_VERSION").starts_with('v'));
    assert!(
        var(&vars, "ISTIO_VERSION").split('.').count() == 3,
        "pin an exact Istio release"
    );
}

/// Names, namespaces, selectors, ports, the image, the module path and the uid
/// agree across run.sh, the manifests, the Dockerfile and the gateway-side
/// objects the controller renders (`wasmplugin/manifests/gateway.yaml`).
#[test]
fn the_pieces_fit_together() {
    let vars = run_sh_vars();
    let gw_ns = var(&vars, "GATEWAY_NAMESPACE");
    let app_ns = var(&vars, "APP_NAMESPACE");
    let source = var(&vars, "SOURCE_SECRET");
    let host = var(&vars, "HOST");
    let selector = var(&vars, "GATEWAY_SELECTOR");
    let (sel_key, sel_value) = selector
        .split_once('=')
        .expect("GATEWAY_SELECTOR is key=value");

    // -- the controller as deployed
    let deploy = kustomize(OVERLAY);
    let deployment = find(&deploy, "Deployment", &var(&vars, "CONTROLLER_DEPLOYMENT"));
    assert_eq!(deployment.namespace(), gw_ns);
    let pod = &deployment.value["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        var(&vars, "IMAGE").as_str(),
        "run.sh builds the image the Deployment runs"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let arg = |flag: &str| -> Option<&str> {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{flag}=")))
    };
    assert_eq!(arg("gateway-namespace"), Some(gw_ns.as_str()));
    assert_eq!(
        arg("mode").unwrap_or("credential"),
        "credential",
        "credentialName needs credential mode"
    );
    // Defaults the e2e relies on (cert-sync --help).
    assert_eq!(
        arg("gateway-selector").unwrap_or("istio=ingressgateway"),
        selector
    );
    assert_eq!(
        arg("lease-name").unwrap_or("cert-sync"),
        var(&vars, "LEASE")
    );
    assert_ne!(
        arg("manage-gateway-config"),
        Some("false"),
        "the e2e expects the controller to apply the WasmPlugin"
    );

    // Report token: the Secret run.sh creates is the one mounted, key `token`.
    let token_file = arg("report-token-file").expect("--report-token-file");
    let (token_dir, token_key) = token_file.rsplit_once('/').unwrap();
    assert_eq!(token_key, "token");
    assert!(read("e2e/kind/run.sh").contains("--from-literal=token="));
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == token_dir)
        .expect("the report token is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the token volume");
    assert_eq!(
        volume["secret"]["secretName"],
        var(&vars, "TOKEN_SECRET").as_str()
    );

    // -- the image: module path and uid
    let dockerfile = read("controller/Dockerfile");
    let module = arg("filter-wasm").expect("--filter-wasm");
    assert!(
        dockerfile_instructions(&dockerfile)
            .iter()
            .any(|i| i.starts_with("COPY --from=filter ") && i.ends_with(&format!(" {module}"))),
        "the Dockerfile must put the module at {module}"
    );
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    assert!(
        dockerfile_instructions(&dockerfile)
            .iter()
            .any(|i| i == &format!("USER {uid}:{uid}")),
        "the image must run as {uid}, as the Deployment says"
    );
    let service = find(&deploy, "Service", "cert-sync");
    assert_eq!(service.namespace(), gw_ns);
    let service_port = service.value["spec"]["ports"][0]["port"].as_u64().unwrap();

    // -- the gateway-side objects the controller applies (default rendering)
    let rendered = docs_of("wasmplugin/manifests/gateway.yaml");
    let run_sh = read("e2e/kind/run.sh");
    for doc in &rendered {
        assert_eq!(doc.namespace(), gw_ns, "{}", doc.label());
        let group = doc.api_version().split('/').next().unwrap();
        let reference = format!("{}.{group}/{}", doc.kind().to_ascii_lowercase(), doc.name());
        assert!(run_sh.contains(&reference), "run.sh waits for {reference}");
    }
    let plugin = find(&rendered, "WasmPlugin", "cert-sync");
    assert_eq!(
        plugin.value["spec"]["selector"]["matchLabels"][sel_key],
        sel_value
    );
    let controller = format!(
        "{}.{}.svc.cluster.local",
        service.name(),
        service.namespace()
    );
    assert_eq!(
        plugin.value["spec"]["url"],
        format!("http://{controller}:{service_port}/v1/filter.wasm").as_str()
    );
    let filter = find(&rendered, "EnvoyFilter", "cert-sync");
    let text = filter.value.to_string();
    assert!(
        text.contains(&format!("\"address\":\"{controller}\""))
            && text.contains(&format!("\"port_value\":{service_port}")),
        "the EnvoyFilter's controller cluster must reach {controller}:{service_port}"
    );

    // -- user routing
    let routing = docs_of("e2e/kind/manifests/gateway.yaml");
    let gateway = routing
        .iter()
        .find(|d| d.kind() == "Gateway")
        .expect("a Gateway");
    assert_eq!(
        gateway.namespace(),
        gw_ns,
        "credentialName resolves in the gateway's namespace"
    );
    assert_eq!(gateway.value["spec"]["selector"][sel_key], sel_value);
    let server = &gateway.value["spec"]["servers"][0];
    assert_eq!(server["port"]["protocol"], "HTTPS");
    // The ingress gateway Service maps 443 to the pods' GATEWAY_HTTPS_PORT.
    assert_eq!(server["port"]["number"], 443);
    assert_eq!(var(&vars, "GATEWAY_HTTPS_PORT"), "8443");
    assert_eq!(server["tls"]["mode"], "SIMPLE");
    // Credential mode publishes `<namespace>.<name>` in the gateway namespace.
    assert_eq!(
        server["tls"]["credentialName"],
        format!("{app_ns}.{source}").as_str()
    );
    assert!(server["hosts"]
        .as_array()
        .unwrap()
        .contains(&Value::from(host.as_str())));

    let vs = routing
        .iter()
        .find(|d| d.kind() == "VirtualService")
        .expect("a VirtualService");
    assert_eq!(vs.namespace(), app_ns);
    assert!(vs.value["spec"]["hosts"]
        .as_array()
        .unwrap()
        .contains(&Value::from(host.as_str())));
    assert!(vs.value["spec"]["gateways"]
        .as_array()
        .unwrap()
        .contains(&Value::from(format!(
            "{}/{}",
            gateway.namespace(),
            gateway.name()
        ))));
    let destination = &vs.value["spec"]["http"][0]["route"][0]["destination"];

    // -- the backend
    let app = docs_of("e2e/kind/manifests/app.yaml");
    assert_eq!(find(&app, "Namespace", &app_ns).name(), app_ns);
    let backend = app
        .iter()
        .find(|d| d.kind() == "Service")
        .expect("a backend Service");
    assert_eq!(backend.namespace(), app_ns);
    assert_eq!(
        destination["host"],
        format!(
            "{}.{}.svc.cluster.local",
            backend.name(),
            backend.namespace()
        )
        .as_str()
    );
    let port = &backend.value["spec"]["ports"][0];
    assert_eq!(destination["port"]["number"], port["port"]);
    let echo = app
        .iter()
        .find(|d| d.kind() == "Deployment")
        .expect("a backend Deployment");
    assert_eq!(echo.namespace(), app_ns);
    let labels = &echo.value["spec"]["template"]["metadata"]["labels"];
    for (k, v) in backend.value["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "the backend Service selects the backend pods"
        );
    }
    let ports = &echo.value["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port["targetPort"]),
        "the backend Service's targetPort names a container port"
    );
}
