//! Buffers lent to fast-path connections while they work, kept per thread. A connection takes
//! its read and write buffers when a request arrives and gives them back when it goes idle, so
//! ten thousand idle keep-alive connections hold no buffers at all (nginx frees an idle
//! keep-alive connection's buffers for the same reason), and a busy thread reuses the same few
//! allocations instead of asking the allocator, which would keep the memory after a flood.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers of each kind a thread keeps for reuse; more are freed.
const KEEP: usize = 256;

thread_local! {
    static BYTES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Gives `b` a lent buffer when it has none.
pub(super) fn take_bytes(b: &mut BytesMut) {
    if b.capacity() == 0 {
        if let Some(lent) = BYTES.with(|p| p.borrow_mut().pop()) {
            *b = lent;
        }
    }
}

/// Gives `b`'s buffer back when it holds nothing still to handle.
pub(super) fn give_bytes(b: &mut BytesMut) {
    if b.is_empty() && b.capacity() > 0 {
        let buf = std::mem::take(b);
        BYTES.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(buf);
            }
        });
    }
}

pub(super) fn take_vec(v: &mut Vec<u8>) {
    if v.capacity() == 0 {
        if let Some(lent) = VECS.with(|p| p.borrow_mut().pop()) {
            *v = lent;
        }
    }
}

/// Gives `v`'s buffer back; what it held is dropped.
pub(super) fn give_vec(v: &mut Vec<u8>) {
    if v.capacity() > 0 {
        let mut buf = std::mem::take(v);
        buf.clear();
        VECS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(buf);
            }
        });
    }
}
