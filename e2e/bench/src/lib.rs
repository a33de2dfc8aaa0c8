//! The benchmarks behind `just bench` (`src/bin/`): `bench` (the filter in
//! real Envoy), `controller_bench` (cert-sync against `naive-watcher`, a
//! plain kube-rs reflector over every Secret), `rollout_bench` (Secret
//! update → verified on every gateway pod). Each writes its part of
//! `bench-report.md` through [`report`].
pub mod report;
