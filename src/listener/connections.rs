//! The open connections of one listener: how many there are (at most
//! `listener.max_connections`), which have no request in flight and since
//! when, and a way to ask any of them to close.
//!
//! At the cap a new connection is still accepted, and the connection that
//! has been idle longest (no request in flight; a connection that has not
//! sent its first request counts as idle since it was accepted) is asked to
//! close, the way nginx reuses keep-alive connections when it runs out: an
//! idle client loses nothing but a reconnect, and idle connections cannot
//! lock out a new client. Only when every connection has a request in
//! flight is the new connection closed at once. An asked connection closes
//! gracefully: an idle HTTP/1.1 connection at once, one that has just
//! started a request after answering it, an HTTP/2 connection with GOAWAY
//! after its open streams; so the count can pass the cap by the connections
//! still closing.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The open connections of a listener.
pub(super) struct Connections {
    max: usize,
    epoch: Instant,
    open: Mutex<Open>,
    emptied: Notify,
    /// When a refusal was last logged, in milliseconds since `epoch`.
    refusal_logged: AtomicU64,
}

#[derive(Default)]
struct Open {
    next: u64,
    by_id: HashMap<u64, Arc<Conn>>,
}

/// One open connection's state, shared by its task and its requests.
pub(super) struct Conn {
    epoch: Instant,
    /// Requests (HTTP/2: streams) in flight.
    busy: AtomicUsize,
    /// When `busy` last went to 0 (or the connection was accepted), in
    /// milliseconds since `epoch`.
    idle_since: AtomicU64,
    closing: AtomicBool,
    close: Notify,
}

impl Connections {
    /// No connections yet; at most `max` at once.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max: max.max(1),
            epoch: Instant::now(),
            open: Mutex::new(Open::default()),
            emptied: Notify::new(),
            refusal_logged: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for a new connection, asking the longest-idle one to
    /// close when the listener is at its cap; `None` (the new connection is
    /// to be closed) when every connection has a request in flight.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.by_id.len() >= self.max {
            let victim = open
                .by_id
                .values()
                .filter(|c| c.busy.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire))
                .min_by_key(|c| c.idle_since.load(Ordering::Acquire));
            match victim {
                Some(victim) => victim.ask_to_close(),
                None => {
                    drop(open);
                    self.log_refusal();
                    return None;
                }
            }
        }
        let id = open.next;
        open.next += 1;
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(millis(self.epoch, Instant::now())),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        open.by_id.insert(id, conn.clone());
        Some(Slot { connections: self.clone(), id, conn })
    }

    fn log_refusal(&self) {
        let now = millis(self.epoch, Instant::now());
        let last = self.refusal_logged.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .refusal_logged
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = self.max,
                "every connection has a request in flight; closing new connections (listener.max_connections)"
            );
        }
    }

    /// The number of open connections.
    pub(super) fn count(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Asks every open connection to close (shutdown).
    pub(super) fn close_all(&self) {
        for conn in self.lock().by_id.values() {
            conn.ask_to_close();
        }
    }

    /// Completes when no connection is open.
    pub(super) async fn emptied(&self) {
        loop {
            let mut notified = pin!(self.emptied.notified());
            notified.as_mut().enable();
            if self.lock().by_id.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's place among the open ones; gives it back when dropped.
pub(super) struct Slot {
    connections: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

impl Slot {
    /// The connection's shared state.
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        open.by_id.remove(&self.id);
        if open.by_id.is_empty() {
            self.connections.emptied.notify_waiters();
        }
    }
}

impl Conn {
    fn ask_to_close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.close.notify_one();
        }
    }

    /// Completes once the connection is asked to close.
    pub(super) async fn asked_to_close(&self) {
        self.close.notified().await;
    }

    /// Marks a request as started; the guard marks it finished.
    pub(super) fn start_request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn: self.clone() }
    }

    /// When the connection has been idle for `limit` (now or later), or
    /// `None` while a request is in flight.
    pub(super) fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_millis(since) + limit)
    }
}

/// A request in flight on a connection.
pub(super) struct Busy {
    conn: Arc<Conn>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.idle_since.store(millis(self.conn.epoch, Instant::now()), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn millis(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_is_asked_to_close() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = connections.admit().unwrap();
        let third = connections.admit().expect("an idle connection makes room");
        assert!(first.conn().closing.load(Ordering::Acquire), "the oldest idle one");
        assert!(!second.conn().closing.load(Ordering::Acquire));
        drop(first);
        // Both open ones busy: no room.
        let _a = second.conn().start_request();
        let _b = third.conn().start_request();
        assert!(connections.admit().is_none());
        assert_eq!(connections.count(), 2);
    }
}
