//! The publisher: one bounded, ordered queue of events and the one task
//! that sends its head to containerd until containerd takes it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use protobuf::Message;
use tokio::sync::Notify;

use super::{timestamp, Event};
use crate::protos::forward::{Envelope, ForwardRequest};
use crate::protos::forward_ttrpc::EventsClient;
use crate::tasks::Tasks;

/// How many events wait for containerd at most.
pub const QUEUE_CAPACITY: usize = 4096;
/// How long connecting to containerd's events socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Queue {
    events: VecDeque<ForwardRequest>,
    dropped: u64,
}

/// Handle for enqueueing events; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    drained: Arc<Notify>,
    namespace: String,
    address: String,
    /// The daemon's tasks, which the sender is one of.
    tasks: Tasks,
    /// The running sender: cancelled to stop it between two events (for a
    /// live upgrade), and its task, to wait for.
    sender: Arc<Mutex<Option<Sender>>>,
}

/// The running sender: its owner (a branch of the daemon's tasks) and task.
type Sender = (Tasks, tokio::task::JoinHandle<()>);

impl Publisher {
    /// Starts the sender task for containerd's ttrpc socket at `address`
    /// (a path, as in TTRPC_ADDRESS). An empty address disables sending:
    /// events are queued (and dropped past the bound) but go nowhere.
    pub fn start(address: String, namespace: String, tasks: &Tasks) -> Publisher {
        Publisher::with_queue(address, namespace, Vec::new(), tasks)
    }

    /// Like [`Publisher::start`], with the events an earlier binary's
    /// snapshot recorded queued first.
    pub fn restored(
        address: String,
        namespace: String,
        events: &[Vec<u8>],
        tasks: &Tasks,
    ) -> Publisher {
        Publisher::with_queue(address, namespace, decode(events), tasks)
    }

    fn with_queue(
        address: String,
        namespace: String,
        queued: Vec<ForwardRequest>,
        tasks: &Tasks,
    ) -> Publisher {
        let p = Publisher {
            queue: Arc::new(Mutex::new(Queue {
                events: queued.into(),
                dropped: 0,
            })),
            wake: Arc::default(),
            drained: Arc::default(),
            namespace,
            address,
            tasks: tasks.clone(),
            sender: Arc::default(),
        };
        if p.address.is_empty() {
            tracing::warn!("TTRPC_ADDRESS is not set: task events will not be published");
        }
        p.resume(Vec::new());
        p
    }

    /// Starts sending again after [`Publisher::snapshot`], `events` (what it
    /// recorded) first.
    pub fn restore(&self, events: &[Vec<u8>]) {
        self.resume(decode(events));
    }

    fn resume(&self, events: Vec<ForwardRequest>) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            for e in events.into_iter().rev() {
                q.events.push_front(e);
            }
        }
        if !self.address.is_empty() {
            let sender = self.tasks.branch();
            let task = sender.spawn(self.clone().run(self.address.clone(), sender.clone()));
            *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some((sender, task));
        }
    }

    /// Stops sending (after the event in flight, if any) and records what is
    /// queued, oldest first, for a live upgrade.
    pub async fn snapshot(&self) -> Vec<Vec<u8>> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((sender, task)) = sender {
            sender.cancel();
            let _ = task.await;
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.events
            .drain(..)
            .filter_map(|e| e.write_to_bytes().ok())
            .collect()
    }

    /// Enqueues `event`; never blocks.
    pub fn publish(&self, event: Event) {
        let (topic, payload) = event.to_wire();
        let mut env = Envelope::new();
        env.timestamp = Some(timestamp(Some(SystemTime::now()))).into();
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = Some(payload).into();
        let mut req = ForwardRequest::new();
        req.envelope = Some(env).into();
        tracing::debug!(topic, ?event, "event queued");
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.events.len() >= QUEUE_CAPACITY {
            q.events.pop_front();
            q.dropped += 1;
            tracing::warn!(
                dropped = q.dropped,
                "event queue full: dropped the oldest event"
            );
        }
        q.events.push_back(req);
        drop(q);
        self.wake.notify_one();
    }

    /// Waits until the queue is empty or `limit` has passed.
    pub async fn flush(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let drained = self.drained.notified();
                if self.is_empty() {
                    return;
                }
                drained.await;
            }
        })
        .await;
    }

    fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .is_empty()
    }

    fn head(&self) -> Option<ForwardRequest> {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.events.front().cloned()
    }

    async fn run(self, address: String, sender: Tasks) {
        let url = format!("unix://{}", address.trim_start_matches("unix://"));
        let mut client: Option<EventsClient> = None;
        let mut backoff = Duration::from_millis(50);
        let stop = sender.token();
        loop {
            if stop.is_cancelled() {
                return;
            }
            let Some(req) = self.head() else {
                self.drained.notify_waiters();
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            };
            if client.is_none() {
                match tokio::time::timeout(CONNECT_TIMEOUT, ttrpc::r#async::Client::connect(&url))
                    .await
                {
                    Ok(Ok(c)) => client = Some(EventsClient::new(c)),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "containerd events socket not reachable")
                    }
                    Err(_) => tracing::debug!("connecting to containerd's events socket timed out"),
                }
            }
            let sent = match &client {
                Some(c) => {
                    // No deadline on a live connection: containerd answers
                    // every request it reads, even after a long stall, and a
                    // resend after a timeout would deliver the event twice.
                    // A closed connection fails the call, and only then is
                    // the event sent again.
                    let ctx = ttrpc::context::with_timeout(0);
                    match c.forward(ctx, &req).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::debug!(error = %e, "forwarding an event failed; will retry");
                            false
                        }
                    }
                }
                None => false,
            };
            if sent {
                backoff = Duration::from_millis(50);
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                // The head may have been dropped for space meanwhile; only pop
                // what was sent.
                if q.events.front() == Some(&req) {
                    q.events.pop_front();
                }
            } else {
                client = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Recorded events back to requests (any that do not decode are dropped).
fn decode(events: &[Vec<u8>]) -> Vec<ForwardRequest> {
    events
        .iter()
        .filter_map(|b| ForwardRequest::parse_from_bytes(b).ok())
        .collect()
}
