//! One reporter per pod, whatever Envoy's worker count.
//!
//! Every worker runs its own VM and root context, and every root context
//! ticks. They agree through shared data: a lease `"<holder> <expiry ms>"`
//! renewed by compare-and-swap. A holder that stops ticking loses the lease
//! after its TTL and another worker takes over.
//!
//! proxy-wasm's CAS is only atomic once the key exists (a write with no CAS
//! token is unconditional), so a claim made on an absent key is provisional:
//! the claimant acts only after renewing it by CAS on a later tick.

use crate::host::Host;

pub const LEASE_KEY: &str = "cert-sync/reporter-lease";

pub struct Lease {
    id: u64,
    ttl_ms: u64,
}

impl Lease {
    pub fn new(id: u64, ttl_ms: u64) -> Self {
        Lease { id, ttl_ms }
    }

    /// Claims or renews the lease; true when this context may report now.
    pub fn hold(&self, host: &impl Host, now_ms: u64) -> bool {
        let (value, cas) = host.shared_get(LEASE_KEY);
        let current = value.as_deref().and_then(parse);
        let free = match current {
            Some((holder, expiry)) => holder == self.id || expiry <= now_ms,
            None => true,
        };
        if !free {
            return false;
        }
        let claim = format!("{} {}", self.id, now_ms.saturating_add(self.ttl_ms));
        match cas {
            Some(cas) => host.shared_set(LEASE_KEY, claim.as_bytes(), Some(cas)),
            None => {
                host.shared_set(LEASE_KEY, claim.as_bytes(), None);
                false
            }
        }
    }
}

fn parse(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (holder, expiry) = text.split_once(' ')?;
    Some((holder.parse().ok()?, expiry.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, Shared};

    #[test]
    fn exactly_one_of_four_workers_holds_the_lease_every_tick() {
        let shared = Shared::default();
        let hosts: Vec<FakeHost> = (0..4).map(|_| FakeHost::new(&shared)).collect();
        let leases: Vec<Lease> = (1..=4).map(|id| Lease::new(id, 2_500)).collect();
        for tick in 0..20u64 {
            let now = tick * 1_000;
            let holders = hosts
                .iter()
                .zip(&leases)
                .filter(|(h, l)| l.hold(*h, now))
                .count();
            // The first tick only makes a provisional claim.
            assert_eq!(holders, usize::from(tick > 0), "tick {tick}");
        }
    }

    #[test]
    fn a_stalled_holder_is_replaced_after_the_ttl() {
        let shared = Shared::default();
        let (a, b) = (FakeHost::new(&shared), FakeHost::new(&shared));
        let (la, lb) = (Lease::new(1, 2_500), Lease::new(2, 2_500));
        assert!(!la.hold(&a, 0));
        assert!(la.hold(&a, 1_000));
        assert!(!lb.hold(&b, 2_000));
        // `a` stops ticking; its lease ran to 3_500.
        assert!(!lb.hold(&b, 3_000));
        assert!(lb.hold(&b, 4_000));
        assert!(!la.hold(&a, 4_500), "the old holder must not report again");
    }

    #[test]
    fn garbage_in_the_lease_key_is_taken_over() {
        let shared = Shared::default();
        let a = FakeHost::new(&shared);
        a.shared_set(LEASE_KEY, b"not a lease", None);
        assert!(Lease::new(9, 1_000).hold(&a, 5));
    }
}
