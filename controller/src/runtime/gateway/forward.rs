//! Reports that land on a standby go on to the leader in the same request.
//!
//! The gateways post to the controller's Service, which spreads connections
//! over every replica; only the leader acts on reports. Rather than answer
//! 503 and leave the report to the filter's retry (seconds later, and only
//! if the new connection happens to reach the leader), a standby passes the
//! report on and returns the leader's answer:
//!
//! ```text
//!  filter ──POST──▶ Service ──▶ standby ──POST + forwarded-for + key──▶ leader
//!                                  │  ◀──────────── 204 / 4xx ────────────┘
//!                                  └─ keeps the report too (a leader change loses none)
//! ```
//!
//! The leader learns who the gateway pod was from `x-certsync-forwarded-for`
//! — which it believes only with the forward key, a random value the leader
//! wrote on its Lease. Gateway pods cannot read Leases (they have no RBAC in
//! the controller's namespace), so they cannot claim another pod's address;
//! every other check (token, live pod, sequence) the leader makes itself.
//! Where the leader has no address (no `POD_IP`), or forwarding fails, the
//! standby answers 503 as before and the filter retries.

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;

/// The gateway pod's address, as the standby saw it.
pub const FORWARDED_FOR: &str = "x-certsync-forwarded-for";
/// The leader's forward key, proving a replica sent the request.
pub const FORWARD_KEY: &str = "x-certsync-forward-key";
/// Lease annotations the leader writes: where it takes reports, and its key.
pub const LEASE_ADDRESS: &str = "certsync.istio.io/leader-address";
pub const LEASE_FORWARD_KEY: &str = "certsync.istio.io/forward-key";
/// A forward is a hop inside the cluster; past this the filter's retry is
/// the better path.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A replica as the Lease names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub identity: String,
    /// `host:port` where it takes reports.
    pub address: String,
    pub key: String,
}

impl Endpoint {
    /// This replica, with a fresh random key.
    pub fn own(identity: &str, address: String) -> std::io::Result<Endpoint> {
        Ok(Endpoint {
            identity: identity.to_owned(),
            address,
            key: random_key()?,
        })
    }
}

impl Endpoint {
    /// Writes this endpoint on the Lease's metadata (the leader's record).
    pub fn stamp(&self, meta: &mut ObjectMeta) {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.insert(LEASE_ADDRESS.to_owned(), self.address.clone());
        annotations.insert(LEASE_FORWARD_KEY.to_owned(), self.key.clone());
    }

    /// The Lease holder's endpoint, when it wrote one.
    pub fn of_holder(holder: Option<&str>, meta: &ObjectMeta) -> Option<Endpoint> {
        let identity = holder.filter(|h| !h.is_empty())?.to_owned();
        let annotations = meta.annotations.as_ref()?;
        Some(Endpoint {
            identity,
            address: annotations.get(LEASE_ADDRESS)?.clone(),
            key: annotations.get(LEASE_FORWARD_KEY)?.clone(),
        })
    }
}

/// 32 bytes from the kernel's CSPRNG, hex.
fn random_key() -> std::io::Result<String> {
    use std::fmt::Write as _;
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Forwards reports to the leader and recognises forwarded ones.
pub struct Forwarder {
    own: Endpoint,
    /// The leader, as this replica last read the Lease.
    leader: watch::Receiver<Option<Endpoint>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What forwarding a report gave.
#[derive(Debug)]
pub enum Forwarded {
    /// The leader's answer.
    Answered(StatusCode, Bytes),
    /// No leader known, or it is us, or it could not be reached.
    NotForwarded(String),
}

impl Forwarder {
    pub fn new(own: Endpoint, leader: watch::Receiver<Option<Endpoint>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(FORWARD_TIMEOUT));
        // Kept-alive connections: a forward costs one round trip.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Forwarder {
            own,
            leader,
            client,
        }
    }

    /// The key this replica wrote on the Lease (when it leads).
    pub fn own_key(&self) -> &str {
        &self.own.key
    }

    /// The gateway pod's address of a forwarded request: `Some` only when
    /// the request carries this replica's own key.
    pub fn forwarded_for(&self, key: Option<&str>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let key = key?;
        if !constant_time_eq(key.as_bytes(), self.own.key.as_bytes()) {
            return None;
        }
        forwarded_for?.trim().parse().ok()
    }

    /// Sends the report to the leader the Lease names.
    pub async fn forward(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
        body: Bytes,
    ) -> Forwarded {
        let leader = self.leader.borrow().clone();
        let Some(leader) = leader.filter(|l| l.identity != self.own.identity) else {
            return Forwarded::NotForwarded("no other leader known".into());
        };
        let Some(peer) = peer else {
            return Forwarded::NotForwarded("no peer address".into());
        };
        let uri = format!(
            "http://{}{}",
            leader.address,
            certsync_contract::report::REPORT_PATH
        );
        let mut request = Request::post(uri)
            .header(FORWARDED_FOR, peer.to_string())
            .header(FORWARD_KEY, &leader.key);
        if let Some(a) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, a);
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Forwarded::NotForwarded(e.to_string()),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => Forwarded::Answered(status, body),
            Ok(Err(e)) => Forwarded::NotForwarded(format!("{}: {e}", leader.address)),
            Err(_) => Forwarded::NotForwarded(format!("{}: no answer in time", leader.address)),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_forwarder() -> Forwarder {
        let own = Endpoint {
            identity: "replica-a".into(),
            address: "10.0.0.1:8080".into(),
            key: "k".repeat(64),
        };
        Forwarder::new(own, watch::channel(None).1)
    }

    #[test]
    fn a_forwarded_address_is_believed_only_with_the_key() {
        let f = mk_forwarder();
        let key = "k".repeat(64);
        assert_eq!(
            f.forwarded_for(Some(&key), Some("10.1.2.3")),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(f.forwarded_for(None, Some("10.1.2.3")), None);
        assert_eq!(f.forwarded_for(Some("guess"), Some("10.1.2.3")), None);
        assert_eq!(f.forwarded_for(Some(&key), Some("not an ip")), None);
        assert_eq!(f.forwarded_for(Some(&key), None), None);
    }

    #[test]
    fn the_lease_carries_the_holders_endpoint() {
        let own = Endpoint {
            identity: "replica-a".into(),
            address: "10.0.0.1:8080".into(),
            key: "k".repeat(64),
        };
        let mut meta = ObjectMeta::default();
        own.stamp(&mut meta);
        assert_eq!(Endpoint::of_holder(Some("replica-a"), &meta), Some(own));
        // Released (no holder), or a holder that wrote none: nobody to forward to.
        assert_eq!(Endpoint::of_holder(None, &meta), None);
        assert_eq!(Endpoint::of_holder(Some(""), &meta), None);
        assert_eq!(Endpoint::of_holder(Some("b"), &ObjectMeta::default()), None);
    }

    #[test]
    fn keys_are_random_and_long() {
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn without_another_leader_nothing_is_forwarded() {
        let f = mk_forwarder();
        let peer = Some("10.1.2.3".parse().unwrap());
        assert!(matches!(
            f.forward(None, peer, Bytes::new()).await,
            Forwarded::NotForwarded(_)
        ));
    }
}
