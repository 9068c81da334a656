//! No panic crosses the FFI: every exported call runs inside [`guard`] or [`CatchPanic`], which
//! turn a panic into [`PeerlinkError::Internal`] carrying the panic's message.
//!
//! uniffi would catch it too, but as an untyped `InternalException` (Kotlin) or a
//! `rustPanic` the app cannot match; ours is a variant of the error it already handles.

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::PeerlinkError;

/// Runs `f`, turning a panic into `PeerlinkError::Internal`.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, PeerlinkError>) -> Result<T, PeerlinkError> {
    // AssertUnwindSafe: after a caught panic the engine's shared state is behind locks that
    // recover from poisoning (see `engine::lock`), and the caller gets an error, not a value.
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panicked(payload.as_ref())),
    }
}

/// A future that turns a panic in any poll of `F` into `PeerlinkError::Internal`.
pub(crate) struct CatchPanic<F>(Pin<Box<F>>);

impl<F> CatchPanic<F> {
    pub(crate) fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<T, F: Future<Output = Result<T, PeerlinkError>>> Future for CatchPanic<F> {
    type Output = Result<T, PeerlinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(panicked(payload.as_ref()))),
        }
    }
}

/// The error for a caught panic, logged once here so that it reaches logcat / the unified log
/// even if the app drops the exception.
pub(crate) fn panicked(payload: &(dyn Any + Send)) -> PeerlinkError {
    let detail = panic_message(payload);
    tracing::error!(%detail, "panic caught at the FFI boundary");
    PeerlinkError::internal(detail)
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_owned();
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    "panic with a non-string payload".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let r: Result<(), _> = guard(|| panic!("boom {}", 7));
        assert_eq!(
            r,
            Err(PeerlinkError::Internal {
                detail: "boom 7".into()
            })
        );
    }

    #[test]
    fn errors_and_values_pass_through() {
        assert_eq!(guard(|| Ok(3)), Ok(3));
        assert_eq!(
            guard::<()>(|| Err(PeerlinkError::NotStarted)),
            Err(PeerlinkError::NotStarted)
        );
    }

    #[tokio::test]
    async fn a_panic_in_a_future_becomes_an_internal_error() {
        let r: Result<(), _> = CatchPanic::new(async {
            tokio::task::yield_now().await;
            panic!("later");
        })
        .await;
        assert_eq!(
            r,
            Err(PeerlinkError::Internal {
                detail: "later".into()
            })
        );
    }
}
