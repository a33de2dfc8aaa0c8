#!/usr/bin/env bash
# Writes the committed seed corpora, e2e/fuzz/seeds/<target>/, from the test
# fixtures (e2e/fixtures/pem) and the admin API samples of the filter's
# tests. Files it does not write (crash-* inputs kept as regressions) stay.
#
#   bash e2e/fuzz/seeds.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pem=$here/../fixtures/pem
seeds=$here/seeds

# The first PEM block of a file, as DER.
der() { awk '/-----BEGIN/{on=1; next} /-----END/{exit} on' "$pem/$1" | base64 -d; }
# A fixture as a JSON string body (PEM has no quotes or backslashes).
json_pem() { sed -z 's/\n/\\n/g' "$pem/$1"; }
# Files joined by NUL bytes: the fuzz targets' field separator.
joined() {
  local first=1 f
  for f in "$@"; do
    [ "$first" = 1 ] || printf '\0'
    first=0
    cat "$pem/$f"
  done
}
# Secret data: key, NUL, value, NUL, ... (values are fixture files).
secret() {
  while [ $# -ge 2 ]; do
    printf '%s\0' "$1"
    cat "$pem/$2"
    printf '\0'
    shift 2
  done
}
seed() { mkdir -p "$seeds/$1"; cat >"$seeds/$1/$2"; }

for f in rsa.chain.pem p256.chain.pem ed25519.crt p256.reversed.pem expired.crt; do
  seed pem_chain "$f" <"$pem/$f"
done

for f in rsa p256 p384 ed25519 root intermediate; do
  der "$f.crt" | seed cert_der "$f.der"
done

# The selector byte: certificate (rsa, p256, p384, ed25519) in the high
# nibble, PEM label (PKCS#1, SEC1, PKCS#8) in the low one; see key_der.rs.
key_der() { { printf '%b' "\\x$1"; der "$2"; } | seed key_der "$2.der"; }
key_der 00 rsa.pkcs1.key
key_der 02 rsa.pkcs8.key
key_der 11 p256.sec1.key
key_der 12 p256.pkcs8.key
key_der 21 p384.sec1.key
key_der 22 p384.pkcs8.key
key_der 32 ed25519.pkcs8.key

joined rsa.chain.pem rsa.pkcs1.key | seed validate_pair rsa
joined p256.chain.pem p256.sec1.key | seed validate_pair p256
joined p384.crt p384.pkcs8.key | seed validate_pair p384
joined ed25519.chain.pem ed25519.pkcs8.key | seed validate_pair ed25519
joined expired.crt rsa.pkcs8.key | seed validate_pair expired
joined p256.reversed.pem p256.pkcs8.key | seed validate_pair reversed
joined rsa.crt p256.sec1.key | seed validate_pair mismatch

seed report_decode report.json <<'EOF'
{"version":1,"pod":{"name":"gw-7d9f","namespace":"istio-system"},"node_id":"router~10.0.0.7~gw-7d9f.istio-system~istio-system.svc.cluster.local","seq":42,"trigger":"change","certificates":[{"resource":"kubernetes://shop.shop-tls","version":"2026-11-22T10:00:00Z/7","sha256":"ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a","serial":"252b0a0b0c","not_before":1763800000,"not_after":4948973195,"subject":"CN=shop.example.com","issuer":"CN=cert-sync test intermediate","sans":[{"type":"dns","value":"shop.example.com"},{"type":"ip","value":"10.0.0.1"},{"type":"uri","value":"spiffe://cluster.local/ns/shop/sa/web"}],"chain_len":2},{"resource":"ROOTCA","sha256":"65ca08fb17e26ca23b4e4f7ef76452c76432e7e139208f043d5dddc253010445","serial":"1001","not_before":0,"not_after":4948973194,"subject":"CN=root","issuer":"CN=root","chain_len":2,"chain_sha256":["f32bb264c50bd24d26bbd613cce5769e7d6dcab281eb43bbb63a008111ec3da0"]}],"errors":[{"resource":"file-cert:/etc/certs/a.crt~/etc/certs/a.key","error":"no certificate"}]}
EOF
seed report_decode heartbeat.json <<'EOF'
{"version":1,"pod":{"name":"p","namespace":"n"},"node_id":"","seq":0,"trigger":"heartbeat","certificates":[]}
EOF

seed plugin_config minimal.json <<'EOF'
{"report_cluster":"outbound|8443||cert-sync.cert-sync.svc.cluster.local"}
EOF
seed plugin_config full.json <<'EOF'
{"admin_cluster":"cert-sync-admin","admin_authority":"envoy-admin","report_cluster":"cert-sync","report_path":"/v1/reports","report_authority":"cert-sync.cert-sync.svc","interval_ms":1000,"heartbeat_ms":10000,"resync_ms":60000,"timeout_ms":2000,"max_backoff_ms":30000,"report_token":"s3cr3t","resource_prefixes":["kubernetes://","default","ROOTCA"],"pod_name":"gw-1","pod_namespace":"istio-system"}
EOF

seed config_dump index.json <<'EOF'
{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"kubernetes://shop.tls","version_info":"7","last_updated":"2026-11-22T10:00:00Z"},{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"file-cert:/c.crt~/c.key","last_updated":"2026-11-22T10:00:01Z"}]}
EOF
{
  printf '{"configs":[{"name":"kubernetes://shop.tls","version_info":"7","last_updated":"t","secret":{"name":"kubernetes://shop.tls","tls_certificate":{"certificate_chain":{"inline_string":"'
  json_pem p256.chain.pem
  printf '"},"private_key":{"inline_string":"[redacted]"}}}},'
  printf '{"name":"default","secret":{"name":"default","tls_certificate":{"certificate_chain":{"inline_bytes":"'
  base64 -w0 "$pem/ed25519.chain.pem"
  printf '"}}}},{"name":"ROOTCA","secret":{"name":"ROOTCA","validation_context":{"trusted_ca":{"inline_string":"'
  json_pem root.crt
  printf '"}}}},{"name":"file-cert:/a.crt~/a.key","secret":{"tls_certificate":{"certificate_chain":{"filename":"/a.crt"}}}},'
  printf '{"name":"tickets","secret":{"session_ticket_keys":{}}}]}\n'
} | seed config_dump secrets.json

seed admin_certs certs.json <<'EOF'
{"certificates":[{"ca_cert":[],"cert_chain":[{"path":"<inline>","serial_number":"02770A0B0C","subject_alt_names":[{"dns":"shop.example.com"}],"days_until_expiration":"36500","valid_from":"2026-01-01T00:00:00Z","expiration_time":"2126-01-01T00:00:00Z"}]},{"ca_cert":[{"serial_number":"1001"}],"cert_chain":[{"serial_number":"63c20a0b0c"}]}]}
EOF

seed stats stats.json <<'EOF'
{"stats":[{"name":"listener.0.0.0.0_443.server_ssl_socket_factory.ssl_context_update_by_sds","value":7},{"name":"cluster.x.client_ssl_socket_factory.ssl_context_update_by_sds","value":2},{"name":"sds.kubernetes_shop.tls.key_rotation_failed","value":1},{"name":"sds.kubernetes_shop.tls.update_rejected","value":2},{"name":"sds.file-cert_/c.crt~/c.key.update_rejected","value":1},{"name":"listener_manager.lds.update_rejected","value":5},{"name":"listener_manager.listener_added","value":3},{"name":"listener_manager.listener_in_place_updated","value":4}]}
EOF

secret tls.crt p256.chain.pem tls.key p256.sec1.key ca.crt root.crt | seed secret_data tls
secret cert rsa.chain.pem key rsa.pkcs8.key cacert root.crt tls.crt expired.crt | seed secret_data istio-layout
secret tls.crt intermediate.crt tls.key intermediate.key ca.crt root.crt | seed secret_data mesh-ca
secret shop.a.crt ed25519.chain.pem shop.a.key ed25519.pkcs8.key ca.crt p384.crt | seed secret_data merged

seed certmerge_spec gateway.json <<'EOF'
{"apiVersion":"certsync.istio.io/v1alpha1","kind":"CertMerge","metadata":{"name":"gw-merge","namespace":"istio-system","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"name":"merged-certs","selector":[{"labelSelector":{"matchLabels":{"merge":"yes"},"matchExpressions":[{"key":"tier","operator":"In","values":["web"]}]},"namespace":"shop"}],"secretList":[{"name":"b","namespace":"blog"},{"name":"opaque","namespace":"shop"}]}}
EOF
seed certmerge_spec tenant.json <<'EOF'
{"apiVersion":"certsync.istio.io/v1alpha1","kind":"CertMerge","metadata":{"name":"grab","namespace":"shop","creationTimestamp":"2026-02-01T00:00:00Z"},"spec":{"name":"shop.merged","namespace":"istio-system","selector":[{"labelSelector":{"matchExpressions":[{"key":"merge","operator":"Exists"}]},"namespace":""}],"secretList":[{"name":"a","namespace":"shop"},{"name":"vault","namespace":"bank"}]}}
EOF
seed certmerge_spec vaultcertificate.json <<'EOF'
{"apiVersion":"certsync.istio.io/v1alpha1","kind":"VaultCertificate","metadata":{"name":"shop","namespace":"apps","uid":"u1","resourceVersion":"7","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"path":"shop/tls","fields":{"certificate":"crt","privateKey":"key","ca":"ca"}}}
EOF

seed status manifest.json <<'EOF'
{"version":1,"gatewayNamespace":"istio-system","mode":"credential","publications":[{"source":"shop/a","target":{"kind":"credential","secret":"shop.a"},"sdsResource":"kubernetes://shop.a","sha256":"ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a","serial":"252b0a0b0c","notAfter":"2126-10-30T00:00:00Z","publishedAt":"2026-01-01T00:00:00Z","state":"Converged","rollout":{"gw-1":"Verified","gw-2":"Stale"}},{"source":"blog/b","target":{"kind":"merged","secret":"merged-certs","certKey":"blog.b.crt","keyKey":"blog.b.key","caKey":"blog.b-cacert.crt"},"sdsResource":"file-cert:/etc/istio/merged-certs/blog.b.crt~/etc/istio/merged-certs/blog.b.key","sdsCaResource":"file-root:/etc/istio/merged-certs/blog.b-cacert.crt","sha256":"e9bbceeba1a8bfc11a5129ba593548743d2fcf4f0ecce2856d0d4e67c407ee24","serial":"63c20a0b0c","notAfter":"2126-10-30T00:00:00Z","kept":"KeyMismatch","rollout":{}},{"source":"istio-system/ca","target":{"kind":"meshCa","secret":"cacerts","proof":"trustsRoot"},"sdsResource":"ROOTCA","sha256":"65ca08fb17e26ca23b4e4f7ef76452c76432e7e139208f043d5dddc253010445","serial":"1001","notAfter":"2126-10-30T00:00:00Z"},{"source":"web/x","target":{"kind":"referenced","by":["istio-system/gw https"],"pods":{"istio":"ingressgateway"}},"sdsResource":"kubernetes-gateway://web/x","sha256":"d3e8d7f84b027b6b066a7489c5140fced2433e3aa08856230fa3df4f7ec2e70f","serial":"57820a0b0c","notAfter":"2126-10-30T00:00:00Z"}],"refusals":[{"subject":"secret shop/bad","reason":"KeyMismatch","message":"tls.key: private key does not match"}]}
EOF
# The manifest as its ConfigMaps hold it: index, then label/shard pairs.
seed manifest_shards version1.json <"$seeds/status/manifest.json"
printf '%s\0%s\0%s\0%s\0%s' \
  '{"version":2,"gatewayNamespace":"istio-system","mode":"credential","shards":["s0","s1"]}' \
  s0 '{"version":2,"shard":"s0","publications":[{"source":"shop/a","target":{"kind":"credential","secret":"shop.a"},"sdsResource":"kubernetes://shop.a","sha256":"ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a","serial":"252b0a0b0c","notAfter":"2126-10-30T00:00:00Z","state":"Converged","rollout":{"gw-1":"Verified"}}],"refusals":[{"subject":"secret shop/bad","reason":"KeyMismatch","message":"tls.key: private key does not match"}]}' \
  s1 '{"version":2,"shard":"s1","publications":[],"refusals":[]}' | seed manifest_shards two-shards

seed status view.json <<'EOF'
{"gatewayNamespace":"istio-system","mode":"directory","generatedAt":"2026-01-02T00:00:00Z","pods":[{"name":"gw-1","ip":"10.0.0.7","lastReport":"2026-01-02T00:00:00Z","seq":9,"certificates":3,"reporting":"Reporting"},{"name":"gw-2","reporting":"FilterNotLoaded"}],"publications":[{"source":"shop/a","target":{"kind":"directory","cert":"/etc/certs/shop/a.crt","key":"/etc/certs/shop/a.key"},"sdsResource":"file-cert:/etc/certs/shop/a.crt~/etc/certs/shop/a.key","sha256":"0f443d3a81b1011419f3188a5c1c994766b7b78db3321ff1e73e4ebd2d386cd9","serial":"02770a0b0c","notAfter":"2126-10-30T00:00:00Z","publishedAt":"2026-01-01T00:00:00Z","state":"Progressing","rollout":{"gw-1":"Stale"},"verified":0,"total":1,"pods":{"gw-1":{"state":"Stale","servedSha256":"ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a","servedNotAfter":4948973195}}}],"refusals":[],"warnings":[{"kind":"Expiring","pod":"gw-1","resource":"default","sha256":"ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a","notAfter":1893456000,"message":"expires soon"}]}
EOF

seed names names.txt <<'EOF'
shop.example.com
./*.example.com
*/bücher.example.
[::1]
10.0.0.1
f*.example.com
shop/a,blog/b, ,x/,/y
AB:46:a6:d0:33:25:d3:f6:00:8f:fb:6d:8d:a9:54:88:5a:4b:f5:e4:14:f5:22:ee:03:20:a8:d4:e2:94:ef:9a
kubernetes://shop.shop-tls
kubernetes://shop.shop-tls-cacert
file-cert:/etc/certs/a.crt~/etc/certs/a.key
.default.
EOF
