//! What `GET /v1/status` answers and what `cert-sync status` prints: every
//! publication with its rollout across the gateway pods, the sources that
//! were refused, and the warnings about what pods serve.
//!
//! `cert-sync status` reads either the controller's `/v1/status` (everything,
//! including each pod's served fingerprint) or the manifest ConfigMap (what
//! the API server holds: per-pod states only); both become a [`StatusView`],
//! and one renderer prints it.

use super::conditions::PUBLISHED;
use super::manifest::{self, Manifest, ManifestEntry, TargetRef};
use super::rollout::{PodState, PodView, Reporting, Warning};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub gateway_namespace: String,
    pub mode: String,
    /// RFC 3339; absent when read from the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    #[serde(default)]
    pub pods: Vec<PodSummary>,
    pub publications: Vec<PublicationStatus>,
    #[serde(default)]
    pub refusals: Vec<RefusalView>,
    #[serde(default)]
    pub warnings: Vec<WarningView>,
}

/// A live gateway pod and its last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// RFC 3339 of the last accepted report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Certificates the pod reported loaded.
    #[serde(default)]
    pub certificates: usize,
    /// How the pod reports; absent when read from an older controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting: Option<Reporting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicationStatus {
    #[serde(flatten)]
    pub entry: ManifestEntry,
    pub verified: usize,
    pub total: usize,
    #[serde(default)]
    pub pods: BTreeMap<String, PodView>,
}

/// What a reconcile published (the manifest, before rollout state) and
/// refused: rollout verification's input, shared rather than copied.
pub type Publications = Arc<Manifest>;

pub use super::manifest::RefusalView;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningView {
    #[serde(flatten)]
    pub warning: Warning,
    pub message: String,
}

impl From<Warning> for WarningView {
    fn from(warning: Warning) -> Self {
        let message = warning.message();
        WarningView { warning, message }
    }
}

impl PublicationStatus {
    /// From a manifest entry alone: per-pod states without what was served.
    pub fn from_entry(entry: ManifestEntry) -> Self {
        let pods: BTreeMap<String, PodView> = entry
            .rollout
            .iter()
            .filter_map(|(pod, state)| {
                let state = PodState::ALL.into_iter().find(|s| s.as_str() == state)?;
                let view = PodView {
                    state,
                    served_sha256: None,
                    served_not_after: None,
                };
                Some((pod.clone(), view))
            })
            .collect();
        PublicationStatus {
            verified: pods
                .values()
                .filter(|p| p.state == PodState::Verified)
                .count(),
            total: entry.rollout.len(),
            pods,
            entry,
        }
    }
}

impl From<Manifest> for StatusView {
    fn from(m: Manifest) -> Self {
        StatusView {
            gateway_namespace: m.gateway_namespace,
            mode: m.mode,
            generated_at: None,
            pods: Vec::new(),
            publications: m
                .publications
                .into_iter()
                .map(|e| PublicationStatus::from_entry(Arc::unwrap_or_clone(e)))
                .collect(),
            refusals: m.refusals,
            warnings: Vec::new(),
        }
    }
}

/// How `cert-sync status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableWidth {
    Normal,
    /// Adds serial, SDS resource and each lagging pod.
    Wide,
}

/// A kubectl-style table: one row per publication, then refused sources
/// that have nothing published, then warnings. `now` is Unix seconds.
pub fn render_table(view: &StatusView, width: TableWidth, now: i64) -> String {
    let wide = width == TableWidth::Wide;
    let mut header = vec![
        "SOURCE",
        "TARGET",
        "SHA256",
        "NOT-AFTER",
        "PODS",
        "STATE",
        "AGE",
    ];
    if wide {
        header.extend(["SERIAL", "SDS-RESOURCE", "DETAIL"]);
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for p in &view.publications {
        let e = &p.entry;
        let state = match (&e.kept, e.state.as_deref()) {
            (Some(reason), Some(s)) => format!("{s} (kept: {reason})"),
            (Some(reason), None) => format!("{PUBLISHED} (kept: {reason})"),
            (None, Some(s)) => s.to_owned(),
            (None, None) => PUBLISHED.to_owned(),
        };
        let mut row = vec![
            e.source.clone(),
            target(&e.target),
            e.sha256.short(),
            e.not_after.clone(),
            format!("{}/{}", p.verified, p.total),
            state,
            e.published_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or_else(|| "-".to_owned(), |t| age(now - t.as_second())),
        ];
        if wide {
            let lagging: Vec<String> = p
                .pods
                .iter()
                .filter(|(_, v)| v.state != PodState::Verified)
                .map(|(pod, v)| match v.served_sha256 {
                    Some(sha) => format!("{pod}={} ({})", v.state, sha.short()),
                    None => format!("{pod}={}", v.state),
                })
                .collect();
            row.extend([
                e.serial.clone(),
                e.sds_resource.clone(),
                if lagging.is_empty() {
                    "-".to_owned()
                } else {
                    lagging.join(",")
                },
            ]);
        }
        rows.push(row);
    }
    let published: std::collections::BTreeSet<&str> = view
        .publications
        .iter()
        .map(|p| p.entry.source.as_str())
        .collect();
    for r in &view.refusals {
        let source = r.subject.trim_start_matches("secret ");
        if published.contains(source) {
            continue;
        }
        let mut row = vec![
            source.to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            format!("Refused ({})", r.reason),
            "-".to_owned(),
        ];
        if wide {
            row.extend(["-".to_owned(), "-".to_owned(), r.message.clone()]);
        }
        rows.push(row);
    }
    let mut out = columns(&rows);
    let quiet: Vec<String> = view
        .pods
        .iter()
        .filter_map(|p| match p.reporting {
            Some(r @ (Reporting::FilterNotLoaded | Reporting::NotReporting)) => {
                Some(format!("  {}: {}", p.name, quiet_pod(r)))
            }
            _ => None,
        })
        .collect();
    if !quiet.is_empty() {
        out.push_str("\nSILENT GATEWAY PODS\n");
        out.push_str(&quiet.join("\n"));
        out.push('\n');
    }
    if !view.warnings.is_empty() {
        out.push_str("\nWARNINGS\n");
        for w in &view.warnings {
            let _ = writeln!(out, "  {:?}: {}", w.warning.kind, w.message);
        }
    }
    out
}

fn quiet_pod(r: Reporting) -> &'static str {
    match r {
        Reporting::FilterNotLoaded => {
            "FilterNotLoaded (never reported: the WasmPlugin's module was not fetched or did not start there)"
        }
        _ => "NotReporting (reported before, silent past the heartbeat window)",
    }
}

fn target(t: &TargetRef) -> String {
    match t {
        TargetRef::Credential { secret } => format!("secret/{secret}"),
        TargetRef::Merged {
            secret, cert_key, ..
        } => format!("secret/{secret}[{cert_key}]"),
        TargetRef::Directory { cert, .. } => cert.clone(),
        // Natively placed: the SDS name column says which; name the gateways.
        TargetRef::Referenced { by, .. } => format!("referenced by {}", by.join("; ")),
        TargetRef::MeshCa { secret, proof } => {
            format!("mesh CA secret/{secret} ({})", proof.as_str())
        }
    }
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Parses what `/v1/status` or the manifest ConfigMap holds.
pub fn parse(json: &str) -> Result<StatusView, super::error::CoreError> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    if value.get("publications").is_some() && value.get("version").is_some() {
        return Ok(manifest::parse(json)?.into());
    }
    Ok(serde_json::from_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rollout::WarningKind;
    use certsync_contract::Fingerprint;

    fn mk_publication(
        source: &str,
        rollout: &[(&str, &str)],
        kept: Option<&str>,
    ) -> Arc<ManifestEntry> {
        Arc::new(ManifestEntry {
            source: source.to_owned(),
            target: TargetRef::Credential {
                secret: source.replace('/', "."),
            },
            sds_resource: format!("kubernetes://{}", source.replace('/', ".")),
            sds_ca_resource: None,
            sha256: Fingerprint([0xab; 32]),
            serial: "0c".to_owned(),
            not_after: "2031-01-01T00:00:00Z".to_owned(),
            kept: kept.map(str::to_owned),
            published_at: Some("2030-01-01T00:00:00Z".to_owned()),
            converged_at: None,
            state: Some("Progressing".to_owned()),
            rollout: rollout
                .iter()
                .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
                .collect(),
        })
    }

    fn mk_view() -> StatusView {
        let manifest = Manifest {
            version: manifest::VERSION,
            gateway_namespace: "istio-system".to_owned(),
            mode: "credential".to_owned(),
            publications: vec![
                mk_publication("shop/tls", &[("gw-0", "Verified"), ("gw-1", "Stale")], None),
                mk_publication("blog/tls", &[("gw-0", "Verified")], Some("KeyMismatch")),
            ],
            refusals: Vec::new(),
        };
        let mut view = StatusView::from(manifest);
        view.refusals.push(RefusalView {
            subject: "secret bad/tls".to_owned(),
            reason: "Expired".to_owned(),
            message: "expired at 2020-01-01".to_owned(),
        });
        view.warnings.push(
            Warning {
                kind: WarningKind::Expiring,
                pod: "gw-0".to_owned(),
                resource: "kubernetes://shop.tls".to_owned(),
                sha256: Fingerprint([0xab; 32]),
                not_after: 1_900_000_000,
            }
            .into(),
        );
        view
    }

    #[test]
    fn silent_pods_are_listed_with_what_it_means() {
        let mut view = mk_view();
        let pod = |name: &str, reporting| PodSummary {
            name: name.to_owned(),
            ip: None,
            last_report: None,
            seq: None,
            certificates: 0,
            reporting: Some(reporting),
        };
        view.pods = vec![
            pod("gw-0", Reporting::Reporting),
            pod("gw-1", Reporting::FilterNotLoaded),
            pod("gw-2", Reporting::NotReporting),
            pod("gw-3", Reporting::Awaiting),
        ];
        let table = render_table(&view, TableWidth::Normal, 1_893_456_000);
        let section = table
            .split("SILENT GATEWAY PODS\n")
            .nth(1)
            .unwrap_or_default();
        let listed: Vec<&str> = section
            .lines()
            .take_while(|l| l.starts_with("  "))
            .collect();
        assert_eq!(listed.len(), 2, "{table}");
        assert!(listed[0].starts_with("  gw-1: FilterNotLoaded"), "{table}");
        assert!(listed[1].starts_with("  gw-2: NotReporting"), "{table}");
        // Everyone reporting: no section at all.
        view.pods.truncate(1);
        let table = render_table(&view, TableWidth::Normal, 1_893_456_000);
        assert!(!table.contains("SILENT"), "{table}");
        // JSON names the state.
        let json =
            serde_json::to_value(pod("gw-1", Reporting::FilterNotLoaded)).unwrap_or_default();
        assert_eq!(json["reporting"], "FilterNotLoaded");
    }

    #[test]
    fn the_table_reads_at_a_glance() {
        let now = 1_893_456_000 + 3 * 3600; // 3 h after publishing
        let table = render_table(&mk_view(), TableWidth::Normal, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SOURCE"), "{table}");
        assert!(
            lines[1].contains("shop/tls") && lines[1].contains("1/2"),
            "{table}"
        );
        assert!(lines[1].contains("abababababab"), "{table}");
        assert!(
            lines[1].contains("Progressing") && lines[1].ends_with("3h"),
            "{table}"
        );
        assert!(lines[2].contains("(kept: KeyMismatch)"), "{table}");
        assert!(
            lines[3].starts_with("bad/tls") && lines[3].contains("Refused (Expired)"),
            "{table}"
        );
        assert!(
            table.contains("WARNINGS\n  Expiring: pod gw-0 serves"),
            "{table}"
        );
        // Columns line up.
        let at = |l: &str| l.find("secret/").unwrap_or(0);
        assert_eq!(at(lines[1]), at(lines[2]));
    }

    #[test]
    fn wide_names_the_lagging_pods() {
        let table = render_table(&mk_view(), TableWidth::Wide, 0);
        assert!(table.contains("gw-1=Stale"), "{table}");
        assert!(!table.contains("gw-0=Verified"), "{table}");
        assert!(table.contains("kubernetes://shop.tls"), "{table}");
    }

    #[test]
    fn manifest_and_status_json_both_parse() {
        let view = mk_view();
        let json = serde_json::to_string(&view).unwrap_or_default();
        assert_eq!(parse(&json).ok(), Some(view));
        let manifest = Manifest {
            version: manifest::VERSION,
            gateway_namespace: "gw".to_owned(),
            mode: "merged".to_owned(),
            publications: vec![mk_publication("a/b", &[("p", "Missing")], None)],
            refusals: vec![RefusalView {
                subject: "secret bad/tls".to_owned(),
                reason: "Expired".to_owned(),
                message: "expired".to_owned(),
            }],
        };
        let rendered = manifest::render(&manifest).unwrap_or_default();
        let parsed = parse(&rendered[manifest::DATA_KEY]).ok();
        assert_eq!(
            parsed.map(|v| v.publications[0].pods["p"].state),
            Some(PodState::Missing)
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(5 * 3600), "5h");
        assert_eq!(age(10 * 86_400), "10d");
        assert_eq!(age(-3), "0s");
    }
}
