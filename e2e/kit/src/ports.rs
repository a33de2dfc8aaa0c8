//! Free loopback ports for Envoy's listeners.
//!
//! Envoy needs its ports written into the bootstrap before it starts (the
//! admin port also appears as the `cert-sync-admin` cluster), so they cannot
//! be left to the kernel at bind time. We ask the kernel for a free port by
//! binding `127.0.0.1:0` and release it; the small window until Envoy binds is
//! narrowed further by never handing out the same port twice in one process,
//! which is what matters when tests start several Envoys in parallel.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A currently free TCP port on 127.0.0.1 not returned before by this process.
pub fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding 127.0.0.1:0 to find a free port")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let mut seen = handed_out()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(port) {
            return Ok(port);
        }
    }
    bail!("could not find a free port on 127.0.0.1 not already handed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0])).unwrap();
    }
}
