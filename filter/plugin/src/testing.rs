//! The native test double for `Host`: a manual clock, shared data with real
//! CAS semantics (shared between fakes, like Envoy's VMs), and records of
//! calls, metrics and logs for assertions.

use crate::host::{Host, Level};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Shared data: key → (value, CAS token).
type SharedData = Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>;

/// State every worker of one fake Envoy shares: clock and shared data.
#[derive(Clone, Default)]
pub struct Shared {
    now: Rc<Cell<u64>>,
    data: SharedData,
    next_token: Rc<Cell<u32>>,
}

impl Shared {
    pub fn set_now(&self, ms: u64) {
        self.now.set(ms);
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }
}

pub struct FakeHost {
    shared: Shared,
    pub calls: RefCell<Vec<Call>>,
    pub gauges: HashMap<String, u64>,
    pub counters: HashMap<String, u64>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub properties: HashMap<String, String>,
    pub refuse_calls: Cell<bool>,
}

impl FakeHost {
    pub fn new(shared: &Shared) -> Self {
        FakeHost {
            shared: shared.clone(),
            calls: RefCell::default(),
            gauges: HashMap::new(),
            counters: HashMap::new(),
            logs: RefCell::default(),
            properties: HashMap::new(),
            refuse_calls: Cell::new(false),
        }
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.shared.now.get()
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, String> {
        if self.refuse_calls.get() {
            return Err(format!("cluster {cluster} not found"));
        }
        let token = self.shared.next_token.get() + 1;
        self.shared.next_token.set(token);
        self.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(token)
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut data = self.shared.data.borrow_mut();
        let current = data.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(actual)) = (cas, current) {
            if expected != actual {
                return false;
            }
        }
        data.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }

    fn set_gauge(&mut self, name: &str, value: u64) {
        self.gauges.insert(name.to_owned(), value);
    }

    fn add_counter(&mut self, name: &str, delta: u64) {
        *self.counters.entry(name.to_owned()).or_default() += delta;
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn property(&self, path: &[&str]) -> Option<String> {
        self.properties.get(&path.join(".")).cloned()
    }
}
