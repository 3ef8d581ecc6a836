//! The lab's web page, served on 127.0.0.1 (axum):
//!
//! * `/` the page: the live graph, the targets table, the timeline;
//! * `/events` server-sent events, one snapshot (JSON) each tick; the
//!   stream ends after the run's final snapshot;
//! * `/state` the latest snapshot as plain JSON.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One published snapshot: its JSON, and whether it is the run's last.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frame {
    pub json: Arc<str>,
    pub last: bool,
}

const PAGE: &str = include_str!("page.html");

/// Serves the page until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, feed: watch::Receiver<Frame>) {
    let app = Router::new()
        .route("/", get(page))
        .route("/state", get(state))
        .route("/events", get(events))
        .with_state(feed);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the lab's web server stopped");
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn state(State(feed): State<watch::Receiver<Frame>>) -> impl IntoResponse {
    let json = feed.borrow().json.to_string();
    ([(header::CONTENT_TYPE, "application/json")], json)
}

async fn events(
    State(mut feed): State<watch::Receiver<Frame>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    feed.mark_changed();
    let stream = stream::unfold((feed, false), |(mut feed, done)| async move {
        if done || feed.changed().await.is_err() {
            return None;
        }
        let frame = feed.borrow_and_update().clone();
        let event = Event::default()
            .event(if frame.last { "end" } else { "snapshot" })
            .data(&*frame.json);
        Some((Ok(event), (feed, frame.last)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
}
