//! Intrusive doubly-linked lists over entry nodes (see `shard.rs`), shared by the list-based
//! policies. Front = newest, back = oldest.

/// "No node".
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// A bit the policy may keep per node (S3-FIFO: in the main queue),
    /// here so that it shares the links' cache line.
    flag: bool,
}

/// The links of every node (one pair per node), shared by all lists of
/// one policy: a node is in at most one list at a time.
#[derive(Debug, Default)]
pub(crate) struct Links {
    links: Vec<Link>,
}

impl Links {
    fn ensure(&mut self, idx: u32) {
        let need = idx as usize + 1;
        if self.links.len() < need {
            self.links.resize(
                need,
                Link {
                    prev: NIL,
                    next: NIL,
                    flag: false,
                },
            );
        }
    }

    /// The policy's bit for `idx` (false for a node never linked).
    pub(crate) fn flag(&self, idx: u32) -> bool {
        self.links.get(idx as usize).is_some_and(|l| l.flag)
    }

    /// Sets the policy's bit for `idx`.
    pub(crate) fn set_flag(&mut self, idx: u32, flag: bool) {
        self.ensure(idx);
        self.links[idx as usize].flag = flag;
    }

    /// Clears every node's bit.
    pub(crate) fn clear_flags(&mut self) {
        self.links.iter_mut().for_each(|l| l.flag = false);
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
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The oldest node.
    pub(crate) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

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
