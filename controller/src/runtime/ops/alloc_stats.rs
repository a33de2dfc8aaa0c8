//! Measurement aid, built only with the `alloc-stats` feature: a global
//! allocator that counts live heap bytes, and a thread that prints the
//! count (and its high-water mark) to stderr every 10 ms, so a memory
//! peak can be placed against the log of what the controller was doing.
//!
//! ```text
//! cargo build --release -p cert-sync --features alloc-stats
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts the reporting thread (once).
pub fn report() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            let mut last = 0;
            loop {
                let live = LIVE.load(Ordering::Relaxed);
                if live.abs_diff(last) > 256 * 1024 {
                    let peak = PEAK.load(Ordering::Relaxed);
                    eprintln!(
                        "alloc-stats {} live_kib={} peak_kib={}",
                        jiff::Timestamp::now(),
                        live / 1024,
                        peak / 1024
                    );
                    last = live;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    });
}
