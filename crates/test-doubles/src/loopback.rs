//! `Loopback`: an axum app served on a free 127.0.0.1 port in the background, the start-up and
//! shutdown the fake servers share. Dropping it aborts the server task and closes the shutdown
//! signal, which ends every reply still hanging on it.

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running loopback server.
#[derive(Debug)]
pub(crate) struct Loopback {
    addr: SocketAddr,
    server: JoinHandle<()>,
    /// Dropped with the server: receivers see `changed()` fail, so hung replies end.
    _shutdown: watch::Sender<()>,
}

/// The shutdown signal a fake hands to its replies: `changed()` fails once the server is dropped.
pub(crate) fn shutdown_signal() -> (watch::Sender<()>, watch::Receiver<()>) {
    watch::channel(())
}

impl Loopback {
    /// Binds 127.0.0.1 on a free port and serves `app` on the calling tokio runtime; `name`
    /// (e.g. "fake OpenAI server") is for messages.
    ///
    /// # Panics
    /// When no loopback port can be bound: a test cannot go on without its server.
    pub(crate) async fn start(name: &str, app: Router, shutdown: watch::Sender<()>) -> Self {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(e) => panic!("{name}: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => panic!("{name}: no local address: {e}"),
        };
        let name = name.to_owned();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "{name} stopped");
            }
        });
        Self {
            addr,
            server,
            _shutdown: shutdown,
        }
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.server.abort();
    }
}
