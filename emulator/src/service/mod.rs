//! A running service: its validated spec, its admission queue, and the instances the supervisor
//! keeps. Shared by the front door (admission), the supervisor (starts and stops) and admin (reads).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::admission::AdmissionQueue;
use crate::instances::instance::{Instance, InstanceState};
use crate::spec::ServiceSpec;

pub mod supervisor;
pub use supervisor::Supervisor;

/// One service at run time.
#[derive(Debug)]
pub struct ServiceRuntime {
    pub spec: ServiceSpec,
    /// Its admission queue: ready instances, their slots, the requests waiting.
    pub pool: Arc<AdmissionQueue>,
    /// Every instance that is not yet stopped (starting, ready, draining), for status.
    pub instances: Mutex<Vec<Arc<Instance>>>,
    /// The count the scaler asks for.
    pub desired: AtomicU32,
    /// Set when a request started an instance from zero; the autoscaler must not undo it at once.
    pub activated: AtomicBool,
    /// Why the service has no ready instance, when it has none (e.g. a failing startup probe).
    pub last_failure: Mutex<Option<String>>,
}

impl ServiceRuntime {
    pub fn new(spec: ServiceSpec) -> Arc<ServiceRuntime> {
        let pool = AdmissionQueue::new(spec.concurrency, spec.queue_timeout);
        Arc::new(ServiceRuntime {
            desired: AtomicU32::new(
                spec.min_instances
                    .max(spec.autoscaler.initial_scale)
                    .min(spec.max_instances),
            ),
            activated: AtomicBool::new(false),
            spec,
            pool,
            instances: Mutex::new(Vec::new()),
            last_failure: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Instances by state: (starting, ready, draining).
    pub fn counts(&self) -> (usize, usize, usize) {
        let list = self.instances.lock();
        let mut c = (0, 0, 0);
        for s in list.iter() {
            match s.state() {
                InstanceState::Starting => c.0 += 1,
                InstanceState::Ready => c.1 += 1,
                InstanceState::Draining => c.2 += 1,
                InstanceState::Stopped | InstanceState::Unready => {}
            }
        }
        c
    }

    pub fn desired(&self) -> u32 {
        self.desired.load(Ordering::Relaxed)
    }
}
