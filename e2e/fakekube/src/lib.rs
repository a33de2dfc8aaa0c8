//! An in-process fake Kubernetes API server for testing cert-sync.
//!
//! No API server or container runtime can run where cert-sync is built and
//! tested, so the controller is tested against this fake. It speaks the real
//! HTTP protocol kube-rs uses — typed URLs, `?watch=true` streams of
//! newline-delimited events, bookmarks, 410 Gone inside the stream,
//! paginated lists with continue tokens, metadata-only
//! (`PartialObjectMetadata`) responses, merge/JSON patches and server-side
//! apply with managedFields, optimistic concurrency — so tests exercise the
//! same client code a cluster would.
//!
//! Everything is in memory. Objects are stored as `serde_json::Value`, so
//! the fake is generic over resources; a [`Registry`] names the served
//! resources (cert-sync's set by default, more can be registered at
//! runtime). Tests can inspect what happened ([`FakeApiServer::requests`],
//! [`FakeApiServer::write_count`], [`FakeApiServer::traffic`]) and inject
//! faults (dropped watches, restarts, 409/429/500, latency) through Rust
//! methods or, for the standalone `fake-apiserver` binary, over HTTP under
//! `/__fake/…`.
//!
//! # HTTP fault and inspection API
//!
//! | method | path | body / query | effect |
//! |---|---|---|---|
//! | GET | `/__fake/health` | | `{"ok":true,"resourceVersion":N}` |
//! | GET, DELETE | `/__fake/requests` | | request log ([`RequestRecord`]s) / clear it |
//! | GET | `/__fake/traffic` | | [`Traffic`] per (verb, metadata-only) |
//! | GET | `/__fake/writes` | `resource`, `namespace`, `name` | `{"writes":N,"writeRequests":M}` |
//! | GET | `/__fake/evictions` | | [`EvictionRecord`]s |
//! | GET | `/__fake/watches` | | `{"open":N}` |
//! | POST, DELETE | `/__fake/faults` | a [`Fault`] as JSON | add (`{"id":N}`) / clear all |
//! | POST | `/__fake/drop-watches` | | end every open watch |
//! | POST | `/__fake/restart` | | [`FakeApiServer::restart`] |
//! | POST | `/__fake/compact` | `resourceVersion` | [`FakeApiServer::compact`] |
//! | POST | `/__fake/objects` | object, array, or List | [`FakeApiServer::put`] each |
//! | POST | `/__fake/resources` | a [`ResourceType`] as JSON | [`FakeApiServer::register`] |
//! | POST, DELETE | `/__fake/tokens` | a [`ServiceAccountToken`] as JSON | [`FakeApiServer::add_service_account_token`] / forget all |
//! | GET | `/__fake/token-reviews` | | [`TokenReviewRecord`]s |
//!
//! A fault as JSON: `{"match": {"verb": "update", "resource": "secrets",
//! "namespace": "istio-system", "name": "foo"}, "action": {"status":
//! {"code": 429, "retryAfter": 1}}, "times": 1}`, or `"action": {"latency":
//! {"millis": 200}}`, or `"action": {"write": {"object": {…}}}` (another
//! client's write landing just before the request); omitted `times` means
//! until cleared, `"skip": N` lets N matching requests through first.
//!
//! # Service account tokens
//!
//! `POST /apis/authentication.k8s.io/v1/tokenreviews` is answered for the
//! tokens a test registered ([`FakeApiServer::add_token`]), as a Vault or
//! OpenBao Kubernetes auth method needs: see [`ServiceAccountToken`] for the
//! audience rules. It is recorded like any request (verb `create`, resource
//! `tokenreviews.authentication.k8s.io`), faults apply to it, and
//! [`FakeApiServer::token_reviews`] also says who asked (the bearer token).
//!
//! # Deliberate simplifications
//!
//! Deletion is immediate (no finalizers or graceful deletion); strategic
//! merge patch is a JSON merge patch; SSA treats lists as atomic; a missing
//! namespace does not block creates; `dryRun` is refused with 400.
//!
//! ```no_run
//! # async fn demo() -> Result<(), certsync_fakekube::Error> {
//! use certsync_fakekube::{FakeApiServer, FaultMatch, Verb};
//! let fake = FakeApiServer::start().await?;
//! let client = fake.client()?;
//! fake.fail_next(1, 500, FaultMatch::object("secrets", "istio-system", "foo").verb(Verb::Update));
//! # drop(client);
//! # Ok(()) }
//! ```

mod admin;
mod api;
mod body;
mod discovery;
mod error;
mod faults;
mod http;
mod managed;
mod meta;
mod patch;
mod record;
mod registry;
mod selector;
mod store;
mod tokenreview;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::{ApiError, Error, StatusDetails};
pub use faults::{Fault, FaultAction, FaultMatch};
pub use managed::managers as field_managers;
pub use record::{RequestRecord, Traffic, Verb};
pub use registry::{Registry, ResourceType};
pub use store::EvictionRecord;
pub use tokenreview::{ServiceAccountToken, TokenReviewRecord, API_AUDIENCE};

use faults::FaultSet;
use record::Recorder;
use store::Store;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Events kept for watch replay and consistent paging; older
    /// resourceVersions get 410.
    pub event_log_capacity: usize,
    /// Request records kept.
    pub request_log_capacity: usize,
    /// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Served resources.
    pub registry: Registry,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            event_log_capacity: 10_000,
            request_log_capacity: 100_000,
            bookmark_interval: Duration::from_secs(10),
            registry: Registry::kubernetes(),
        }
    }
}

/// State shared by the handle, the HTTP front and the watch tasks.
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<FaultSet>,
    recorder: Mutex<Recorder>,
    tokens: Mutex<tokenreview::Tokens>,
    epoch: tokio::sync::watch::Sender<u64>,
    shutdown: tokio::sync::watch::Sender<bool>,
    open_watches: AtomicUsize,
    options: Options,
    addr: SocketAddr,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tokens(&self) -> MutexGuard<'_, tokenreview::Tokens> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drop_watches(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    fn restart(&self) {
        self.store().restart();
        self.drop_watches();
    }

    fn resolve(&self, resource: &str) -> Option<Arc<ResourceType>> {
        self.store().registry().resolve(resource)
    }

    fn write_count(&self, resource: &str, namespace: &str, name: &str) -> u64 {
        let Some(rt) = self.resolve(resource) else {
            return 0;
        };
        self.store()
            .write_count(&store::ObjKey::new(&rt, namespace, name))
    }

    fn write_requests(&self, resource: &str, namespace: &str, name: &str) -> u64 {
        let Some(rt) = self.resolve(resource) else {
            return 0;
        };
        let id = rt.id();
        let ns = rt.namespaced.then_some(namespace);
        self.recorder()
            .requests()
            .iter()
            .filter(|r| {
                r.verb.is_write()
                    && (200..300).contains(&r.status)
                    && r.resource.as_deref() == Some(id.as_str())
                    && r.namespace.as_deref() == ns
                    && r.name.as_deref() == Some(name)
            })
            .count() as u64
    }

    /// Puts an object, an array of objects, or a `List`.
    fn put_many(&self, v: Value) -> Result<usize, Error> {
        let items = match v {
            Value::Array(items) => items,
            Value::Object(ref o) if o.get("items").is_some_and(Value::is_array) => {
                match o.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => Vec::new(),
                }
            }
            other => vec![other],
        };
        let mut store = self.store();
        for item in &items {
            store.put_raw(item.clone())?;
        }
        Ok(items.len())
    }
}

/// A running fake API server. Dropping it shuts the server down.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server with default options on 127.0.0.1 and a free port.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server with the given options.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port)).await?;
        let addr = listener.local_addr()?;
        let (rv_tx, _) = tokio::sync::watch::channel(0);
        let (epoch, _) = tokio::sync::watch::channel(0);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(
                options.registry.clone(),
                options.event_log_capacity,
                rv_tx,
            )),
            faults: Mutex::new(FaultSet::default()),
            recorder: Mutex::new(Recorder::new(options.request_log_capacity)),
            tokens: Mutex::new(tokenreview::Tokens::default()),
            epoch,
            shutdown,
            open_watches: AtomicUsize::new(0),
            options,
            addr,
        });
        let task = tokio::spawn(http::serve(listener, shared.clone()));
        Ok(Self {
            shared,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kube `Config` for this server (plain HTTP, no auth, namespace
    /// `default`). Adjust it (e.g. `default_retry = false`) before building
    /// a client.
    pub fn config(&self) -> Result<kube::Config, Error> {
        Ok(kube::Config::new(self.url().parse()?))
    }

    /// A kube `Client` for this server. Must be called inside a Tokio runtime.
    pub fn client(&self) -> Result<kube::Client, Error> {
        Ok(kube::Client::try_from(self.config()?)?)
    }

    /// A kubeconfig (YAML) pointing at this server, for
    /// `kube::Client::try_default()` with `KUBECONFIG` set.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Writes [`Self::kubeconfig`] to a file.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig())?;
        Ok(())
    }

    /// Registers (or replaces) a resource type.
    pub fn register(&self, rt: ResourceType) {
        self.shared.store().registry_mut().register(rt);
    }

    /// Stores an object directly (create or replace by apiVersion/kind,
    /// namespace and name), bypassing HTTP and server-side rules (status is
    /// kept as given) but bumping the resourceVersion and notifying
    /// watchers. Returns the stored object.
    pub fn put(&self, obj: impl Serialize) -> Result<Value, Error> {
        let v = serde_json::to_value(obj)?;
        Ok((*self.shared.store().put_raw(v)?).clone())
    }

    /// Stores several objects (an array or a `List` value).
    pub fn put_all(&self, objects: Value) -> Result<usize, Error> {
        self.shared.put_many(objects)
    }

    /// One object, by resource (`secrets`, `leases.coordination.k8s.io`),
    /// namespace ("" for cluster-scoped) and name.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.shared.resolve(resource)?;
        self.shared
            .store()
            .get(&rt, namespace, name)
            .map(|v| (*v).clone())
    }

    /// All objects of a resource, optionally in one namespace.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(rt) = self.shared.resolve(resource) else {
            return Vec::new();
        };
        self.shared
            .store()
            .objects_of(&rt, namespace)
            .into_iter()
            .map(|v| (*v).clone())
            .collect()
    }

    /// Deletes an object directly; returns it if it existed.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.shared.resolve(resource)?;
        self.shared
            .store()
            .delete_raw(&rt, namespace, name)
            .map(|v| (*v).clone())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// The request log, oldest first (`/__fake` requests are not logged).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.recorder().requests()
    }

    /// Forgets the request log (counters are kept).
    pub fn clear_requests(&self) {
        self.shared.recorder().clear();
    }

    /// How many persisted changes (create, effective update/patch/apply,
    /// delete) an object has had, through HTTP or the direct helpers.
    /// No-op writes are not counted.
    pub fn write_count(&self, resource: &str, namespace: &str, name: &str) -> u64 {
        self.shared.write_count(resource, namespace, name)
    }

    /// How many successful mutating HTTP requests targeted an object by
    /// name, no-ops included (from the request log).
    pub fn write_requests(&self, resource: &str, namespace: &str, name: &str) -> u64 {
        self.shared.write_requests(resource, namespace, name)
    }

    /// Requests and bytes per (verb, metadata-only).
    pub fn traffic(&self) -> Vec<Traffic> {
        self.shared.recorder().traffic()
    }

    /// Response bytes served for one (verb, metadata-only) pair; watch
    /// bytes are counted as they are streamed.
    pub fn bytes_served(&self, verb: Verb, metadata_only: bool) -> u64 {
        self.shared.recorder().bytes(verb, metadata_only)
    }

    /// Pod evictions performed through `pods/<name>/eviction`.
    pub fn evictions(&self) -> Vec<EvictionRecord> {
        self.shared.store().evictions()
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` watches are open, up to `timeout`.
    pub async fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_watches() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Registers a service account token, good for the audiences in its
    /// JWT `aud` claim (else the API server's, [`API_AUDIENCE`]): a
    /// TokenReview of it authenticates
    /// `system:serviceaccount:<namespace>:<name>` with `uid`.
    pub fn add_token(&self, token: &str, namespace: &str, name: &str, uid: &str) {
        self.add_service_account_token(ServiceAccountToken::new(token, namespace, name, uid));
    }

    /// Registers (or replaces) a service account token.
    pub fn add_service_account_token(&self, token: ServiceAccountToken) {
        self.shared.tokens().add(token);
    }

    /// Forgets a token, as deleting its service account would; true if it
    /// was registered.
    pub fn remove_token(&self, token: &str) -> bool {
        self.shared.tokens().remove(token)
    }

    /// The TokenReviews answered, oldest first.
    pub fn token_reviews(&self) -> Vec<TokenReviewRecord> {
        self.shared.tokens().reviews()
    }

    /// Adds a fault; returns its id.
    pub fn inject(&self, fault: Fault) -> u64 {
        self.shared.faults().add(fault)
    }

    /// Removes one fault.
    pub fn remove_fault(&self, id: u64) {
        self.shared.faults().remove(id);
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Answers the next `k` matching requests with 429 and
    /// `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, k: u32, retry_after_secs: u64, matcher: FaultMatch) -> u64 {
        self.inject(Fault::throttle(retry_after_secs, matcher).times(k))
    }

    /// Answers the next `k` matching requests with `code` (500, 409, 503…).
    pub fn fail_next(&self, k: u32, code: u16, matcher: FaultMatch) -> u64 {
        self.inject(Fault::status(code, matcher).times(k))
    }

    /// Delays every matching request by `delay` until the fault is removed.
    pub fn add_latency(&self, delay: Duration, matcher: FaultMatch) -> u64 {
        self.inject(Fault::latency(delay, matcher))
    }

    /// Fails the next `verb` on one object once with `code`.
    pub fn fail_once(
        &self,
        verb: Verb,
        resource: &str,
        namespace: &str,
        name: &str,
        code: u16,
    ) -> u64 {
        self.fail_next(
            1,
            code,
            FaultMatch::object(resource, namespace, name).verb(verb),
        )
    }

    /// Ends every open watch stream now (cleanly, as a load balancer or an
    /// API server rollout would).
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// Simulates an API server restart over kept state: drops all watches
    /// and compacts all history, so every resourceVersion a client holds
    /// is answered with 410 and clients must relist.
    pub fn restart(&self) {
        self.shared.restart();
    }

    /// Compacts history up to `rv`: watches and continue tokens from older
    /// resourceVersions get 410.
    pub fn compact(&self, rv: u64) {
        self.shared.store().compact(rv);
    }

    /// Shuts the server down and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// A kubeconfig for a plain-HTTP server without authentication.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n\
         - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\n\
         users:\n\
         - name: fake\n  user: {{}}\n"
    )
}
