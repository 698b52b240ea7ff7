//! One ACP client connection over an agent's pipes: the handlers for what the agent asks of us
//! (`session/update`, `fs/*`, `session/request_permission`) and a driver task that runs the
//! connection until it is stopped or the agent hangs up.
//!
//! The crate's connection handles are `Send + Sync`, so the driver is an ordinary tokio task.
//! Updates are routed to the turn running on their session through a channel the dispatch loop
//! never waits on (bounded by pausing the agent's stdout instead, see [`super::stdout`]); the loop
//! handles messages in arrival order, so every update of a turn is in that channel before the
//! prompt's response is delivered. The agent's stdout fails on a line over the configured limit,
//! which ends the connection with that reason ([`Connection::failure`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    ReadTextFileRequest, RequestPermissionRequest, SessionNotification, SessionUpdate,
    WriteTextFileRequest,
};
use agent_client_protocol::{Agent, ByteStreams, Client};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use super::client::ClientState;
use super::process::Pipes;
use super::stdout::{AgentStdout, StdoutLimits};
use crate::agent::AgentError;

/// Where the updates of each session with a running turn go. The channels are unbounded in type
/// but bounded in effect: every queued update counts in the shared [`Backlog`], and the agent's
/// stdout is not read while it is full (see [`super::stdout`]), so the dispatch loop never waits
/// on a turn and memory stays bounded by the backlog's capacity.
#[derive(Debug)]
pub(crate) struct TurnRouter {
    sinks: Mutex<HashMap<String, mpsc::UnboundedSender<SessionUpdate>>>,
    limits: Arc<StdoutLimits>,
}

/// The receiving end of one turn's updates; gives every update it did not receive back to the
/// backlog when dropped.
#[derive(Debug)]
pub(crate) struct TurnUpdates {
    receiver: mpsc::UnboundedReceiver<SessionUpdate>,
    limits: Arc<StdoutLimits>,
}

impl TurnUpdates {
    /// The next update; `None` once the route is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<SessionUpdate> {
        let update = self.receiver.recv().await?;
        self.limits.backlog.remove();
        Some(update)
    }
}

impl Drop for TurnUpdates {
    fn drop(&mut self) {
        // Closed first, so no send succeeds after the drain below.
        self.receiver.close();
        while self.receiver.try_recv().is_ok() {
            self.limits.backlog.remove();
        }
    }
}

impl TurnRouter {
    pub(crate) fn new(limits: Arc<StdoutLimits>) -> Self {
        Self {
            sinks: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn sinks(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<SessionUpdate>>> {
        // Every critical section is one map operation, so a poisoned map is still consistent.
        self.sinks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts receiving `session_id`'s updates; `None` if a turn already runs on it.
    pub(crate) fn register(&self, session_id: &str) -> Option<TurnUpdates> {
        let mut sinks = self.sinks();
        if sinks.get(session_id).is_some_and(|sink| !sink.is_closed()) {
            return None;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        sinks.insert(session_id.to_owned(), sender);
        Some(TurnUpdates {
            receiver,
            limits: self.limits.clone(),
        })
    }

    /// Stops routing `session_id`'s updates; the receiver then drains and ends.
    pub(crate) fn unregister(&self, session_id: &str) {
        self.sinks().remove(session_id);
    }

    fn route(&self, notification: SessionNotification) {
        let sinks = self.sinks();
        // Updates outside a turn (history replayed by `session/load`, command lists) are
        // dropped: there is no turn to attribute them to.
        if let Some(sink) = sinks.get(notification.session_id.0.as_ref()) {
            // Counted before the send, so the receiver never takes one off before it was added;
            // a failed send (the turn is gone) gives it back.
            self.limits.backlog.add();
            if sink.send(notification.update).is_err() {
                self.limits.backlog.remove();
            }
        }
    }
}

/// A live connection to one agent process.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) cx: ConnectionTo<Agent>,
    pub(crate) router: Arc<TurnRouter>,
    limits: Arc<StdoutLimits>,
    /// True once the driver has finished (stopped, or the agent hung up or broke the protocol).
    closed: watch::Receiver<bool>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Starts the connection over `pipes`; the agent's requests are answered from `client`.
    pub(crate) async fn start(
        pipes: Pipes,
        client: Arc<ClientState>,
        limits: Arc<StdoutLimits>,
    ) -> Result<Self, AgentError> {
        let router = Arc::new(TurnRouter::new(limits.clone()));
        let transport = ByteStreams::new(
            pipes.stdin.compat_write(),
            AgentStdout::new(pipes.stdout, limits.clone()).compat(),
        );
        let builder = Client
            .v1()
            .name("spectask")
            .on_receive_notification(
                {
                    let router = router.clone();
                    async move |notification: SessionNotification, _cx| {
                        router.route(notification);
                        Ok(())
                    }
                },
                agent_client_protocol::on_receive_notification!(),
            )
            .on_receive_request(
                {
                    let client = client.clone();
                    async move |request: ReadTextFileRequest, responder, _cx| {
                        // A failed response means the connection is going away; the driver
                        // reports that, so the handler itself succeeds.
                        let _ = match client.read_text_file(&request).await {
                            Ok(response) => responder.respond(response),
                            Err(error) => responder.respond_with_error(error),
                        };
                        Ok(())
                    }
                },
                agent_client_protocol::on_receive_request!(),
            )
            .on_receive_request(
                {
                    let client = client.clone();
                    async move |request: WriteTextFileRequest, responder, _cx| {
                        // Under the `ask` policy a write waits for a human, like a permission
                        // request: answered from a task of its own, so one thread's pending
                        // write never holds up the other threads of the same agent.
                        let client = client.clone();
                        tokio::spawn(async move {
                            let _ = match client.write_text_file(&request).await {
                                Ok(response) => responder.respond(response),
                                Err(error) => responder.respond_with_error(error),
                            };
                        });
                        Ok(())
                    }
                },
                agent_client_protocol::on_receive_request!(),
            )
            .on_receive_request(
                {
                    let client = client.clone();
                    async move |request: RequestPermissionRequest, responder, _cx| {
                        // A human may take minutes to answer: answer from a task of its own so the
                        // connection keeps relaying the other sessions' traffic meanwhile.
                        let client = client.clone();
                        tokio::spawn(async move {
                            let _ = responder.respond(client.answer_permission(&request).await);
                        });
                        Ok(())
                    }
                },
                agent_client_protocol::on_receive_request!(),
            );

        let (cx_tx, cx_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (closed_tx, closed) = watch::channel(false);
        let instance_id = client.instance_id.clone();
        let driver = tokio::spawn(async move {
            let result = builder
                .connect_with(transport, async move |cx: ConnectionTo<Agent>| {
                    let _ = cx_tx.send(cx.clone());
                    tokio::select! {
                        _ = stop_rx => {}
                        () = cx.incoming_closed() => {}
                    }
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => tracing::debug!(%instance_id, "ACP connection closed"),
                Err(err) => tracing::warn!(%instance_id, %err, "ACP connection failed"),
            }
            closed_tx.send_replace(true);
        });
        let cx = cx_rx.await.map_err(|_| {
            AgentError::Disconnected("the ACP connection ended before it started".to_owned())
        })?;
        Ok(Self {
            cx,
            router,
            limits,
            closed,
            stop: Mutex::new(Some(stop_tx)),
            driver,
        })
    }

    /// Why the connection was ended by spectask's own bounds (a line over the limit), if it was.
    pub(crate) fn failure(&self) -> Option<String> {
        self.limits.overflow.get().cloned()
    }

    /// Whether the agent's stdout is not being read because turns are behind on their updates;
    /// an unanswered probe then proves nothing.
    pub(crate) fn reading_paused(&self) -> bool {
        self.limits.backlog.is_full()
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the connection has ended.
    pub(crate) async fn wait_closed(&self) {
        let mut closed = self.closed.clone();
        // An error means the driver is gone, which is closed too.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Ends the connection: the driver stops, dropping the agent's stdin (EOF for the agent).
    /// A driver that does not finish within `grace` is aborted, which drops the pipes as well.
    pub(crate) async fn close(&self, grace: std::time::Duration) {
        if let Some(stop) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = stop.send(());
        }
        if tokio::time::timeout(grace, self.wait_closed())
            .await
            .is_err()
        {
            self.driver.abort();
        }
    }

    /// For synchronous contexts: drops the driver (and with it the agent's stdin) at once.
    pub(crate) fn abort(&self) {
        self.driver.abort();
    }
}
