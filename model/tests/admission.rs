//! The admission rules on a fake clock: which instance a request gets, the FIFO queue, and the
//! 429 / 500 / 504 a waiting request gives up with. The front door and `emu simulate` both run
//! these rules, so what holds here holds for both.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use emu_model::admission::{default_queue_timeout, queue_bucket, QUEUE_BUCKETS};
use emu_model::{Admission, AdmitError, Arrival, GiveUp, Occupancy, Ticket, Waiting};

#[derive(Debug)]
struct Inst {
    name: &'static str,
    in_flight: Cell<u32>,
}

impl Occupancy for Inst {
    fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }
    fn set_in_flight(&self, n: u32) {
        self.in_flight.set(n);
    }
    fn is_same(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

fn inst(name: &'static str) -> Rc<Inst> {
    Rc::new(Inst {
        name,
        in_flight: Cell::new(0),
    })
}

/// Waiters are request numbers; a delivered slot is recorded as (request, instance).
type Queue = Admission<Rc<Inst>, u32>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const FAR: Duration = Duration::from_secs(3600);

/// Request `n`, to be answered by `deadline`, as a waiter.
fn wait(n: u32, deadline: Duration) -> Waiting<u32, ()> {
    Waiting {
        waiter: n,
        receipt: (),
        deadline,
    }
}

/// Arrives request `n` at `now`: the instance it got, or its ticket and give-up time.
fn arrive(q: &mut Queue, now: Duration, n: u32) -> Result<&'static str, (Ticket, Duration)> {
    match q.arrive(now, || wait(n, now + FAR)).unwrap() {
        Arrival::Admitted(i) => Ok(i.name),
        Arrival::Queued { ticket, until, .. } => Err((ticket, until)),
    }
}

fn ready(q: &mut Queue, now: Duration, i: &Rc<Inst>, got: &mut Vec<(u32, &'static str)>) {
    q.add_ready(now, i.clone(), Duration::ZERO, |w, i| {
        got.push((w, i.name));
        true
    });
}

#[test]
fn a_request_takes_the_instance_with_most_free_slots() {
    let mut q = Queue::new(2, None);
    let (a, b) = (inst("a"), inst("b"));
    ready(&mut q, ms(0), &a, &mut Vec::new());
    ready(&mut q, ms(0), &b, &mut Vec::new());
    assert_eq!(arrive(&mut q, ms(1), 1), Ok("a"));
    assert_eq!(arrive(&mut q, ms(2), 2), Ok("b"), "spread over instances");
    assert_eq!(arrive(&mut q, ms(3), 3), Ok("a"));
    assert_eq!(arrive(&mut q, ms(4), 4), Ok("b"));
    assert!(
        arrive(&mut q, ms(5), 5).is_err(),
        "4 slots, 5th request waits"
    );
    assert_eq!((a.in_flight(), b.in_flight()), (2, 2));
    assert_eq!(q.queue_depth(), 1);
}

#[test]
fn released_slots_go_to_the_oldest_waiter_first() {
    let mut q = Queue::new(1, Some(secs(30)));
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    assert_eq!(arrive(&mut q, ms(0), 0), Ok("a"));
    for n in 1..=3 {
        assert!(arrive(&mut q, ms(u64::from(n)), n).is_err());
    }
    let mut order = Vec::new();
    for t in 10..13 {
        let idle = q.release(ms(t), &a, |w, _| {
            order.push(w);
            true
        });
        assert!(!idle, "the slot passed straight on");
    }
    assert_eq!(order, vec![1, 2, 3]);
    assert_eq!(a.in_flight(), 1);
    assert!(q.release(ms(20), &a, |_, _| unreachable!()), "idle at last");
    assert_eq!((a.in_flight(), q.queue_depth(), q.in_flight()), (0, 0, 0));
}

#[test]
fn an_instance_that_becomes_ready_serves_the_queue_up_to_its_slots() {
    let mut q = Queue::new(2, None);
    for n in 0..3 {
        assert!(arrive(&mut q, ms(u64::from(n)), n).is_err());
    }
    let a = inst("a");
    let mut got = Vec::new();
    ready(&mut q, ms(700), &a, &mut got);
    assert_eq!(got, vec![(0, "a"), (1, "a")]);
    assert_eq!((a.in_flight(), q.queue_depth()), (2, 1));
}

#[test]
fn giving_up_is_429_when_busy_500_when_nothing_is_ready_504_at_the_deadline() {
    let mut q = Queue::new(1, Some(secs(1)));
    let (ticket, until) = arrive(&mut q, ms(0), 0).unwrap_err();
    assert_eq!(until, secs(1));
    assert_eq!(
        q.give_up(until, ticket),
        Some(GiveUp::Answer(AdmitError::NoInstanceStarted))
    );

    let a = inst("a");
    ready(&mut q, secs(2), &a, &mut Vec::new());
    assert_eq!(arrive(&mut q, secs(2), 1), Ok("a"));
    let (ticket, until) = arrive(&mut q, secs(2), 2).unwrap_err();
    assert_eq!(until, secs(3));
    assert_eq!(
        q.give_up(until, ticket),
        Some(GiveUp::Answer(AdmitError::NoAvailableInstance))
    );

    // A request whose own deadline comes first gives up at it, with a 504.
    let Arrival::Queued { ticket, until, .. } =
        q.arrive(secs(4), || wait(3, secs(4) + ms(300))).unwrap()
    else {
        panic!("the only slot is taken");
    };
    assert_eq!(until, secs(4) + ms(300));
    assert_eq!(
        q.give_up(until, ticket),
        Some(GiveUp::Answer(AdmitError::Timeout))
    );
    assert_eq!(q.queue_depth(), 0);
    assert_eq!(q.in_flight(), 1);
}

#[test]
fn a_request_served_before_its_timer_fires_does_not_give_up() {
    let mut q = Queue::new(1, Some(secs(1)));
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    arrive(&mut q, ms(0), 0).unwrap();
    let (ticket, until) = arrive(&mut q, ms(1), 1).unwrap_err();
    q.release(ms(500), &a, |_, _| true);
    assert_eq!(q.give_up(until, ticket), None, "it holds a slot already");
    assert!(!q.withdraw(until, ticket));
}

#[test]
fn a_withdrawn_request_leaves_the_queue_and_the_demand() {
    let mut q = Queue::new(1, Some(secs(30)));
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    arrive(&mut q, ms(0), 0).unwrap();
    let tickets: Vec<Ticket> = (1..=3)
        .map(|n| arrive(&mut q, ms(1), n).unwrap_err().0)
        .collect();
    assert!(q.withdraw(ms(2), tickets[1]), "from the middle");
    assert!(!q.withdraw(ms(2), tickets[1]), "only once");
    assert_eq!(q.queue_depth(), 2);
    let mut order = Vec::new();
    q.release(ms(3), &a, |w, _| {
        order.push(w);
        true
    });
    q.release(ms(4), &a, |w, _| {
        order.push(w);
        true
    });
    assert_eq!(order, vec![1, 3], "the withdrawn place is skipped");
    assert_eq!(q.in_flight(), 1);
}

#[test]
fn a_waiter_that_cannot_take_its_slot_passes_it_on() {
    let mut q = Queue::new(1, Some(secs(30)));
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    arrive(&mut q, ms(0), 0).unwrap();
    arrive(&mut q, ms(1), 1).unwrap_err();
    arrive(&mut q, ms(1), 2).unwrap_err();
    let mut got = Vec::new();
    q.release(ms(5), &a, |w, _| {
        got.push(w);
        w != 1 // request 1 went away without withdrawing
    });
    assert_eq!(got, vec![1, 2]);
    assert_eq!((a.in_flight(), q.in_flight(), q.queue_depth()), (1, 1, 0));
}

#[test]
fn a_draining_instance_hands_no_slot_on_and_takes_no_request() {
    let mut q = Queue::new(2, Some(secs(1)));
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    arrive(&mut q, ms(0), 0).unwrap();
    q.remove(&a);
    let (ticket, until) = arrive(&mut q, ms(1), 1).unwrap_err();
    assert!(q.release(ms(10), &a, |_, _| panic!("a drains")), "idle");
    assert_eq!(
        q.give_up(until, ticket),
        Some(GiveUp::Answer(AdmitError::NoInstanceStarted))
    );
}

#[test]
fn the_default_queue_timeout_follows_the_observed_startups() {
    assert_eq!(default_queue_timeout(Duration::ZERO), secs(10));
    assert_eq!(default_queue_timeout(secs(4)), secs(14));
    let mut q = Queue::new(1, None);
    assert_eq!(q.queue_timeout(), secs(10));
    q.add_ready(secs(4), inst("a"), secs(4), |_, _| true);
    assert_eq!(q.queue_timeout(), secs(14));
    q.add_ready(secs(5), inst("b"), secs(1), |_, _| true);
    assert_eq!(q.queue_timeout(), secs(10), "mean 2.5 s × 3.5 < 10 s");
    assert_eq!(Queue::new(1, Some(secs(2))).queue_timeout(), secs(2));
}

#[test]
fn a_closed_queue_turns_everyone_away() {
    let mut q = Queue::new(1, None);
    arrive(&mut q, ms(0), 7).unwrap_err();
    assert_eq!(q.close(), vec![7]);
    assert_eq!(q.queue_depth(), 0);
    assert_eq!(q.in_flight(), 0);
    assert_eq!(
        q.arrive(ms(1), || wait(8, FAR)).unwrap_err(),
        AdmitError::ShuttingDown
    );
}

#[test]
fn concurrency_is_time_weighted_between_samples() {
    let mut q = Queue::new(10, None);
    let a = inst("a");
    ready(&mut q, ms(0), &a, &mut Vec::new());
    q.sample(ms(0));
    arrive(&mut q, ms(0), 0).unwrap();
    arrive(&mut q, ms(500), 1).unwrap();
    let s = q.sample(ms(1000));
    assert_eq!(s.avg_concurrency, 1.5);
    assert_eq!((s.ready, s.in_flight, s.queue_depth), (1, 2, 0));
    // A new window starts at each sample.
    let s = q.sample(ms(2000));
    assert_eq!(s.avg_concurrency, 2.0);
}

#[test]
fn queue_waits_fall_in_prometheus_buckets() {
    assert_eq!(queue_bucket(Duration::ZERO), 0);
    assert_eq!(queue_bucket(ms(1)), 0);
    assert_eq!(queue_bucket(ms(2)), 1);
    assert_eq!(queue_bucket(secs(30)), QUEUE_BUCKETS.len() - 1);
    assert_eq!(queue_bucket(secs(31)), QUEUE_BUCKETS.len());
}

/// Issue 15's slow boot: a 16 s start, a 60 s startup-probe budget, a 60 s request timeout.
#[test]
fn a_request_waits_out_the_start_it_triggered_past_its_queue_timeout() {
    let mut q = Queue::new(1, None);
    let start = q.start_began(ms(0), secs(60));
    let Arrival::Queued { ticket, until, .. } = q.arrive(ms(0), || wait(0, secs(60))).unwrap()
    else {
        panic!("nothing is ready");
    };
    assert_eq!(until, secs(10), "the queue timeout");
    assert_eq!(q.give_up(until, ticket), Some(GiveUp::Hold(secs(60))));
    assert_eq!(q.queue_depth(), 1, "it still waits");
    let a = inst("a");
    let mut got = Vec::new();
    ready(&mut q, secs(16), &a, &mut got);
    assert!(q.start_ended(secs(16), start).is_empty());
    assert_eq!(got, vec![(0, "a")]);
    assert_eq!(q.give_up(secs(60), ticket), None, "it was served");
}

#[test]
fn a_failed_start_answers_the_requests_held_for_it_with_500() {
    let mut q = Queue::new(1, None);
    let start = q.start_began(ms(0), secs(60));
    let (held, until) = arrive(&mut q, ms(0), 0).unwrap_err();
    assert_eq!(q.give_up(until, held), Some(GiveUp::Hold(secs(60))));
    // A request still within its own queue timeout is not held, so not answered.
    let (fresh, fresh_until) = arrive(&mut q, secs(15), 1).unwrap_err();
    assert_eq!(
        q.start_ended(secs(20), start),
        vec![(0, AdmitError::NoInstanceStarted)]
    );
    assert_eq!(q.give_up(secs(20), held), None, "answered already");
    assert_eq!(q.queue_depth(), 1);
    assert_eq!(
        q.give_up(fresh_until, fresh),
        Some(GiveUp::Answer(AdmitError::NoInstanceStarted))
    );
    assert_eq!((q.queue_depth(), q.in_flight()), (0, 0));
}

#[test]
fn a_held_request_gets_504_at_its_deadline() {
    let mut q = Queue::new(1, None);
    q.start_began(ms(0), secs(240));
    let Arrival::Queued { ticket, until, .. } = q.arrive(ms(0), || wait(0, secs(30))).unwrap()
    else {
        panic!("nothing is ready");
    };
    assert_eq!(q.give_up(until, ticket), Some(GiveUp::Hold(secs(30))));
    assert_eq!(
        q.give_up(secs(30), ticket),
        Some(GiveUp::Answer(AdmitError::Timeout))
    );
}

#[test]
fn a_start_past_its_budget_holds_no_request() {
    let mut q = Queue::new(1, None);
    q.start_began(ms(0), secs(5));
    let (ticket, until) = arrive(&mut q, ms(0), 0).unwrap_err();
    assert_eq!(
        q.give_up(until, ticket),
        Some(GiveUp::Answer(AdmitError::NoInstanceStarted))
    );
}
