//! Intrusive doubly-linked lists over entry nodes (see `shard.rs`), shared by the list-based
//! policies. Front = newest, back = oldest.
//!
//! A node's record also holds the table bucket of its entry, for the shard:
//! an eviction reads the victim's links and reaches its entry through the
//! same cache line.

/// "No node".
pub(crate) const NIL: u32 = u32::MAX;

/// One node's record, 16 bytes and aligned to them, so that it never
/// straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(16))]
struct Link {
    prev: u32,
    next: u32,
    /// The table bucket holding the node's entry (kept by the shard).
    bucket: u32,
    /// A bit the policy may keep per node (S3-FIFO: in the main queue),
    /// here so that it shares the links' cache line.
    flag: bool,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    bucket: 0,
    flag: false,
};

/// The record of every node: its links, shared by all lists of the
/// policy (a node is in at most one list at a time), and its entry's
/// bucket.
#[derive(Debug, Default)]
pub(crate) struct Links {
    links: Vec<Link>,
}

impl Links {
    #[inline]
    fn ensure(&mut self, idx: u32) {
        if self.links.len() <= idx as usize {
            self.grow(idx);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, idx: u32) {
        self.links.resize(idx as usize + 1, UNLINKED);
    }

    /// The table bucket recorded for `idx` (`None` for a node never
    /// recorded).
    #[inline]
    pub(crate) fn bucket(&self, idx: u32) -> Option<u32> {
        self.links.get(idx as usize).map(|l| l.bucket)
    }

    /// Records the table bucket of `idx`'s entry.
    #[inline]
    pub(crate) fn set_bucket(&mut self, idx: u32, bucket: u32) {
        self.ensure(idx);
        self.links[idx as usize].bucket = bucket;
    }

    /// Forgets every node (links, bits and buckets).
    pub(crate) fn clear(&mut self) {
        self.links.clear();
    }

    /// The policy's bit for `idx` (false for a node never linked).
    #[inline]
    pub(crate) fn flag(&self, idx: u32) -> bool {
        self.links.get(idx as usize).is_some_and(|l| l.flag)
    }

    /// Sets the policy's bit for `idx`.
    #[inline]
    pub(crate) fn set_flag(&mut self, idx: u32, flag: bool) {
        self.ensure(idx);
        self.links[idx as usize].flag = flag;
    }
}

/// One list threaded through [`Links`].
#[derive(Debug)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The oldest node.
    #[inline]
    pub(crate) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    #[inline]
    pub(crate) fn push_front(&mut self, links: &mut Links, idx: u32) {
        links.ensure(idx);
        let link = &mut links.links[idx as usize];
        link.prev = NIL;
        link.next = self.head;
        if self.head != NIL {
            links.links[self.head as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Unlinks `idx`, which must be in this list.
    #[inline]
    pub(crate) fn remove(&mut self, links: &mut Links, idx: u32) {
        let Link { prev, next, .. } = links.links[idx as usize];
        if prev != NIL {
            links.links[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            links.links[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.len -= 1;
    }

    #[inline]
    pub(crate) fn move_to_front(&mut self, links: &mut Links, idx: u32) {
        if self.head != idx {
            self.remove(links, idx);
            self.push_front(links, idx);
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}
