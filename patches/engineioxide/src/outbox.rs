//! The packets waiting for a socket's transport: a bounded queue that allocates only while it holds
//! packets, and the latest volatile packet.
//!
//! It replaces a `tokio::sync::mpsc` channel and a `watch` channel per socket. tokio's bounded
//! channel allocates its shared state (cache-padded) and a first block of 32 slots when it is
//! created, so every idle socket kept ≈ 2.5 KiB for a queue that is empty nearly all the time.
//! Here the queue lives inline in the [`Socket`](crate::socket::Socket) and its buffer is freed
//! as soon as the transport has drained it.
//!
//! The semantics the transports and socketioxide rely on are kept: `try_send` fails with `Full`
//! past the capacity (reserved permits count) and with `Closed` once closed; a permit reserves a
//! place and can still send after the close; the reader gets every queued packet before it sees
//! the close (close, then drain); `closed()` resolves once closed.
//!
//! There is one reader at a time: the holder of the socket's `internal_rx` lock (the websocket
//! writer, or the polling request in progress). The reading methods take that lock's guard as
//! proof.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
};

use engineioxide_core::PacketBuf;
use tokio::sync::{Notify, mpsc::error::TrySendError};

use crate::socket::InternalRx;

/// A socket's outgoing queue (see the module's documentation).
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the reader. `notify_one` stores a permit when the reader is not waiting yet, so a
    /// packet pushed between its check and its wait is not missed.
    readable: Notify,
    /// Wakes every task in [`Outbox::closed`].
    closed: Notify,
    capacity: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<PacketBuf>,
    /// Places held by [`OutboxPermit`]s not sent yet.
    reserved: usize,
    /// Only the latest volatile packet is kept; the reader gets it after the queued ones.
    volatile: Option<PacketBuf>,
    closed: bool,
}

impl State {
    fn is_full(&self, capacity: usize) -> bool {
        self.queue.len() + self.reserved >= capacity
    }
}

/// A reserved place in an [`Outbox`]: sending cannot fail. Dropped unsent, it gives the place
/// back.
pub(crate) struct OutboxPermit<'a> {
    outbox: &'a Outbox,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            readable: Notify::new(),
            closed: Notify::new(),
            capacity,
        }
    }

    /// No critical section here can panic half-way, so a poisoned lock still holds a
    /// consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(packets));
        }
        if state.is_full(self.capacity) {
            return Err(TrySendError::Full(packets));
        }
        state.queue.push_back(packets);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    pub(crate) fn try_reserve(&self) -> Result<OutboxPermit<'_>, TrySendError<()>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.is_full(self.capacity) {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(OutboxPermit { outbox: self })
    }

    /// Replaces the volatile packet not read yet, if any. `false` once closed.
    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.volatile = Some(packets);
        drop(state);
        self.readable.notify_one();
        true
    }

    /// The next packet without waiting: the queued ones in order, then the volatile one.
    pub(crate) fn try_recv(&self, _reader: &mut InternalRx) -> Option<PacketBuf> {
        let mut state = self.lock();
        let next = state.queue.pop_front().or_else(|| state.volatile.take());
        if state.queue.is_empty() && state.queue.capacity() > 0 {
            // an idle socket keeps no buffer (a burst would otherwise stay allocated)
            state.queue = VecDeque::new();
        }
        next
    }

    /// The next packet, waiting for one; `None` once closed and drained.
    pub(crate) async fn recv(&self, reader: &mut InternalRx) -> Option<PacketBuf> {
        loop {
            if let Some(packets) = self.try_recv(reader) {
                return Some(packets);
            }
            if self.is_closed() {
                return None;
            }
            self.readable.notified().await;
        }
    }

    /// [`Outbox::recv`] as a stream, for the polling encoder.
    pub(crate) fn stream<'a>(
        &'a self,
        reader: &'a mut InternalRx,
    ) -> impl futures_core::Stream<Item = PacketBuf> + Send + 'a {
        futures_util::stream::unfold(reader, move |reader| async move {
            let packets = self.recv(reader).await?;
            Some((packets, reader))
        })
    }

    /// Refuses new packets (permits already reserved can still send); the reader drains what is
    /// queued, then gets `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.closed.notify_waiters();
        self.readable.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) async fn closed(&self) {
        let notified = self.closed.notified();
        tokio::pin!(notified);
        // registered before the check, so a close in between still wakes it
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Outbox")
            .field("queued", &state.queue.len())
            .field("reserved", &state.reserved)
            .field("volatile", &state.volatile.is_some())
            .field("closed", &state.closed)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl OutboxPermit<'_> {
    pub(crate) fn send(self, packets: PacketBuf) {
        let outbox = self.outbox;
        std::mem::forget(self);
        let mut state = outbox.lock();
        state.reserved -= 1;
        state.queue.push_back(packets);
        drop(state);
        outbox.readable.notify_one();
    }
}

impl Drop for OutboxPermit<'_> {
    fn drop(&mut self) {
        self.outbox.lock().reserved -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use engineioxide_core::{Packet, Str};
    use smallvec::smallvec;

    use super::*;

    fn msg(s: &'static str) -> PacketBuf {
        smallvec![Packet::Message(Str::from(s))]
    }

    fn text(p: Option<PacketBuf>) -> Option<String> {
        p.map(|mut p| p.pop().unwrap().into())
    }

    fn reader() -> InternalRx {
        InternalRx::default()
    }

    #[test]
    fn full_past_the_capacity_counting_reserved_places() {
        let outbox = Outbox::new(2);
        outbox.try_send(msg("a")).unwrap();
        let permit = outbox.try_reserve().unwrap();
        assert!(matches!(outbox.try_send(msg("b")), Err(TrySendError::Full(_))));
        assert!(matches!(outbox.try_reserve(), Err(TrySendError::Full(()))));
        drop(permit);
        outbox.try_send(msg("b")).unwrap();
        let mut rx = reader();
        assert_eq!(text(outbox.try_recv(&mut rx)).as_deref(), Some("4a"));
        assert_eq!(text(outbox.try_recv(&mut rx)).as_deref(), Some("4b"));
        assert_eq!(outbox.try_recv(&mut rx), None);
    }

    #[test]
    fn queued_in_order_then_the_latest_volatile() {
        let outbox = Outbox::new(8);
        assert!(outbox.send_volatile(msg("v1")));
        outbox.try_send(msg("a")).unwrap();
        outbox.try_reserve().unwrap().send(msg("b"));
        assert!(outbox.send_volatile(msg("v2")));
        let mut rx = reader();
        let got: Vec<_> = std::iter::from_fn(|| text(outbox.try_recv(&mut rx))).collect();
        assert_eq!(got, ["4a", "4b", "4v2"]);
    }

    #[tokio::test]
    async fn closed_refuses_new_packets_but_drains_the_queued_and_the_reserved() {
        let outbox = Outbox::new(8);
        outbox.try_send(msg("a")).unwrap();
        let permit = outbox.try_reserve().unwrap();
        outbox.close();
        assert!(outbox.is_closed());
        assert!(matches!(outbox.try_send(msg("b")), Err(TrySendError::Closed(_))));
        assert!(matches!(outbox.try_reserve(), Err(TrySendError::Closed(()))));
        assert!(!outbox.send_volatile(msg("v")));
        permit.send(msg("c"));

        let mut rx = reader();
        let mut drained = Vec::new();
        while let Some(p) = outbox.recv(&mut rx).await {
            drained.push(text(Some(p)).unwrap());
        }
        assert_eq!(drained, ["4a", "4c"]);
    }

    #[test]
    fn the_buffer_is_freed_once_drained() {
        let outbox = Outbox::new(64);
        for _ in 0..20 {
            outbox.try_send(msg("a")).unwrap();
        }
        assert!(outbox.lock().queue.capacity() >= 20);
        let mut rx = reader();
        while outbox.try_recv(&mut rx).is_some() {}
        assert_eq!(outbox.lock().queue.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_a_packet_and_on_the_close() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        let reading = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut rx = reader();
                let first = outbox.recv(&mut rx).await;
                let end = outbox.recv(&mut rx).await;
                (text(first), end.is_none())
            })
        };
        tokio::task::yield_now().await;
        outbox.try_send(msg("a")).unwrap();
        tokio::task::yield_now().await;
        outbox.close();
        let got = tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .expect("the reader should wake")
            .unwrap();
        assert_eq!(got, (Some("4a".to_owned()), true));
    }

    #[tokio::test]
    async fn closed_resolves_for_every_waiter() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let outbox = outbox.clone();
                tokio::spawn(async move { outbox.closed().await })
            })
            .collect();
        tokio::task::yield_now().await;
        outbox.close();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("closed() should resolve")
                .unwrap();
        }
        // and at once when already closed
        outbox.closed().await;
    }
}
