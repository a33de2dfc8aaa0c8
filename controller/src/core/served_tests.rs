use super::*;

const GW: &str = "istio-system";

fn mk_tls(mode: TlsMode) -> ServerTls {
    ServerTls {
        mode,
        credential_name: None,
        credential_names: Vec::new(),
        ca_cert_credential_name: None,
        server_certificate: None,
        private_key: None,
        ca_certificates: None,
    }
}

fn mk_credential(mode: TlsMode, name: &str) -> ServerTls {
    ServerTls {
        credential_name: Some(name.to_owned()),
        ..mk_tls(mode)
    }
}

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|h| (*h).to_owned()).collect()
}

fn names(resources: &[ExpectedResource]) -> Vec<&str> {
    resources.iter().map(|r| r.sds.as_str()).collect()
}

#[test]
fn a_simple_credential_is_read_from_the_proxys_namespace() {
    let got = expected(
        GW,
        &mk_credential(TlsMode::Simple, "shop-tls"),
        &hosts(&["shop.example.com"]),
    );
    assert_eq!(names(&got), ["kubernetes://shop-tls"]);
    assert_eq!(got[0].holds, Holds::Certificate);
    assert_eq!(got[0].secret, Some(ObjectRef::new(GW, "shop-tls")));
    assert_eq!(got[0].hosts, ["shop.example.com"]);
    assert_eq!(got[0].refused, None);
}

#[test]
fn a_namespaced_credential_is_read_from_its_namespace() {
    let got = expected(GW, &mk_credential(TlsMode::Simple, "shop/shop-tls"), &[]);
    assert_eq!(names(&got), ["kubernetes://shop/shop-tls"]);
    assert_eq!(got[0].secret, Some(ObjectRef::new("shop", "shop-tls")));
    assert_eq!(
        got[0].refused,
        Some(CROSS_NAMESPACE_CREDENTIAL),
        "istiod denies it"
    );
    let own = expected(
        GW,
        &mk_credential(TlsMode::Simple, "istio-system/shop-tls"),
        &[],
    );
    assert_eq!(own[0].refused, None, "its own namespace, spelled out");
}

#[test]
fn typed_credential_names_are_kept() {
    let got = expected(GW, &mk_credential(TlsMode::Simple, "kubernetes://x"), &[]);
    assert_eq!(names(&got), ["kubernetes://x"]);
    assert_eq!(got[0].secret, Some(ObjectRef::new(GW, "x")));
    let got = expected(
        GW,
        &mk_credential(TlsMode::Simple, "kubernetes-gateway://app/x"),
        &[],
    );
    assert_eq!(names(&got), ["kubernetes-gateway://app/x"]);
    assert_eq!(got[0].secret, Some(ObjectRef::new("app", "x")));
}

#[test]
fn mutual_modes_add_the_cacert_companion_without_hosts() {
    for mode in [TlsMode::Mutual, TlsMode::OptionalMutual] {
        let got = expected(
            GW,
            &mk_credential(mode, "shop-tls"),
            &hosts(&["shop.example.com"]),
        );
        assert_eq!(
            names(&got),
            ["kubernetes://shop-tls", "kubernetes://shop-tls-cacert"]
        );
        assert_eq!(got[1].holds, Holds::ClientCa);
        assert_eq!(got[1].secret, Some(ObjectRef::new(GW, "shop-tls-cacert")));
        assert_eq!(
            got[1].fallback_secret,
            Some(ObjectRef::new(GW, "shop-tls")),
            "ca.crt of the certificate's own Secret when no -cacert Secret exists"
        );
        assert_eq!(got[0].fallback_secret, None);
        assert!(got[1].hosts.is_empty());
    }
    let mut tls = mk_credential(TlsMode::Mutual, "shop-tls");
    tls.ca_cert_credential_name = Some("client-ca".to_owned());
    assert_eq!(
        names(&expected(GW, &tls, &[])),
        ["kubernetes://shop-tls", "kubernetes://client-ca"]
    );
}

#[test]
fn credential_names_win_and_the_first_names_the_ca() {
    let mut tls = mk_credential(TlsMode::Mutual, "ignored");
    tls.credential_names = vec!["rsa".to_owned(), "ecdsa".to_owned()];
    assert_eq!(
        names(&expected(GW, &tls, &hosts(&["a.example.com"]))),
        [
            "kubernetes://rsa",
            "kubernetes://ecdsa",
            "kubernetes://rsa-cacert"
        ]
    );
}

#[test]
fn file_paths_become_file_cert_and_file_root() {
    let tls = ServerTls {
        server_certificate: Some("/etc/certs/tls.crt".to_owned()),
        private_key: Some("/etc/certs/tls.key".to_owned()),
        ca_certificates: Some("/etc/certs/ca.crt".to_owned()),
        ..mk_tls(TlsMode::Mutual)
    };
    let got = expected(GW, &tls, &hosts(&["*.example.com"]));
    assert_eq!(
        names(&got),
        [
            "file-cert:/etc/certs/tls.crt~/etc/certs/tls.key",
            "file-root:/etc/certs/ca.crt"
        ]
    );
    assert!(got.iter().all(|r| r.secret.is_none()));
    // SIMPLE ignores the CA file.
    let simple = ServerTls {
        mode: TlsMode::Simple,
        ..tls
    };
    assert_eq!(expected(GW, &simple, &[]).len(), 1);
}

#[test]
fn modes_without_a_certificate_of_their_own_expect_nothing() {
    for mode in ["PASSTHROUGH", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL"] {
        let mode = TlsMode::parse(mode).unwrap();
        assert!(
            expected(GW, &mk_credential(mode, "x"), &[]).is_empty(),
            "{mode:?}"
        );
    }
    assert!(
        TlsMode::parse("simple").is_none(),
        "Istio's enum is upper case"
    );
    assert!(
        expected(GW, &mk_tls(TlsMode::Simple), &[]).is_empty(),
        "nothing named"
    );
}
