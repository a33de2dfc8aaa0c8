//! Hands freed heap pages back to the kernel after a burst of work.
//!
//! glibc's malloc keeps freed memory mapped for reuse. A reconcile makes
//! thousands of short-lived allocations between the stores' long-lived
//! ones, and what it frees stays resident in holes the stores pin: measured
//! at 10,000 Secrets, resident memory crept 1.5 MiB above the live heap over
//! 100 updates. `malloc_trim(0)` releases every whole free page, so resident
//! memory follows what the controller actually holds. It costs a walk of
//! the free lists (well under a millisecond here), once per reconcile pass.
//!
//! Large buffers (list pages, the manifest's apply body, the vectors of a
//! pass over a thousand sources) are better not in that heap at all: glibc
//! raises its mmap threshold each time such a buffer is freed, after which
//! the next one lands in the heap and leaves a hole. [`configure`] pins the
//! threshold, so anything from 64 KiB up is mapped and unmapped on its own.

/// Sets the allocator up for a long-running controller; call it first
/// thing in `main` (glibc only; elsewhere a no-op).
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Allocations from this size up get their own mapping.
        const MMAP_THRESHOLD: libc::c_int = 64 * 1024;
        // SAFETY: mallopt only sets a tunable of the allocator; a rejected
        // value leaves the default in place, which is still correct.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Releases whole free pages of the heap (glibc only; elsewhere a no-op).
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer from us; it only walks and
    // madvises the allocator's own free chunks, and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
