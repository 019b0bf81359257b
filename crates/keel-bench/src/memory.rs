//! Heap accounting for `bytes_per_entry` and `bytes_per_conn`: the process
//! allocates through a counting wrapper around the system allocator (crate
//! `cap`).
//!
//! Counting adds one atomic read-modify-write per allocation and free, a
//! tax on whichever side allocates more. It is on from the start and can
//! be turned off, once and for good, with [`stop_counting`]: after that
//! every call goes straight to the system allocator behind one relaxed
//! load. Suites that do not measure memory but allocate on their hot path
//! (`cache`'s timed cases, `log`, `queue`) run in a child process that
//! stops counting first thing (`suites::child`).
//!
//! The only module of the crate with `unsafe` code: a global allocator is
//! unsafe to implement by definition.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use cap::Cap;

/// The system allocator, counted while [`COUNTING`] holds.
struct Switchable {
    counted: Cap<System>,
}

/// Whether allocations go through the counter. It only ever goes from
/// `true` to `false`: a block allocated uncounted is never freed counted,
/// so the count can go stale but never wrap.
static COUNTING: AtomicBool = AtomicBool::new(true);

#[global_allocator]
static ALLOCATOR: Switchable = Switchable {
    counted: Cap::new(System, usize::MAX),
};

// SAFETY: every method forwards to `System`, directly or through `Cap`
// (which calls `System` and keeps a counter beside it), so the contract is
// `System`'s. A block counted when allocated may be freed uncounted (never
// the other way round, `COUNTING` only goes to `false`): both paths free it
// with `System`, and the counter only goes stale.
unsafe impl GlobalAlloc for Switchable {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { self.counted.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
            unsafe { self.counted.alloc_zeroed(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
            unsafe { self.counted.dealloc(ptr, layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            unsafe { self.counted.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

/// Bytes currently allocated on the heap by the whole process (stale once
/// [`stop_counting`] has run).
pub(crate) fn allocated() -> usize {
    ALLOCATOR.counted.allocated()
}

/// Sends every later allocation and free straight to the system allocator,
/// for the rest of the process.
pub(crate) fn stop_counting() {
    COUNTING.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_live_allocation() {
        let before = allocated();
        let block = vec![0u8; 64 << 20];
        let during = allocated();
        drop(block);
        // Other test threads allocate and free a few MiB meanwhile.
        assert!(during >= before + (48 << 20), "{before} -> {during}");
        assert!(during <= before + (80 << 20), "{before} -> {during}");
    }
}
