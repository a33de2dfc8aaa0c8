//! What the fake saw: a log of API requests and byte counters.
//!
//! Controller tests assert on behaviour that only shows on the wire: how
//! many writes a reconcile made, which field manager it used, whether it
//! relisted after a 410, how many bytes a metadata-only watch saves over a
//! full one. The log is bounded (oldest records dropped first); the
//! counters are not.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// The API verb of a request, as the API server's audit log names it, with
/// server-side apply split out of `patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// GET of one object (or its `/status`).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST (including subresources such as `pods/eviction`).
    Create,
    /// PUT.
    Update,
    /// PATCH with a merge, strategic merge or JSON patch.
    Patch,
    /// PATCH with `application/apply-patch+yaml` (server-side apply).
    Apply,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    #[serde(rename = "deletecollection")]
    DeleteCollection,
    /// `/api`, `/apis`, `/version` and group discovery.
    Discovery,
}

impl Verb {
    /// True for verbs that change state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create
                | Verb::Update
                | Verb::Patch
                | Verb::Apply
                | Verb::Delete
                | Verb::DeleteCollection
        )
    }
}

/// One API request as the fake handled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// API verb.
    pub verb: Verb,
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Resource id (`secrets`, `leases.coordination.k8s.io`), if any.
    pub resource: Option<String>,
    /// Subresource (`status`, `eviction`), if any.
    pub subresource: Option<String>,
    /// Namespace from the URL, if any.
    pub namespace: Option<String>,
    /// Object name from the URL, if any.
    pub name: Option<String>,
    /// `fieldManager` query parameter, if any.
    pub field_manager: Option<String>,
    /// The client asked for `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// HTTP status code sent.
    pub status: u16,
    /// The response came from an injected fault.
    pub injected: bool,
    /// Response body bytes (for a watch: 0 here, see the traffic counters).
    pub bytes: u64,
    /// Request body bytes (what a client wrote).
    #[serde(default)]
    pub request_bytes: u64,
}

/// Requests and response bytes for one (verb, metadata-only) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// Verb.
    pub verb: Option<Verb>,
    /// Metadata-only responses.
    pub metadata_only: bool,
    /// Number of requests.
    pub requests: u64,
    /// Response body bytes served (watch bytes counted as streamed).
    pub bytes: u64,
    /// Request body bytes received.
    #[serde(default)]
    pub request_bytes: u64,
}

/// Request log plus counters.
#[derive(Debug)]
pub struct Recorder {
    log: VecDeque<RequestRecord>,
    capacity: usize,
    seq: u64,
    traffic: BTreeMap<(Verb, bool), Traffic>,
}

impl Recorder {
    /// A recorder keeping at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            log: VecDeque::new(),
            capacity: capacity.max(1),
            seq: 0,
            traffic: BTreeMap::new(),
        }
    }

    /// Appends a record (assigning its sequence number) and counts it.
    pub fn record(&mut self, mut r: RequestRecord) {
        self.seq += 1;
        r.seq = self.seq;
        let t = self.slot(r.verb, r.metadata_only);
        t.requests += 1;
        t.bytes += r.bytes;
        t.request_bytes += r.request_bytes;
        self.log.push_back(r);
        while self.log.len() > self.capacity {
            self.log.pop_front();
        }
    }

    /// Adds streamed bytes (watch events) to a counter.
    pub fn add_bytes(&mut self, verb: Verb, metadata_only: bool, bytes: u64) {
        self.slot(verb, metadata_only).bytes += bytes;
    }

    fn slot(&mut self, verb: Verb, metadata_only: bool) -> &mut Traffic {
        self.traffic
            .entry((verb, metadata_only))
            .or_insert(Traffic {
                verb: Some(verb),
                metadata_only,
                requests: 0,
                bytes: 0,
                request_bytes: 0,
            })
    }

    /// The retained records, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.iter().cloned().collect()
    }

    /// Forgets the records (counters are kept).
    pub fn clear(&mut self) {
        self.log.clear();
    }

    /// All counters.
    pub fn traffic(&self) -> Vec<Traffic> {
        self.traffic.values().copied().collect()
    }

    /// Bytes served for one (verb, metadata-only) pair.
    pub fn bytes(&self, verb: Verb, metadata_only: bool) -> u64 {
        self.traffic
            .get(&(verb, metadata_only))
            .map_or(0, |t| t.bytes)
    }
}
