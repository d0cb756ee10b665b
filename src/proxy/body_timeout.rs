//! A request body that fails when the client stops sending: the listener
//! wraps every request body in [`ReadTimeout`], so a client that sends a
//! head and then a body one byte a minute (or nothing) does not hold a
//! connection and an upstream request open for ever.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error of a [`ReadTimeout`] body whose client sent nothing for the
/// allowed pause; the proxy answers it with 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout {
    /// The allowed pause (`listener.body_timeout`).
    pub pause: Duration,
}

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client sent no request body data for {:?}", self.pause)
    }
}

impl std::error::Error for BodyTimeout {}

/// A body that ends with [`BodyTimeout`] when `pause` passes while it waits
/// for the client's next frame. The clock runs only while the body's reader
/// waits for data, so a reader that is slow itself (an upstream applying
/// backpressure) is not counted against the client. The timer is allocated
/// on the first wait, so a body that is already there (or empty) costs none.
pub struct ReadTimeout<B> {
    inner: B,
    pause: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> ReadTimeout<B> {
    /// Wraps `inner`, allowing pauses of at most `pause`.
    pub fn new(inner: B, pause: Duration) -> Self {
        ReadTimeout { inner, pause, timer: None, waiting: false }
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.pause;
            match &mut this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(timer) = &mut this.timer {
            ready!(timer.as_mut().poll(cx));
        }
        Poll::Ready(Some(Err(Box::new(BodyTimeout { pause: this.pause }))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_with_body_timeout() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        let mut body = ReadTimeout::new(StreamBody::new(Box::pin(stream)), Duration::from_secs(30));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.downcast_ref::<BodyTimeout>(), Some(&BodyTimeout { pause: Duration::from_secs(30) }));
        drop(tx);
    }
}
