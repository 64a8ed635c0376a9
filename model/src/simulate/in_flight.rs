//! When each in-flight request completes, and on which instance, so its slot is released there.

use std::collections::BTreeMap;

/// No node: the end of a list.
const NIL: u32 = u32::MAX;

/// One in-flight request: the instance (an index the caller keeps) and the next request of the
/// same millisecond.
#[derive(Clone, Copy)]
struct Node {
    instance: u32,
    next: u32,
}

/// Completions by millisecond. Nearly all requests complete within a minute, so a timing wheel
/// of 1-ms slots files them in O(1); the rare longer ones go to an ordered map. Each wheel slot
/// is a list threaded through one node array, so filing a request allocates nothing once the
/// array has grown to the peak in flight (an hour at 1000 RPS files 3.6 M of them).
pub(super) struct InFlight {
    /// First node of each millisecond's list.
    heads: Vec<u32>,
    nodes: Vec<Node>,
    /// First free node (a list through `next`).
    free: u32,
    overflow: BTreeMap<u64, Vec<u32>>,
}

/// Wheel size in ms (a power of two, about 65 s).
pub(super) const WHEEL: u64 = 1 << 16;

impl InFlight {
    pub(super) fn new() -> Self {
        InFlight {
            heads: vec![NIL; WHEEL as usize],
            nodes: Vec::new(),
            free: NIL,
            overflow: BTreeMap::new(),
        }
    }

    /// A request taken at `t` on `instance` that completes at `done` (> `t`).
    pub(super) fn push(&mut self, t: u64, done: u64, instance: u32) {
        if done - t >= WHEEL {
            self.overflow.entry(done).or_default().push(instance);
            return;
        }
        let head = &mut self.heads[(done & (WHEEL - 1)) as usize];
        let node = Node {
            instance,
            next: *head,
        };
        let i = if self.free == NIL {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        } else {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            i
        };
        *head = i;
    }

    /// Replaces `due` with the instances of the requests that complete at `t`; call once for
    /// every millisecond, in order.
    pub(super) fn take_due(&mut self, t: u64, due: &mut Vec<u32>) {
        due.clear();
        let head = &mut self.heads[(t & (WHEEL - 1)) as usize];
        let mut i = std::mem::replace(head, NIL);
        while i != NIL {
            let node = self.nodes[i as usize];
            due.push(node.instance);
            self.nodes[i as usize].next = self.free;
            self.free = i;
            i = node.next;
        }
        while let Some(entry) = self.overflow.first_entry() {
            if *entry.key() > t {
                break;
            }
            due.extend(entry.remove());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_and_overflow_retire_on_time() {
        let mut f = InFlight::new();
        f.push(0, 5, 1);
        f.push(0, WHEEL + 10, 9);
        f.push(3, 5, 2);
        let mut due = Vec::new();
        for t in 1..5 {
            f.take_due(t, &mut due);
            assert!(due.is_empty());
        }
        f.take_due(5, &mut due);
        due.sort_unstable();
        assert_eq!(due, vec![1, 2]);
        // Freed nodes are used again.
        f.push(5, 7, 3);
        assert_eq!(f.nodes.len(), 2);
        let mut late = Vec::new();
        for t in 6..=WHEEL + 10 {
            f.take_due(t, &mut due);
            late.append(&mut due);
        }
        assert_eq!(late, vec![3, 9]);
    }
}
