//! The accept loop under the axum router, with the read timeouts `axum::serve` lacks.
//!
//! `axum::serve` sets no timeout: a client that connects and sends nothing, sends a head a
//! byte at a time, or never finishes a body holds a connection, a task and a file
//! descriptor for good. Here each connection is served by hyper's HTTP/1 connection with
//! a header read timeout (the clock starts whenever the connection waits for a request
//! head, so idle keep-alive connections close after it too), and every request body gets
//! a deadline counted from its head ([`DeadlineBody`]). HTTP/1 only, as before: axum's
//! `http2` feature is off, and serving HTTP/1 directly skips the protocol sniffing that
//! would wait for a silent client's first bytes with no timeout at all.
//!
//! Shutdown is graceful: once the stop future resolves the loop stops accepting, tells
//! every connection to close after the request in flight (idle ones close at once), and
//! waits for them. A connection still sending its head waits at most the header timeout;
//! a caller that wants a shorter bound drops the future, which aborts the connections.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router as HttpRouter;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `stop` resolves, then shuts down gracefully (see the
/// module docs). A connection that does not send a request head within `header_timeout`
/// is closed without an answer.
pub(super) async fn serve(
    mut listener: TcpListener,
    app: HttpRouter,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    // Dropping the set (when the caller gives up waiting) aborts every connection task.
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            // axum's accept retries after errors such as running out of file descriptors.
            (stream, _) = axum::serve::Listener::accept(&mut listener) => stream,
            () = &mut stop => break,
        };
        // Forget connections that ended, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = async {
                    // The guard wait_for returns is not Send: drop it here.
                    let _ = closing.wait_for(|closing| *closing).await;
                } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Why a request body was cut off: it had not ended `limit` after the request's head.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} ms of its head", limit.as_millis())]
pub(super) struct BodyTimeout {
    limit: Duration,
}

/// Whether `error` (a body read error, as axum wraps it) is, or was caused by, a
/// [`BodyTimeout`].
pub(super) fn body_timeout(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
            return Some(*timeout);
        }
        cause = e.source();
    }
    None
}

/// Middleware giving every request body a deadline `limit` after the head arrived.
/// Bodies that have already ended (most `GET`s) are left as they are.
pub(super) async fn with_body_deadline(State(limit): State<Duration>, request: Request) -> Request {
    if request.body().is_end_stream() {
        return request;
    }
    request.map(|body| Body::new(DeadlineBody::new(body, limit)))
}

/// A request body that fails with [`BodyTimeout`] when its end has not arrived by a
/// deadline. Costs one timer per request with a body.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    timed_out: bool,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            timed_out: false,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        // What has arrived is taken; the deadline only ends a wait for more.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(Box::new(BodyTimeout { limit: this.limit }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
