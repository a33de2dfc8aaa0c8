use super::*;

fn mk_sans(names: &[&str]) -> Vec<San> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns((*n).to_owned()),
        })
        .collect()
}

fn covered(sans: &[&str], host: &str) -> bool {
    covers(&mk_sans(sans), &Host::parse(host).unwrap())
}

#[test]
fn exact_names_match_case_insensitively_and_ignore_a_trailing_dot() {
    assert!(covered(&["shop.example.com"], "shop.example.com"));
    assert!(covered(&["Shop.Example.COM"], "shop.example.com"));
    assert!(covered(&["shop.example.com."], "SHOP.example.com."));
    assert!(!covered(&["shop.example.com"], "blog.example.com"));
    assert!(!covered(&["example.com"], "shop.example.com"));
    assert!(
        !covered(&[], "shop.example.com"),
        "no SANs, nothing covered"
    );
}

#[test]
fn a_wildcard_san_matches_exactly_one_left_most_label() {
    let sans = ["*.example.com"];
    assert!(covered(&sans, "shop.example.com"));
    assert!(covered(&sans, "SHOP.Example.com"));
    assert!(!covered(&sans, "example.com"), "not the base itself");
    assert!(!covered(&sans, "a.shop.example.com"), "not two labels");
    assert!(!covered(&sans, "shop.example.org"));
    assert!(!covered(&sans, "shopexample.com"), "label boundary");
}

#[test]
fn malformed_wildcards_match_nothing() {
    assert!(!covered(&["*.com"], "example.com"), "too broad");
    assert!(
        !covered(&["f*.example.com"], "foo.example.com"),
        "partial label"
    );
    assert!(!covered(&["*.*.example.com"], "a.b.example.com"));
    assert!(!covered(&["shop.*.com"], "shop.example.com"));
    assert!(!covered(&["*"], "shop.example.com"));
}

#[test]
fn a_wildcard_host_needs_the_same_wildcard_san() {
    assert!(covered(&["*.example.com"], "*.example.com"));
    assert!(covered(&["*.Example.com"], "*.example.com"));
    assert!(
        !covered(&["shop.example.com", "blog.example.com"], "*.example.com"),
        "some names under it are not all of them"
    );
    assert!(!covered(&["*.shop.example.com"], "*.example.com"));
}

#[test]
fn unicode_hosts_match_their_punycode_sans() {
    assert_eq!(
        Host::parse("bücher.example").unwrap(),
        Host::Dns("xn--bcher-kva.example".to_owned())
    );
    assert!(covered(&["xn--bcher-kva.example"], "bücher.example"));
    assert!(covered(&["XN--BCHER-KVA.example"], "BÜCHER.example"));
    assert!(covered(&["*.xn--bcher-kva.example"], "shop.bücher.example"));
    assert!(
        !covered(&["bücher.example"], "bücher.example"),
        "a SAN is ASCII"
    );
}

#[test]
fn ip_hosts_match_only_ip_sans() {
    assert!(covered(&["10.0.0.1"], "10.0.0.1"));
    assert!(covered(&["fd00::1"], "[fd00::1]"));
    assert!(!covered(&["10.0.0.2"], "10.0.0.1"));
    assert!(
        !covered(&["10.0.0.1.example.com"], "10.0.0.1"),
        "not a DNS SAN spelled like the address"
    );
    assert!(!covered(&["*.0.0.1"], "10.0.0.1"));
}

#[test]
fn istio_namespace_prefixes_and_any_host() {
    assert_eq!(
        Host::parse("shop/shop.example.com").unwrap(),
        Host::Dns("shop.example.com".to_owned())
    );
    assert_eq!(
        Host::parse("./*.example.com").unwrap(),
        Host::Wildcard("example.com".to_owned())
    );
    assert_eq!(Host::parse("*/*").unwrap(), Host::Any);
    assert!(covered(&[], "*"), "nothing to check");
}

#[test]
fn uncovered_lists_each_missing_or_unreadable_host() {
    let sans = mk_sans(&["shop.example.com", "*.api.example.com"]);
    let hosts: Vec<String> = [
        "shop/shop.example.com",
        "v1.api.example.com",
        "blog.example.com",
        "bad*.example.com",
        "*",
    ]
    .iter()
    .map(|h| (*h).to_owned())
    .collect();
    let missing = uncovered(&sans, &hosts);
    let names: Vec<&str> = missing.iter().map(|(h, _)| *h).collect();
    assert_eq!(names, ["blog.example.com", "bad*.example.com"]);
    assert!(missing[0].1.is_none());
    let err = missing[1]
        .1
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(err.contains("left-most label"), "{err}");
    assert!(Host::parse("").is_err());
    assert!(Host::parse("exa mple.com").is_err());
}
