//! The pretty format: tracing-subscriber's `fmt` layer, told each event's
//! category so that [`NonBlocking`](crate::NonBlocking) routes its lines
//! the way it routes JSON lines.

use std::cell::Cell;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;

use crate::format::event_category;
use crate::level::LogCategory;

thread_local! {
    /// The category of the event a [`Categorized`] layer is handling on this thread.
    static CURRENT: Cell<LogCategory> = const { Cell::new(LogCategory::System) };
}

/// The category of the event a [`Categorized`] layer is handling on this
/// thread; `system` outside one.
pub(crate) fn current_category() -> LogCategory {
    CURRENT.try_with(Cell::get).unwrap_or_default()
}

/// A layer (the `fmt` layer) run with each event's category known to
/// [`current_category`], which the writers it makes read.
///
/// An event's writer is made inside the inner layer's `on_event`, on the
/// same thread, so the category set around that call is the event's own
/// (and put back afterwards, should events ever nest).
#[derive(Debug)]
pub(crate) struct Categorized<L> {
    inner: L,
}

impl<L> Categorized<L> {
    pub(crate) fn new(inner: L) -> Self {
        Self { inner }
    }
}

/// Puts back the category of the event being handled before this one.
struct Restore(Option<LogCategory>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(previous) = self.0 {
            let _ = CURRENT.try_with(|c| c.set(previous));
        }
    }
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for Categorized<L> {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let category = event_category(event);
        let _restore = Restore(CURRENT.try_with(|c| c.replace(category)).ok());
        self.inner.on_event(event, ctx);
    }

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}
