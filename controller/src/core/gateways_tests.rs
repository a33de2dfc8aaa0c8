use super::*;
use crate::core::reasons;

fn mk_listener(name: &str, refs: &[(&str, Option<&str>)]) -> Listener {
    Listener {
        name: name.to_owned(),
        hostname: Some("shop.example.com".to_owned()),
        tls: Some(ListenerTls {
            mode: None,
            certificate_refs: refs
                .iter()
                .map(|(n, ns)| SecretObjectRef {
                    name: (*n).to_owned(),
                    namespace: ns.map(str::to_owned),
                    ..SecretObjectRef::default()
                })
                .collect(),
            options: BTreeMap::new(),
        }),
    }
}

fn mk_grant(namespace: &str, from_ns: &str, to_name: Option<&str>) -> ReferenceGrant {
    ReferenceGrant {
        namespace: namespace.to_owned(),
        from: vec![GrantFrom {
            group: GATEWAY_API_GROUP.to_owned(),
            kind: "Gateway".to_owned(),
            namespace: from_ns.to_owned(),
        }],
        to: vec![GrantTo {
            group: String::new(),
            kind: "Secret".to_owned(),
            name: to_name.map(str::to_owned),
        }],
    }
}

fn gw() -> ObjectRef {
    ObjectRef::new("istio-ingress", "web")
}

#[test]
fn a_same_namespace_ref_becomes_a_kubernetes_gateway_resource() {
    let t = translate(&gw(), &mk_listener("https", &[("web-tls", None)]), &[]);
    let tls = t.tls.unwrap_or_else(|| panic!("no tls"));
    assert_eq!(tls.mode, TlsMode::Simple);
    assert_eq!(
        tls.credential_names,
        ["kubernetes-gateway://istio-ingress/web-tls"]
    );
    assert!(t.refused.is_empty());
}

#[test]
fn a_cross_namespace_ref_needs_a_reference_grant() {
    let listener = mk_listener("https", &[("shop-tls", Some("shop"))]);
    let refused = translate(&gw(), &listener, &[]);
    assert!(refused.tls.is_none());
    assert_eq!(refused.refused.len(), 1);
    assert_eq!(refused.refused[0].reason, reasons::REF_NOT_PERMITTED);
    assert_eq!(
        refused.refused[0].secret,
        ObjectRef::new("shop", "shop-tls")
    );

    for grant in [
        mk_grant("shop", "istio-ingress", None),
        mk_grant("shop", "istio-ingress", Some("shop-tls")),
    ] {
        let allowed = translate(&gw(), &listener, &[grant]);
        assert_eq!(
            allowed.tls.map(|t| t.credential_names),
            Some(vec!["kubernetes-gateway://shop/shop-tls".to_owned()])
        );
    }
    // A grant in the wrong namespace, from the wrong namespace, or for
    // another Secret allows nothing.
    for grant in [
        mk_grant("other", "istio-ingress", None),
        mk_grant("shop", "elsewhere", None),
        mk_grant("shop", "istio-ingress", Some("other-tls")),
    ] {
        assert!(translate(&gw(), &listener, &[grant]).tls.is_none());
    }
    let mut for_routes = mk_grant("shop", "istio-ingress", None);
    for_routes.from[0].kind = "HTTPRoute".to_owned();
    assert!(translate(&gw(), &listener, &[for_routes]).tls.is_none());
}

#[test]
fn one_refused_ref_leaves_the_other() {
    let listener = mk_listener("https", &[("rsa", None), ("ecdsa", Some("shop"))]);
    let t = translate(&gw(), &listener, &[]);
    assert_eq!(
        t.tls.map(|t| t.credential_names),
        Some(vec!["kubernetes-gateway://istio-ingress/rsa".to_owned()])
    );
    assert_eq!(t.refused.len(), 1);
}

#[test]
fn passthrough_plaintext_and_mesh_certificates_expect_nothing() {
    let mut passthrough = mk_listener("tls", &[("web-tls", None)]);
    if let Some(tls) = passthrough.tls.as_mut() {
        tls.mode = Some("Passthrough".to_owned());
    }
    assert_eq!(
        translate(&gw(), &passthrough, &[]),
        ListenerTranslation::default()
    );
    let mut plain = mk_listener("http", &[]);
    plain.tls = None;
    assert_eq!(
        translate(&gw(), &plain, &[]),
        ListenerTranslation::default()
    );
    let mut istio_simple = mk_listener("mesh", &[("web-tls", None)]);
    if let Some(tls) = istio_simple.tls.as_mut() {
        tls.options
            .insert(TERMINATE_MODE_OPTION.to_owned(), "ISTIO_SIMPLE".to_owned());
    }
    assert!(translate(&gw(), &istio_simple, &[]).tls.is_none());
}

#[test]
fn the_terminate_mode_option_makes_a_listener_mutual() {
    let mut listener = mk_listener("https", &[("web-tls", None)]);
    if let Some(tls) = listener.tls.as_mut() {
        tls.options
            .insert(TERMINATE_MODE_OPTION.to_owned(), "MUTUAL".to_owned());
    }
    let tls = translate(&gw(), &listener, &[]).tls;
    assert_eq!(tls.map(|t| t.mode), Some(TlsMode::Mutual));
}

#[test]
fn a_non_secret_ref_or_more_than_two_refs_are_refused() {
    let mut listener = mk_listener("https", &[("web-tls", None)]);
    if let Some(tls) = listener.tls.as_mut() {
        tls.certificate_refs[0].kind = "ConfigMap".to_owned();
    }
    let t = translate(&gw(), &listener, &[]);
    assert!(t.tls.is_none());
    assert_eq!(t.refused[0].reason, reasons::INVALID_REFERENCE);

    let three = mk_listener("https", &[("a", None), ("b", None), ("c", None)]);
    let t = translate(&gw(), &three, &[]);
    assert!(t.tls.is_none(), "istiod refuses the listener");
    assert_eq!(t.refused.len(), 3);
    assert!(t
        .refused
        .iter()
        .all(|r| r.reason == reasons::INVALID_REFERENCE));
}

#[test]
fn gateway_refs_name_their_api() {
    let istio = GatewayRef {
        kind: GatewayKind::Istio,
        key: ObjectRef::new("apps", "shop"),
    };
    assert_eq!(istio.to_string(), "Gateway apps/shop");
    let api = GatewayRef {
        kind: GatewayKind::GatewayApi,
        ..istio
    };
    assert_eq!(
        api.to_string(),
        "Gateway apps/shop (gateway.networking.k8s.io)"
    );
}
