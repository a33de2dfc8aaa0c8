//! cert-sync's end-to-end suites live in `tests/`; this folder also holds
//! what they run on, one crate per job:
//!
//! | folder | crate | job |
//! |---|---|---|
//! | `kit/` | `certsync-testkit` | Envoy harness, SDS, PKI, TLS probe, report receiver, local cluster rig |
//! | `fakekube/` | `certsync-fakekube` | the fake Kubernetes API server (library and `fake-apiserver`) |
//! | `fixtures/` | `certsync-fixtures` | openssl-made certificate fixtures |
//! | `demo/` | `certsync-demo` | `just demo` |
//! | `bench/` | `certsync-bench` | `just bench` and the naive-watcher baseline |
//! | `kind/` | — | `just e2e-kind`: the real install in kind + Istio |
