//! Client sessions: ids minted by the gateway, mapped to upstream sessions.
//!
//! A session id is 160 random bits in hex (unpredictable; its format may later carry
//! sealed routing state). Unknown or ended sessions are answered with 404; `DELETE`,
//! idle expiry and shutdown end a session and free its upstream.
//!
//! A session id is a bearer credential for its session, so it is never logged: logs
//! carry the session's [`tag`](Session::tag), which cannot be turned back into it.

mod clients;
mod streams;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::RngCore;

pub use clients::{ClientCounts, ClientSlot};
pub use streams::{Resumed, SseStream, StreamRegistry, DEFAULT_BUFFER_BYTES};

// === impl McpReply: what sessions attach to replies ===

/// The session an `initialize` created, on its reply.
#[derive(Clone)]
struct NewSession(Arc<Session>);

/// A stream of the session taken up again, on the reply to the GET that did it.
#[derive(Clone)]
struct ResumedSlot(Arc<Mutex<Option<Resumed>>>);

impl crate::reply::McpReply {
    /// This reply created `session` (`initialize`): the front announces it.
    pub fn with_new_session(mut self, session: Arc<Session>) -> Self {
        self.extensions.insert(NewSession(session));
        self
    }

    /// The session this reply created, if any.
    pub fn new_session(&self) -> Option<&Arc<Session>> {
        self.extensions.get::<NewSession>().map(|s| &s.0)
    }

    /// The reply to a GET that takes up a stream of the session again
    /// (`Last-Event-ID`, or a GET stream no client was reading): events to replay,
    /// then its live source. Its messages passed the stages when the stream was
    /// first opened, and still do as they come: stages see the request that resumed
    /// it (its body is `Accepted`), not its messages a second time.
    pub fn resumed(resumed: Resumed) -> Self {
        let mut reply = crate::reply::McpReply::accepted();
        reply.extensions.insert(ResumedSlot(Arc::new(Mutex::new(Some(resumed)))));
        reply
    }

    /// The stream this reply takes up again, if it is one (taken once).
    pub fn take_resumed(&self) -> Option<Resumed> {
        self.extensions.get::<ResumedSlot>().and_then(|slot| slot.0.lock().take())
    }
}

use crate::error::GatewayError;
use crate::protocol::ProtocolVersion;
use crate::upstream::UpstreamSession;

/// A new unpredictable session id: 20 bytes from the OS-seeded CSPRNG, in hex.
pub fn mint_id() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag that stands for session id `id` in logs: the first 8 hex digits of the
/// id's SHA-256 (one-way, so a log reader cannot use it to join the session).
pub fn log_tag(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// One client session.
pub struct Session {
    id: Arc<str>,
    tag: Arc<str>,
    route: Arc<str>,
    upstream_name: Arc<str>,
    upstream: UpstreamSession,
    version: AtomicU8,
    last_active: Mutex<Instant>,
    ended: AtomicBool,
    /// Counts it against its client's `max_sessions_per_client` while it is open.
    client_slot: Mutex<Option<ClientSlot>>,
    /// The authenticated principal that opened it (its id), if a stage authenticated
    /// the `initialize`: only that principal may use it.
    owner: Option<Arc<str>>,
    /// Its SSE streams.
    pub streams: StreamRegistry,
}

impl Session {
    /// A session bound to `upstream`.
    pub fn new(
        id: String,
        route: Arc<str>,
        upstream_name: Arc<str>,
        upstream: UpstreamSession,
        streams: StreamRegistry,
    ) -> Self {
        Session {
            tag: log_tag(&id).into(),
            id: id.into(),
            route,
            upstream_name,
            upstream,
            version: AtomicU8::new(0),
            last_active: Mutex::new(Instant::now()),
            ended: AtomicBool::new(false),
            client_slot: Mutex::new(None),
            owner: None,
            streams,
        }
    }

    /// Owned by the principal `owner` (see [`Session::owner`]).
    pub fn with_owner(mut self, owner: Option<Arc<str>>) -> Self {
        self.owner = owner;
        self
    }

    /// The id of the principal that opened it, when the `initialize` was
    /// authenticated.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Counts the session against its client (see [`SessionStore::client_slot`]) until
    /// it ends.
    pub fn with_client_slot(self, slot: Option<ClientSlot>) -> Self {
        *self.client_slot.lock() = slot;
        self
    }

    /// Gives its client's slot back (it has left the store).
    fn release_client_slot(&self) {
        self.client_slot.lock().take();
    }

    /// The id the client sends in `Mcp-Session-Id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id, shared (for maps keyed by session; as secret as [`Session::id`]).
    pub fn shared_id(&self) -> &Arc<str> {
        &self.id
    }

    /// What stands for the id in logs (see [`log_tag`]); never log [`Session::id`].
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The endpoint path it was created on; it is unknown on every other.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The name of the upstream serving it.
    pub fn upstream_name(&self) -> &Arc<str> {
        &self.upstream_name
    }

    /// The upstream side.
    pub fn upstream(&self) -> &UpstreamSession {
        &self.upstream
    }

    /// The revision negotiated at initialize, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        let index = self.version.load(Ordering::Relaxed) as usize;
        index.checked_sub(1).and_then(|i| ProtocolVersion::ALL.get(i).copied())
    }

    /// Records the negotiated revision.
    pub fn set_version(&self, version: ProtocolVersion) {
        if let Some(i) = ProtocolVersion::ALL.iter().position(|v| *v == version) {
            self.version.store(i as u8 + 1, Ordering::Relaxed);
        }
    }

    /// Marks the session as used now.
    pub fn touch(&self) {
        *self.last_active.lock() = Instant::now();
    }

    /// Whether the session can still serve.
    pub fn is_alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst) && self.upstream.is_alive()
    }

    fn idle_for(&self) -> Duration {
        if self.streams.any_attached() {
            return Duration::ZERO;
        }
        self.last_active.lock().elapsed()
    }

    /// Ends the session: its streams close and its upstream is freed.
    pub async fn close(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.release_client_slot();
        self.streams.close_all();
        self.upstream.close().await;
    }
}

/// Every live session, by id.
pub struct SessionStore {
    sessions: RwLock<HashMap<Arc<str>, Arc<Session>>>,
    idle_timeout: Duration,
    clients: Arc<ClientCounts>,
}

impl SessionStore {
    /// An empty store whose sessions expire after `idle_timeout` without use.
    pub fn new(idle_timeout: Duration) -> Arc<Self> {
        Self::bounded(idle_timeout, 0)
    }

    /// The same, with at most `max_sessions_per_client` open sessions per client
    /// (0: no bound).
    pub fn bounded(idle_timeout: Duration, max_sessions_per_client: usize) -> Arc<Self> {
        Arc::new(SessionStore {
            sessions: RwLock::new(HashMap::new()),
            idle_timeout,
            clients: ClientCounts::new(max_sessions_per_client),
        })
    }

    /// A slot for one more session of `client` (`None`: a front without clients to
    /// tell apart, such as forward stdio). A client with `max_sessions_per_client`
    /// open sessions gets [`GatewayError::TooManyRequests`] (after sessions of it
    /// whose upstream is gone are removed).
    pub fn client_slot(&self, client: Option<&Arc<str>>) -> Result<Option<ClientSlot>, GatewayError> {
        let Some(client) = client else { return Ok(None) };
        if let Some(slot) = self.clients.try_take(client) {
            return Ok(Some(slot));
        }
        self.remove_dead();
        if let Some(slot) = self.clients.try_take(client) {
            return Ok(Some(slot));
        }
        metrics::counter!("shadowcat_sessions_refused_total", "reason" => "per_client").increment(1);
        tracing::info!(%client, max = self.clients.max(), "initialize refused: the client has max_sessions_per_client sessions");
        Err(GatewayError::TooManyRequests {
            detail: format!(
                "this client already has {} open sessions (server.max_sessions_per_client); end one (DELETE) first",
                self.clients.max()
            ),
            retry_after: None,
        })
    }

    /// Removes sessions whose upstream is gone (they are ended in the background).
    fn remove_dead(&self) {
        let dead: Vec<Arc<Session>> = {
            let mut map = self.sessions.write();
            let ids: Vec<Arc<str>> = map.values().filter(|s| !s.is_alive()).map(|s| s.id.clone()).collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in dead {
            s.release_client_slot();
            tokio::spawn(async move { s.close().await });
        }
    }

    /// Adds a session.
    pub fn insert(&self, session: Arc<Session>) {
        self.sessions.write().insert(session.id.clone(), session);
    }

    /// A live session by id. A session whose upstream is gone is removed and ended.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.sessions.read().get(id).cloned()?;
        if session.is_alive() {
            return Some(session);
        }
        if let Some(dead) = self.sessions.write().remove(id) {
            dead.release_client_slot();
            tokio::spawn(async move { dead.close().await });
        }
        None
    }

    /// Removes and ends a session; false if there was none.
    pub async fn end(&self, id: &str) -> bool {
        let removed = self.sessions.write().remove(id);
        match removed {
            Some(s) => {
                s.close().await;
                true
            }
            None => false,
        }
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends sessions idle for longer than the timeout (and sessions whose upstream died).
    pub async fn reap(&self) {
        let expired: Vec<Arc<Session>> = {
            let mut map = self.sessions.write();
            let ids: Vec<Arc<str>> = map
                .values()
                .filter(|s| !s.is_alive() || s.idle_for() > self.idle_timeout)
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in expired {
            tracing::info!(session = %s.tag, upstream = %s.upstream_name, "session expired");
            s.close().await;
        }
    }

    /// Reaps periodically until the store is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.reap().await;
            }
        });
    }

    /// Closes every session's streams, keeping the sessions (first step of shutdown).
    pub fn close_streams(&self) {
        for s in self.sessions.read().values() {
            s.streams.close_all();
        }
    }

    /// Ends every session (last step of shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Arc<Session>> = self.sessions.write().drain().map(|(_, s)| s).collect();
        let closing = all.iter().map(|s| s.close());
        futures_util::future::join_all(closing).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_and_distinct() {
        let a = mint_id();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, mint_id());
    }

    #[test]
    fn log_tags_are_short_stable_and_not_the_id() {
        let id = mint_id();
        let tag = log_tag(&id);
        assert_eq!(tag.len(), 8);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tag, log_tag(&id));
        assert!(!id.contains(&tag), "not a slice of the id");
        // SHA-256("abc") starts with ba7816bf.
        assert_eq!(log_tag("abc"), "ba7816bf");
    }
}
