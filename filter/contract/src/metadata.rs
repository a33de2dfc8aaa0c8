//! The Kubernetes labels and annotations cert-sync reads or writes. The
//! controller, the gateway-side objects it renders, and the tools that seed
//! or observe a cluster must spell them alike; Kubernetes' own keys (the TLS
//! Secret type and its data keys) are not cert-sync's and are not here.

/// On a source Secret: publish it (value `"true"`).
pub const AUTOSYNC: &str = "certsync.istio.io/autosync";
/// On a published object: `<namespace>/<name>` of its source(s),
/// comma-separated.
pub const SOURCE: &str = "certsync.istio.io/source";
/// On a published object: SHA-256 (hex) of each source's leaf,
/// comma-separated, in [`SOURCE`] order.
pub const SOURCE_SHA256: &str = "certsync.istio.io/source-sha256";
/// On a published Secret: when the rollout ladder last re-pushed it, so the
/// gateway's watch (istiod's SDS, the kubelet) sees an update.
pub const REPUSHED_AT: &str = "certsync.istio.io/repushed-at";
/// On every gateway-side object: when the rollout ladder last re-applied
/// them (identical objects would be a no-op for the API server and istiod).
/// The key must contain `istio.io`: istiod pushes a change that leaves the
/// spec alone only when a label or annotation key does (istio 1.28.10
/// `pilot/pkg/bootstrap/config_compare.go:38-58`); any other annotation
/// would change nothing for the gateways.
pub const REAPPLIED_AT: &str = "certsync.istio.io/reapplied-at";
/// Label on everything cert-sync writes, with value [`MANAGED_BY_VALUE`]:
/// the controller selects what it owns by it and never touches an object
/// without it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label on the gateway-side objects, with value [`MANAGED_BY_VALUE`].
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// The value of [`MANAGED_BY`] and [`PART_OF`].
pub const MANAGED_BY_VALUE: &str = "cert-sync";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reapply_stamp_is_one_istiod_pushes() {
        // Else a re-apply would be a no-op for the gateways (see REAPPLIED_AT).
        assert!(REAPPLIED_AT.contains("istio.io"));
        assert!(REPUSHED_AT.starts_with("certsync.istio.io/"));
    }
}
