use super::*;
use crate::core::gateways::{IstioServer, Listener, ListenerTls, SecretObjectRef};
use crate::core::served::{ServerTls, TlsMode};
use crate::core::testing::{fixture, map, Pair, GATEWAY_NS, NOW};

fn scope() -> Scope {
    Scope {
        gateway_namespace: GATEWAY_NS.to_owned(),
        classes: vec!["istio".to_owned()],
    }
}

fn mk_istio_gateway(ns: &str, name: &str, credential: &str, hosts: &[&str]) -> IstioGateway {
    IstioGateway {
        key: ObjectRef::new(ns, name),
        selector: map(&[("istio", "ingressgateway")]),
        servers: vec![IstioServer {
            label: "https".to_owned(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            tls: Some(ServerTls {
                mode: TlsMode::Simple,
                credential_name: Some(credential.to_owned()),
                credential_names: Vec::new(),
                ca_cert_credential_name: None,
                server_certificate: None,
                private_key: None,
                ca_certificates: None,
            }),
        }],
    }
}

fn mk_api_gateway(name: &str, secret: (&str, &str), hostname: &str) -> ApiGateway {
    ApiGateway {
        key: ObjectRef::new(GATEWAY_NS, name),
        class: "istio".to_owned(),
        listeners: vec![Listener {
            name: "https".to_owned(),
            hostname: Some(hostname.to_owned()),
            tls: Some(ListenerTls {
                mode: Some("Terminate".to_owned()),
                certificate_refs: vec![SecretObjectRef {
                    namespace: Some(secret.0.to_owned()),
                    name: secret.1.to_owned(),
                    ..SecretObjectRef::default()
                }],
                options: BTreeMap::new(),
            }),
        }],
    }
}

fn servable(pair: Pair) -> SecretCheck {
    check_secret(&pair.data())
}

fn checks(entries: &[(&str, SecretCheck)]) -> BTreeMap<ObjectRef, SecretCheck> {
    entries
        .iter()
        .map(|(k, c)| {
            let (ns, name) = k.split_once('/').unwrap();
            (ObjectRef::new(ns, name), c.clone())
        })
        .collect()
}

fn reasons_of(a: &Assembled) -> Vec<&'static str> {
    a.refusals.iter().map(|r| r.reason).collect()
}

#[test]
fn an_istio_gateway_credential_is_expected_on_its_selected_pods() {
    let gw = mk_istio_gateway("apps", "shop", "shop-tls", &["shop/rsa.example.com"]);
    let (refs, refused) = references(&scope(), &[gw], &[], &[]);
    assert!(refused.is_empty());
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].resource.sds, "kubernetes://shop-tls");
    assert_eq!(refs[0].pods, map(&[("istio", "ingressgateway")]));
    assert_eq!(
        secrets(&refs),
        BTreeSet::from([ObjectRef::new(GATEWAY_NS, "shop-tls")])
    );

    let a = assemble(
        &refs,
        &checks(&[("istio-system/shop-tls", servable(Pair::Rsa))]),
        &BTreeSet::new(),
        NOW,
    );
    assert!(a.refusals.is_empty(), "{:?}", a.refusals);
    assert_eq!(a.entries.len(), 1);
    let e = &a.entries[0];
    assert_eq!(e.source, "istio-system/shop-tls");
    assert_eq!(e.sds_resource, "kubernetes://shop-tls");
    assert_eq!(e.sha256.to_string(), Pair::Rsa.sha256());
    assert_eq!(
        e.target,
        TargetRef::Referenced {
            by: vec!["Gateway apps/shop https".to_owned()],
            pods: map(&[("istio", "ingressgateway")]),
        }
    );
}

#[test]
fn a_certificate_that_misses_a_host_is_expected_and_warned_about() {
    let gw = mk_istio_gateway(
        "apps",
        "shop",
        "shop-tls",
        &["*/p256.example.com", "./shop.example.com"],
    );
    let (refs, _) = references(&scope(), &[gw], &[], &[]);
    let a = assemble(
        &refs,
        &checks(&[("istio-system/shop-tls", servable(Pair::P256))]),
        &BTreeSet::new(),
        NOW,
    );
    assert_eq!(reasons_of(&a), [reasons::HOST_NOT_COVERED]);
    assert!(a.refusals[0].message.contains("shop.example.com"));
    assert!(!a.refusals[0].message.contains("p256.example.com,"));
    assert_eq!(
        a.refusals[0].subject,
        Subject::Gateway(GatewayRef {
            kind: GatewayKind::Istio,
            key: ObjectRef::new("apps", "shop")
        })
    );
    assert_eq!(a.entries.len(), 1, "Istio serves it all the same");
}

#[test]
fn an_expired_or_disordered_certificate_is_expected_and_warned_about() {
    let expired = SourceData {
        cert_pem: Some(fixture!("expired.crt").into()),
        key_pem: Some(Pair::Rsa.key().into()),
        ca_pem: None,
    };
    // Leaf first (Envoy matches the key against it), then root before
    // intermediate.
    let disordered: Vec<u8> = [
        fixture!("p256.crt"),
        fixture!("root.crt"),
        fixture!("intermediate.crt"),
    ]
    .concat();
    let reversed = SourceData {
        cert_pem: Some(disordered.as_slice().into()),
        key_pem: Some(Pair::P256.key().into()),
        ca_pem: None,
    };
    for (data, host, reason) in [
        (expired, "expired.example.com", reasons::EXPIRED),
        (reversed, "p256.example.com", reasons::CHAIN_ORDER),
    ] {
        let gw = mk_istio_gateway("apps", "shop", "shop-tls", &[host]);
        let (refs, _) = references(&scope(), &[gw], &[], &[]);
        let check = check_secret(&data);
        assert!(matches!(check, SecretCheck::Servable { .. }), "{check:?}");
        let a = assemble(
            &refs,
            &checks(&[("istio-system/shop-tls", check)]),
            &BTreeSet::new(),
            NOW,
        );
        assert_eq!(reasons_of(&a), [reason]);
        assert_eq!(a.entries.len(), 1);
    }
}

#[test]
fn a_secret_istio_cannot_serve_is_warned_about_and_not_expected() {
    let mismatched = SourceData {
        cert_pem: Some(Pair::Rsa.cert().into()),
        key_pem: Some(Pair::P256.key().into()),
        ca_pem: None,
    };
    let gw = mk_istio_gateway("apps", "shop", "shop-tls", &["rsa.example.com"]);
    let (refs, _) = references(&scope(), &[gw], &[], &[]);
    for (check, reason) in [
        (check_secret(&mismatched), reasons::KEY_MISMATCH),
        (check_secret(&SourceData::default()), reasons::MISSING_KEY),
        (SecretCheck::Missing, reasons::NOT_FOUND),
    ] {
        let a = assemble(
            &refs,
            &checks(&[("istio-system/shop-tls", check)]),
            &BTreeSet::new(),
            NOW,
        );
        assert_eq!(reasons_of(&a), [reason]);
        assert!(a.entries.is_empty());
        assert!(!a.refusals[0].message.contains("PRIVATE KEY"));
    }
}

#[test]
fn a_credential_outside_the_pods_namespace_is_refused_as_istiod_does() {
    let gw = mk_istio_gateway("apps", "shop", "apps/shop-tls", &["rsa.example.com"]);
    let (refs, refused) = references(&scope(), &[gw], &[], &[]);
    assert!(refs.is_empty());
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reason, reasons::REF_NOT_PERMITTED);
}

#[test]
fn a_gateway_api_listener_is_expected_on_its_own_deployment() {
    let gw = mk_api_gateway("web", ("shop", "shop-tls"), "rsa.example.com");
    let grant = gateways::ReferenceGrant {
        namespace: "shop".to_owned(),
        from: vec![gateways::GrantFrom {
            group: gateways::GATEWAY_API_GROUP.to_owned(),
            kind: "Gateway".to_owned(),
            namespace: GATEWAY_NS.to_owned(),
        }],
        to: vec![gateways::GrantTo {
            group: String::new(),
            kind: "Secret".to_owned(),
            name: None,
        }],
    };
    let (refs, refused) = references(&scope(), &[], std::slice::from_ref(&gw), &[grant]);
    assert!(refused.is_empty());
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].resource.sds, "kubernetes-gateway://shop/shop-tls");
    assert_eq!(refs[0].pods, map(&[(gateways::GATEWAY_NAME_LABEL, "web")]));

    let (refs, refused) = references(&scope(), &[], std::slice::from_ref(&gw), &[]);
    assert!(refs.is_empty());
    assert_eq!(refused[0].reason, reasons::REF_NOT_PERMITTED);

    // Another class, or a Gateway whose pods are elsewhere: not ours.
    let mut other = gw.clone();
    other.class = "cilium".to_owned();
    let mut elsewhere = gw;
    elsewhere.key.namespace = "apps".to_owned();
    let (refs, refused) = references(&scope(), &[], &[other, elsewhere], &[]);
    assert!(refs.is_empty() && refused.is_empty());
}

#[test]
fn one_secret_on_two_deployments_is_two_rows_and_one_on_two_servers_is_one() {
    let a = mk_api_gateway("a", (GATEWAY_NS, "shared"), "rsa.example.com");
    let b = mk_api_gateway("b", (GATEWAY_NS, "shared"), "rsa.example.com");
    let (refs, _) = references(&scope(), &[], &[a, b], &[]);
    let c = checks(&[("istio-system/shared", servable(Pair::Rsa))]);
    let assembled = assemble(&refs, &c, &BTreeSet::new(), NOW);
    assert_eq!(assembled.entries.len(), 2);

    let mut gw = mk_istio_gateway("apps", "shop", "shop-tls", &["rsa.example.com"]);
    let mut second = gw.servers[0].clone();
    second.label = "https-alt".to_owned();
    second.hosts = vec!["www.rsa.example.com".to_owned()];
    gw.servers.push(second);
    let (refs, _) = references(&scope(), &[gw], &[], &[]);
    let c = checks(&[("istio-system/shop-tls", servable(Pair::Rsa))]);
    let assembled = assemble(&refs, &c, &BTreeSet::new(), NOW);
    assert_eq!(assembled.entries.len(), 1);
    assert!(
        assembled.refusals.is_empty(),
        "*.rsa.example.com covers www"
    );
    let TargetRef::Referenced { by, .. } = &assembled.entries[0].target else {
        panic!("not referenced");
    };
    assert_eq!(by.len(), 2);
}

#[test]
fn a_certificate_cert_sync_publishes_is_one_row_with_the_host_check() {
    let gw = mk_istio_gateway("apps", "shop", "shop.shop-tls", &["nope.example.com"]);
    let (refs, _) = references(&scope(), &[gw], &[], &[]);
    let c = checks(&[("istio-system/shop.shop-tls", servable(Pair::Rsa))]);
    let copied = BTreeSet::from(["kubernetes://shop.shop-tls"]);
    let a = assemble(&refs, &c, &copied, NOW);
    assert!(a.entries.is_empty());
    assert_eq!(reasons_of(&a), [reasons::HOST_NOT_COVERED]);
}

#[test]
fn istios_generic_keys_win_over_the_tls_ones() {
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), Blob::from(Pair::P256.cert())),
        ("tls.key".to_owned(), Blob::from(Pair::P256.key())),
        ("cert".to_owned(), Blob::from(Pair::Rsa.cert())),
        ("key".to_owned(), Blob::from(Pair::Rsa.key())),
    ]);
    let SecretCheck::Servable { summary, .. } = check_secret(&istio_layout(data)) else {
        panic!("not servable");
    };
    assert_eq!(summary.sha256.to_string(), Pair::Rsa.sha256());
}
