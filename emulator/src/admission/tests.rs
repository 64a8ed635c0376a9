//! The live shell: channels, timers, dropped waiters, cold starts and counters, on paused tokio time.

use super::*;

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[tokio::test(start_paused = true)]
async fn takes_the_instance_with_most_free_slots() {
    let queue = AdmissionQueue::new(2, None);
    let a = Instance::new("a");
    let b = Instance::new("b");
    queue.add_ready(a.clone());
    queue.add_ready(b.clone());
    let p1 = queue.acquire(far()).await.unwrap();
    let p2 = queue.acquire(far()).await.unwrap();
    assert_ne!(p1.slot.id, p2.slot.id, "spread over instances");
    let _p3 = queue.acquire(far()).await.unwrap();
    let _p4 = queue.acquire(far()).await.unwrap();
    assert_eq!(a.in_flight() + b.in_flight(), 4);
    assert!(!p1.cold);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_fifo_when_slots_free() {
    let queue = AdmissionQueue::new(1, Some(Duration::from_secs(30)));
    let a = Instance::new("a");
    queue.add_ready(a.clone());
    let held = queue.acquire(far()).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let queue = queue.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let p = queue.acquire(far()).await.unwrap();
            order.lock().push(i);
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(p);
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(queue.queue_depth(), 3);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2]);
    assert_eq!(a.in_flight(), 0);
    assert_eq!(a.served(), 4);
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_gives_429_when_busy_and_500_when_none_ready() {
    let queue = AdmissionQueue::new(1, Some(Duration::from_secs(1)));
    assert_eq!(
        queue.acquire(far()).await.unwrap_err(),
        AdmitError::NoInstanceStarted
    );
    let a = Instance::new("a");
    queue.add_ready(a);
    let _held = queue.acquire(far()).await.unwrap();
    let t0 = Instant::now();
    assert_eq!(
        queue.acquire(far()).await.unwrap_err(),
        AdmitError::NoAvailableInstance
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(queue.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn request_timeout_while_queued_is_504() {
    let queue = AdmissionQueue::new(1, Some(Duration::from_secs(10)));
    let err = queue
        .acquire(Instant::now() + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(err, AdmitError::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_waited_for_a_start_is_cold() {
    let queue = AdmissionQueue::new(5, None);
    let slot = Instance::new("a");
    let p = queue.clone();
    let waiter = tokio::spawn(async move { p.acquire(far()).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue.add_ready(slot.clone());
    let permit = waiter.await.unwrap();
    assert!(permit.cold);
    assert_eq!(permit.queued, Duration::from_millis(700));
    drop(permit);
    let warm = queue.acquire(far()).await.unwrap();
    assert!(!warm.cold);
    assert_eq!(queue.counters.cold_starts.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn default_queue_timeout_follows_startup_time() {
    let queue = AdmissionQueue::new(1, None);
    assert_eq!(queue.queue_timeout(), Duration::from_secs(10));
    let s = Instance::new("a");
    tokio::time::sleep(Duration::from_secs(4)).await;
    queue.add_ready(s);
    assert_eq!(queue.queue_timeout(), Duration::from_secs(14));
}

#[tokio::test(start_paused = true)]
async fn time_weighted_concurrency() {
    let queue = AdmissionQueue::new(10, None);
    queue.add_ready(Instance::new("a"));
    let _ = queue.snapshot();
    let p = queue.acquire(far()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = queue.acquire(far()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snap = queue.snapshot();
    assert!(
        (snap.avg_concurrency - 1.5).abs() < 1e-6,
        "{}",
        snap.avg_concurrency
    );
    assert_eq!(snap.in_flight, 2);
    drop((p, q));
}

#[tokio::test(start_paused = true)]
async fn draining_instance_takes_no_new_requests_and_signals_idle() {
    let queue = AdmissionQueue::new(2, Some(Duration::from_secs(1)));
    let a = Instance::new("a");
    queue.add_ready(a.clone());
    let p = queue.acquire(far()).await.unwrap();
    queue.remove(&a, InstanceState::Draining);
    assert_eq!(
        queue.acquire(far()).await.unwrap_err(),
        AdmitError::NoInstanceStarted
    );
    let idle = tokio::spawn({
        let a = a.clone();
        async move { a.wait_idle().await }
    });
    drop(p);
    idle.await.unwrap();
    assert_eq!(a.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn closing_turns_waiting_and_new_requests_away_with_503() {
    let queue = AdmissionQueue::new(1, Some(Duration::from_secs(30)));
    let q = queue.clone();
    let waiter = tokio::spawn(async move { q.acquire(far()).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(queue.queue_depth(), 1);
    queue.close();
    assert_eq!(waiter.await.unwrap().unwrap_err(), AdmitError::ShuttingDown);
    assert_eq!(
        queue.acquire(far()).await.unwrap_err(),
        AdmitError::ShuttingDown
    );
    assert_eq!(queue.queue_depth(), 0);
}

/// Many requests on two threads, instances joining as they go.
mod stress {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_while_queued_gives_its_place_back() {
        let queue = AdmissionQueue::new(1, Some(Duration::from_secs(30)));
        let a = Instance::new("a");
        queue.add_ready(a.clone());
        let held = queue
            .acquire(Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        let p = queue.clone();
        let waiter =
            tokio::spawn(async move { p.acquire(Instant::now() + Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(queue.queue_depth(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(queue.queue_depth(), 0, "the abandoned place left the queue");
        assert_eq!(
            queue.rules.lock().in_flight(),
            1,
            "only the held request counts"
        );
        drop(held);
        assert_eq!(queue.rules.lock().in_flight(), 0);
        assert_eq!(a.in_flight(), 0);
        // The slot is free for the next request at once.
        let next = queue
            .acquire(Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&*next.slot.id, "a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_returns_to_zero_under_churn() {
        let queue = AdmissionQueue::new(2, Some(Duration::from_secs(30)));
        queue.add_ready(Instance::new("a"));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let queue = queue.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let p = queue
                        .acquire(Instant::now() + Duration::from_secs(60))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    drop(p);
                }
            }));
        }
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            queue.add_ready(Instance::new(format!("b{i}")));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(queue.rules.lock().in_flight(), 0);
        assert_eq!(queue.queue_depth(), 0);
    }
}

/// Issue 15's slow boot: a 16 s start within a 60 s probe budget, a 60 s request timeout, and
/// the 10 s queue timeout of a service that never started an instance.
#[tokio::test(start_paused = true)]
async fn a_request_waits_out_a_slow_start_it_triggered() {
    let queue = AdmissionQueue::new(1, None);
    let start = queue.start_began(Duration::from_secs(60));
    let t0 = Instant::now();
    let p = queue.clone();
    let waiter = tokio::spawn(async move { p.acquire(t0 + Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_secs(16)).await;
    queue.add_ready(Instance::new("a"));
    drop(start);
    let permit = waiter
        .await
        .unwrap()
        .expect("served by the start it waited for");
    assert!(permit.cold);
    assert_eq!(permit.queued, Duration::from_secs(16));
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_answers_its_waiting_request_500_when_it_fails() {
    let queue = AdmissionQueue::new(1, None);
    let start = queue.start_began(Duration::from_secs(60));
    let t0 = Instant::now();
    let p = queue.clone();
    let waiter = tokio::spawn(async move { p.acquire(t0 + Duration::from_secs(300)).await });
    tokio::time::sleep(Duration::from_secs(20)).await;
    drop(start);
    let answer = waiter.await.unwrap().unwrap_err();
    assert_eq!(answer, AdmitError::NoInstanceStarted);
    assert_eq!(t0.elapsed(), Duration::from_secs(20));
    assert_eq!(queue.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_a_start_gets_504_at_its_timeout() {
    let queue = AdmissionQueue::new(1, None);
    let _start = queue.start_began(Duration::from_secs(240));
    let t0 = Instant::now();
    let answer = queue
        .acquire(t0 + Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(answer, AdmitError::Timeout);
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
}
