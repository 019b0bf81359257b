//! Offline hit-ratio references: an exact LRU (`lru-exact`), an exact FIFO
//! (`fifo-exact`) and Belady's optimum (`belady`), the ceiling no online
//! policy can pass.
//!
//! Both are written for obviousness, not speed: ordered maps instead of
//! intrusive lists.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// Marks "never accessed again" in a [`next_use`] array.
pub(crate) const NEVER: usize = usize::MAX;

/// Hits of an exact LRU cache holding `capacity` entries over `trace`.
pub(crate) fn lru_hits(trace: &[u64], capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let mut last_use: HashMap<u64, usize> = HashMap::with_capacity(capacity + 1);
    let mut by_age: BTreeMap<usize, u64> = BTreeMap::new();
    let mut hits = 0;
    for (now, &key) in trace.iter().enumerate() {
        if let Some(then) = last_use.get_mut(&key) {
            hits += 1;
            by_age.remove(then);
            *then = now;
        } else {
            if last_use.len() == capacity
                && let Some((_, victim)) = by_age.pop_first()
            {
                last_use.remove(&victim);
            }
            last_use.insert(key, now);
        }
        by_age.insert(now, key);
    }
    hits
}

/// Hits of an exact FIFO cache holding `capacity` entries over `trace`: a
/// hit changes nothing; a miss admits the key and, when full, evicts the
/// key admitted longest ago.
pub(crate) fn fifo_hits(trace: &[u64], capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let mut cached: HashSet<u64> = HashSet::with_capacity(capacity + 1);
    let mut order: VecDeque<u64> = VecDeque::with_capacity(capacity + 1);
    let mut hits = 0;
    for &key in trace {
        if cached.contains(&key) {
            hits += 1;
            continue;
        }
        if cached.len() == capacity
            && let Some(victim) = order.pop_front()
        {
            cached.remove(&victim);
        }
        cached.insert(key);
        order.push_back(key);
    }
    hits
}

/// For each position, the position of the next access to the same key, or
/// [`NEVER`].
pub(crate) fn next_use(trace: &[u64]) -> Vec<usize> {
    let mut next = vec![NEVER; trace.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, key) in trace.iter().enumerate().rev() {
        if let Some(later) = seen.insert(*key, i) {
            next[i] = later;
        }
    }
    next
}

/// Hits of Belady's optimal offline cache of `capacity` entries: on a miss
/// it keeps the `capacity` keys whose next access comes soonest, which may
/// mean not admitting the missed key at all. `next` is [`next_use`]`(trace)`.
pub(crate) fn belady_hits(trace: &[u64], next: &[usize], capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    // key -> position of its next access; the same pairs, ordered by it.
    let mut cached: HashMap<u64, usize> = HashMap::with_capacity(capacity + 1);
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut hits = 0;
    for (now, (&key, &upcoming)) in trace.iter().zip(next).enumerate() {
        if let Some(at) = cached.get_mut(&key) {
            hits += 1;
            by_next.remove(&(*at, key));
            *at = upcoming;
            by_next.insert((upcoming, key));
            continue;
        }
        debug_assert!(upcoming > now);
        if upcoming == NEVER {
            continue;
        }
        if cached.len() == capacity {
            match by_next.last() {
                Some(&(farthest, victim)) if farthest > upcoming => {
                    by_next.pop_last();
                    cached.remove(&victim);
                }
                _ => continue,
            }
        }
        cached.insert(key, upcoming);
        by_next.insert((upcoming, key));
    }
    hits
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        // Capacity 2: only the second 1 hits; 3, 2, 1, 3 each evict the key needed next.
        let trace = [1, 2, 1, 3, 2, 1, 3];
        assert_eq!(lru_hits(&trace, 2), 1);
        assert_eq!(lru_hits(&trace, 3), 4);
        assert_eq!(lru_hits(&trace, 0), 0);
    }

    #[test]
    fn fifo_evicts_the_oldest_admitted_even_if_it_was_hit() {
        // Capacity 2: 1 hits, then 3 evicts 1 (admitted first) despite the hit.
        let trace = [1, 2, 1, 3, 1, 2];
        assert_eq!(fifo_hits(&trace, 2), 1);
        assert_eq!(lru_hits(&trace, 2), 2);
        assert_eq!(fifo_hits(&trace, 3), 3);
        assert_eq!(fifo_hits(&trace, 0), 0);
    }

    #[test]
    fn next_use_points_at_the_next_access() {
        assert_eq!(next_use(&[5, 6, 5, 5]), vec![2, NEVER, 3, NEVER]);
    }

    #[test]
    fn belady_beats_lru_on_a_loop() {
        // A loop one larger than the cache: LRU never hits, the optimum does.
        let trace: Vec<u64> = (0..10).flat_map(|_| 0..4u64).collect();
        assert_eq!(lru_hits(&trace, 3), 0);
        assert!(belady_hits(&trace, &next_use(&trace), 3) >= 20);
    }

    /// The best hit count any offline policy (with bypass) can get, by trying
    /// every choice.
    fn brute_force(trace: &[u64], capacity: usize, cached: &mut Vec<u64>) -> u64 {
        let Some((&key, rest)) = trace.split_first() else {
            return 0;
        };
        if cached.contains(&key) {
            return 1 + brute_force(rest, capacity, cached);
        }
        let mut best = brute_force(rest, capacity, cached); // bypass
        if cached.len() < capacity {
            cached.push(key);
            best = best.max(brute_force(rest, capacity, cached));
            cached.pop();
        } else {
            for i in 0..cached.len() {
                let victim = std::mem::replace(&mut cached[i], key);
                best = best.max(brute_force(rest, capacity, cached));
                cached[i] = victim;
            }
        }
        best
    }

    #[test]
    fn belady_matches_exhaustive_search() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..300 {
            let len = rng.random_range(1..12);
            let keys = rng.random_range(1..6);
            let capacity = rng.random_range(1..4);
            let trace: Vec<u64> = (0..len).map(|_| rng.random_range(0..keys)).collect();
            let optimum = brute_force(&trace, capacity, &mut Vec::new());
            assert_eq!(
                belady_hits(&trace, &next_use(&trace), capacity),
                optimum,
                "trace {trace:?} capacity {capacity}"
            );
            assert!(lru_hits(&trace, capacity) <= optimum);
        }
    }
}
