//! Heap accounting for `bytes_per_entry`: the process allocates through a
//! counting wrapper around the system allocator (crate `cap`).
//!
//! The wrapper adds one relaxed atomic add per allocation and free; every
//! implementation in a suite pays it alike.

use std::alloc::System;

use cap::Cap;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes currently allocated on the heap by the whole process.
pub(crate) fn allocated() -> usize {
    ALLOCATOR.allocated()
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
