//! The allocator of the shards' hash tables.
//!
//! A hit reads one table slot at a random place; in a table of tens of
//! megabytes almost every such read also misses the TLB, and the page walk
//! costs about as much as the memory access itself. Tables of at least
//! [`HUGE_PAGE`] bytes are therefore aligned to it and, on Linux, marked for
//! transparent huge pages (`madvise(MADV_HUGEPAGE)`), so the table's pages
//! are few enough to stay in the TLB. The advice is a hint: where huge pages
//! are off or unavailable the memory is ordinary. Smaller tables come from
//! the global allocator, aligned to a cache line.
//!
//! The only module of the crate with `unsafe` code: an allocator is unsafe
//! to implement by definition.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// The size (and alignment) of a transparent huge page on x86-64 and most
/// aarch64 systems.
const HUGE_PAGE: usize = 2 << 20;
/// The smallest table that gets huge pages.
pub(crate) const HUGE_TABLE: usize = HUGE_PAGE;
/// A cache line on the CPUs this matters for.
const CACHE_LINE: usize = 64;

/// Allocates big tables on huge-page boundaries with the huge-page hint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TableAlloc;

impl TableAlloc {
    /// The layout actually allocated for `layout` if it is big enough for
    /// huge pages. Depends only on `layout`, so freeing finds the same one.
    fn huge(layout: Layout) -> Option<Layout> {
        if layout.size() < HUGE_TABLE {
            return None;
        }
        Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).ok()
    }

    /// The layout allocated for a table too small for huge pages: aligned
    /// to a cache line, so that where a line holds a whole number of slots
    /// (16, 32 or 64 bytes each) no slot straddles two lines.
    fn lined(layout: Layout) -> Layout {
        layout.align_to(CACHE_LINE).unwrap_or(layout)
    }
}

// SAFETY: blocks come from the global allocator, with a layout that
// `deallocate` recomputes from the caller's layout; they stay valid until
// freed and `TableAlloc` has no state, so its copies are interchangeable.
unsafe impl Allocator for TableAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let Some(huge) = Self::huge(layout) else {
            let block = Global.allocate(Self::lined(layout))?;
            return Ok(NonNull::slice_from_raw_parts(block.cast(), layout.size()));
        };
        // SAFETY: `huge` has a non-zero size (at least `HUGE_PAGE`).
        let ptr = NonNull::new(unsafe { std::alloc::alloc(huge) }).ok_or(AllocError)?;
        #[cfg(target_os = "linux")]
        // SAFETY: the range is the block just allocated, starting on a page
        // boundary; the advice changes no contents. Its result is ignored:
        // without huge pages the memory works the same.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), huge.size(), libc::MADV_HUGEPAGE);
        }
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        match Self::huge(layout) {
            // SAFETY: `ptr` came from `allocate` with this same layout.
            Some(huge) => unsafe { std::alloc::dealloc(ptr.as_ptr(), huge) },
            // SAFETY: as above, from the global allocator.
            None => unsafe { Global.deallocate(ptr, Self::lined(layout)) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_blocks_are_aligned_to_huge_pages_and_small_ones_to_cache_lines() {
        for size in [64, 4096, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 17] {
            let layout = Layout::from_size_align(size, 16).expect("a valid layout");
            let block = TableAlloc.allocate(layout).expect("memory");
            assert_eq!(block.len(), size);
            let ptr = block.cast::<u8>();
            if size >= HUGE_PAGE {
                assert_eq!(ptr.as_ptr() as usize % HUGE_PAGE, 0, "{size}");
            } else {
                assert_eq!(ptr.as_ptr() as usize % CACHE_LINE, 0, "{size}");
            }
            // The whole block is writable.
            // SAFETY: the block is `size` bytes long and ours.
            unsafe {
                ptr.as_ptr().write_bytes(0xA5, size);
                assert_eq!(*ptr.as_ptr().add(size - 1), 0xA5);
                TableAlloc.deallocate(ptr, layout);
            }
        }
    }
}
