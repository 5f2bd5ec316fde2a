//! One proxy's stream on the push server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::input::{self, MAX_ERROR_DETAIL, MAX_SHOWN, printable};
use crate::proto::{DiscoveryRequest, DiscoveryResponse, Resource};
use crate::resource::{PROXY_CONFIG_TYPE_URL, config_version, piece_hash};
use crate::snapshot::{Piece, SharedEntry};
use crate::{ProxyEntry, PushSnapshot, SyncTable};

/// How many names an on-demand proxy may subscribe to.
const MAX_SUBSCRIBED: usize = 10_000;

/// How many known proxy ids a `NOT_FOUND` message lists.
const KNOWN_IDS_SHOWN: usize = 10;

/// Bodies beyond this many bytes go into another response of the same change: the
/// gRPC encoder of a stream keeps a buffer as large as the largest message it sent,
/// so a proxy's first config in one response would cost its size for as long as
/// the proxy stays connected.
const RESPONSE_BYTES: usize = 64 * 1024;

pub(super) struct ProxyStream {
    pub(super) id: u64,
    pub(super) peer: Option<SocketAddr>,
    /// The SPIFFE id the caller proved (mutual TLS), when the server knows it.
    pub(super) caller: Option<String>,
    pub(super) requests: Streaming<DiscoveryRequest>,
    pub(super) responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    pub(super) snapshots: watch::Receiver<Arc<PushSnapshot>>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) sync: SyncTable,
    /// With on-demand discovery: the names the proxy asked for.
    pub(super) wanted: Option<BTreeSet<String>>,
    /// Shared by all streams: how many push at once.
    pub(super) gate: Arc<super::gate::PushGate>,
}

/// What a proxy should hold of an entry: everything, or (on demand) a subset.
struct Target {
    version: String,
    subset: Option<Vec<Arc<Piece>>>,
}

/// Why a stream ended.
enum End {
    /// The proxy closed its side, or went away.
    ProxyGone,
    /// The stream ends with this status sent to the proxy.
    Status(Status),
}

/// What wakes a stream up.
enum Event {
    Request(Result<Option<Box<DiscoveryRequest>>, Status>),
    /// A new snapshot (true), or the publisher is gone (false).
    Snapshot(bool),
    Stop,
    Closed,
}

/// What this stream has sent.
struct Sent {
    /// The version of the whole config the last response made.
    version: String,
    nonce: String,
    /// The entry that response brought the proxy to.
    entry: ProxyEntry,
}

/// What the proxy holds, as far as this stream knows: what it said it held when it
/// subscribed (or in its last NACK), and what was sent since.
struct Held {
    /// The version of the proxy's own part.
    own: Option<String>,
    pieces: HeldPieces,
    /// Resources the proxy refused, by name, with the version refused; an empty
    /// version when it refused to drop the resource.
    rejected: HashMap<String, String>,
}

enum HeldPieces {
    /// The pieces of a shared part sent on this stream.
    Entry(Arc<SharedEntry>),
    /// The pieces of a shared part an on-demand proxy was sent, sorted by name.
    Subset(Vec<Arc<Piece>>),
    /// The pieces the proxy listed, name to version.
    Listed(BTreeMap<String, String>),
}

/// A response's worth of changes.
#[derive(Default)]
struct Delta {
    resources: Vec<Resource>,
    removed: Vec<String>,
    bytes: usize,
    /// Changes left out because the proxy refused them.
    refused: usize,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.removed.is_empty()
    }

    /// Whether it only changes endpoints (such a push goes first).
    fn endpoints_only(&self) -> bool {
        self.removed.is_empty()
            && self
                .resources
                .iter()
                .all(|r| skiff_model::config::is_endpoints_piece(&r.name))
    }

    fn send(&mut self, name: &str, version: &str, body: &bytes::Bytes) {
        self.bytes += body.len();
        self.resources.push(Resource {
            name: name.to_owned(),
            version: version.to_owned(),
            body: body.clone(),
        });
    }
}

impl Held {
    /// What the proxy says it holds, name to version (its own part under its id).
    fn listed(proxy: &str, mut versions: BTreeMap<String, String>) -> Self {
        let own = versions.remove(proxy);
        Held {
            own,
            pieces: HeldPieces::Listed(versions),
            rejected: HashMap::new(),
        }
    }

    fn sent(entry: &ProxyEntry, target: Target) -> Self {
        Held {
            own: Some(entry.own_version.clone()),
            pieces: match target.subset {
                Some(subset) => HeldPieces::Subset(subset),
                None => HeldPieces::Entry(entry.shared.clone()),
            },
            rejected: HashMap::new(),
        }
    }

    fn refused(&self, name: &str, version: &str) -> bool {
        self.rejected.get(name).is_some_and(|v| v == version)
    }

    /// The resources that bring the proxy from what it holds to `entry`, leaving out
    /// versions it refused.
    fn delta(&self, proxy: &str, entry: &ProxyEntry, subset: Option<&[Arc<Piece>]>) -> Delta {
        let mut delta = Delta::default();
        if self.own.as_deref() == Some(entry.own_version.as_str()) {
        } else if self.refused(proxy, &entry.own_version) {
            delta.refused += 1;
        } else {
            delta.send(proxy, &entry.own_version, &entry.own_body);
        }
        let want = subset.unwrap_or(&entry.shared.pieces);
        match &self.pieces {
            HeldPieces::Entry(held) if subset.is_none() && Arc::ptr_eq(held, &entry.shared) => {}
            // The common case: the proxy holds a part that others of its view hold
            // too, and wants the part they want, refusing nothing.
            HeldPieces::Entry(held) if subset.is_none() && self.rejected.is_empty() => {
                let changes = entry.shared.changes_from(held);
                for piece in &changes.changed {
                    delta.send(&piece.name, &piece.version, &piece.body);
                }
                delta.removed.extend(changes.removed.iter().cloned());
            }
            HeldPieces::Subset(held) => self.merge(
                held.iter()
                    .map(|p| (p.name.as_str(), p.version.as_str(), Arc::as_ptr(p))),
                want,
                &mut delta,
            ),
            HeldPieces::Entry(held) => self.merge(
                held.pieces
                    .iter()
                    .map(|p| (p.name.as_str(), p.version.as_str(), Arc::as_ptr(p))),
                want,
                &mut delta,
            ),
            HeldPieces::Listed(held) => self.merge(
                held.iter()
                    .map(|(n, v)| (n.as_str(), v.as_str(), std::ptr::null())),
                want,
                &mut delta,
            ),
        }
        delta
    }

    /// Walks what is held and what is wanted, both sorted by name. A held piece that
    /// is the very value wanted (successive snapshots share the pieces a change did
    /// not touch) is passed over without comparing names.
    fn merge<'a>(
        &self,
        held: impl Iterator<Item = (&'a str, &'a str, *const Piece)>,
        want: &[Arc<Piece>],
        delta: &mut Delta,
    ) {
        let mut held = held.peekable();
        let mut want = want.iter().peekable();
        loop {
            let order = match (held.peek(), want.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((_, _, held)), Some(piece)) if std::ptr::eq(*held, Arc::as_ptr(piece)) => {
                    std::cmp::Ordering::Equal
                }
                (Some((name, _, _)), Some(piece)) => (*name).cmp(piece.name.as_str()),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (name, _, _) = held.next().expect("peeked");
                    if self.refused(name, "") {
                        delta.refused += 1;
                    } else {
                        delta.removed.push(name.to_owned());
                    }
                }
                std::cmp::Ordering::Greater => {
                    let piece = want.next().expect("peeked");
                    if self.refused(&piece.name, &piece.version) {
                        delta.refused += 1;
                    } else {
                        delta.send(&piece.name, &piece.version, &piece.body);
                    }
                }
                std::cmp::Ordering::Equal => {
                    let (_, version, _) = held.next().expect("peeked");
                    let piece = want.next().expect("peeked");
                    if version == piece.version {
                    } else if self.refused(&piece.name, &piece.version) {
                        delta.refused += 1;
                    } else {
                        delta.send(&piece.name, &piece.version, &piece.body);
                    }
                }
            }
        }
    }

    /// The proxy is sent `entry`: from now on it holds it, but for what it refused
    /// and `entry` still holds as refused.
    fn advance(&mut self, proxy: &str, entry: &ProxyEntry, subset: Option<Vec<Arc<Piece>>>) {
        self.rejected.retain(|name, version| {
            let now = if name == proxy {
                Some(entry.own_version.as_str())
            } else {
                entry.shared.piece(name).map(|p| p.version.as_str())
            };
            match now {
                Some(now) => now == version,
                None => version.is_empty(),
            }
        });
        self.own = Some(entry.own_version.clone());
        self.pieces = match subset {
            Some(subset) => HeldPieces::Subset(subset),
            None => HeldPieces::Entry(entry.shared.clone()),
        };
    }
}

impl ProxyStream {
    pub(super) async fn run(mut self, first_request_timeout: std::time::Duration) {
        let first = match tokio::time::timeout(first_request_timeout, self.requests.message()).await
        {
            Ok(Ok(Some(first))) => first,
            Ok(Ok(None)) => return,
            Ok(Err(status)) => {
                // Too large, or not a discovery request: say so, not `OK`.
                tracing::warn!(peer = ?self.peer, code = ?status.code(), message = %printable(status.message(), MAX_SHOWN), "stream failed before its first request");
                let _ = self.responses.send(Err(status)).await;
                return;
            }
            Err(_) => {
                tracing::warn!(peer = ?self.peer, timeout = ?first_request_timeout, "no discovery request on a new stream in time; closing it");
                let _ = self
                    .responses
                    .send(Err(Status::deadline_exceeded(format!(
                        "no discovery request within {first_request_timeout:?}"
                    ))))
                    .await;
                return;
            }
        };
        let proxy = match check_first(&first) {
            Ok(proxy) => proxy,
            Err(status) => {
                tracing::warn!(message = status.message(), "refused a stream");
                let _ = self.responses.send(Err(status)).await;
                return;
            }
        };
        tracing::Span::current().record("proxy", proxy.as_str());
        if let Err(status) = self.check_caller(&proxy) {
            tracing::warn!(message = status.message(), "refused a stream");
            let _ = self.responses.send(Err(status)).await;
            return;
        }
        let meta = |key: &str| {
            first
                .node
                .as_ref()
                .and_then(|n| n.metadata.get(key))
                .map(|v| printable(v, MAX_SHOWN).into_owned())
        };
        let proxy_version = meta("version");
        let admin = meta("admin");
        tracing::info!(proxy = %proxy, version = ?proxy_version, resume = %first.version_info, "proxy connected");
        self.sync
            .connected(&proxy, self.id, self.peer, proxy_version, admin);
        if first.on_demand {
            self.wanted = Some(
                first
                    .subscribe
                    .iter()
                    .take(MAX_SUBSCRIBED)
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect(),
            );
        }
        let holds = first.initial_resource_versions.into_iter().collect();
        let Err(end) = self.serve(&proxy, first.version_info, holds).await;
        self.sync.disconnected(&proxy, self.id);
        match end {
            End::ProxyGone => tracing::info!(proxy = %proxy, "proxy disconnected"),
            End::Status(status) => {
                tracing::warn!(proxy = %proxy, code = ?status.code(), message = status.message(), "ending stream");
                let _ = self.responses.send(Err(status)).await;
            }
        }
    }

    /// A caller that proved an identity may subscribe only as a proxy of that identity:
    /// the workload's SPIFFE id in its config must be the caller's.
    fn check_caller(&self, proxy: &str) -> Result<(), Status> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        let snapshot = self.snapshots.borrow().clone();
        match snapshot.get(proxy) {
            Some(entry)
                if !entry.node().spiffe_id.is_empty() && entry.node().spiffe_id != *caller =>
            {
                Err(Status::permission_denied(format!(
                    "the caller is {caller}, but proxy {proxy} runs as {}: a proxy can only \
                     subscribe as the workload its certificate names",
                    entry.node().spiffe_id
                )))
            }
            _ => Ok(()),
        }
    }

    /// Serves the proxy until the stream ends; the error says why it ended.
    async fn serve(
        &mut self,
        proxy: &str,
        resume_version: String,
        holds: BTreeMap<String, String>,
    ) -> Result<Infallible, End> {
        let mut nonces = 0u64;
        let snapshot = self.snapshots.borrow_and_update().clone();
        let mut sent: Option<Sent> = None;
        let mut held = Held::listed(proxy, holds);
        let Some(entry) = snapshot.get(proxy) else {
            return Err(End::Status(unknown_proxy(proxy, &snapshot)));
        };
        let target = self.target(proxy, entry);
        if !resume_version.is_empty() && target.version == resume_version {
            tracing::info!(proxy, version = %target.version, "proxy resumed with the current version; nothing to send");
            self.sync
                .resumed(proxy, self.id, &target.version, snapshot.generation());
            sent = Some(Sent {
                version: target.version.clone(),
                nonce: String::new(),
                entry: entry.clone(),
            });
            held = Held::sent(entry, target);
        } else {
            let generation = snapshot.generation();
            self.push(
                proxy,
                entry,
                target,
                generation,
                &mut nonces,
                &mut sent,
                &mut held,
            )
            .await?;
        }
        self.sync
            .saw_generation(proxy, self.id, snapshot.generation());

        loop {
            let event = tokio::select! {
                request = self.requests.message() => Event::Request(request.map(|r| r.map(Box::new))),
                changed = self.snapshots.changed() => Event::Snapshot(changed.is_ok()),
                _ = self.stop.wait_for(|stop| *stop) => Event::Stop,
                _ = self.responses.closed() => Event::Closed,
            };
            match event {
                Event::Request(Ok(Some(request))) => {
                    self.on_request(proxy, *request, &mut nonces, &mut sent, &mut held)
                        .await?;
                }
                Event::Request(Ok(None)) | Event::Closed => return Err(End::ProxyGone),
                Event::Request(Err(status)) => {
                    // A message too large or not a discovery request ends the stream
                    // with its status; a stream the proxy broke off gets nothing.
                    tracing::debug!(proxy, %status, "request stream failed");
                    return Err(match status.code() {
                        tonic::Code::OutOfRange
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Internal
                        | tonic::Code::InvalidArgument => End::Status(status),
                        _ => End::ProxyGone,
                    });
                }
                Event::Snapshot(false) => {
                    return Err(End::Status(Status::unavailable(
                        "the control plane stopped publishing configuration",
                    )));
                }
                Event::Snapshot(true) => {
                    let snapshot = self.snapshots.borrow_and_update().clone();
                    let Some(entry) = snapshot.get(proxy) else {
                        return Err(End::Status(unknown_proxy(proxy, &snapshot)));
                    };
                    let target = self.target(proxy, entry);
                    if sent.as_ref().map(|s| s.version.as_str()) != Some(target.version.as_str()) {
                        let generation = snapshot.generation();
                        self.push(
                            proxy,
                            entry,
                            target,
                            generation,
                            &mut nonces,
                            &mut sent,
                            &mut held,
                        )
                        .await?;
                    } else {
                        tracing::debug!(
                            proxy,
                            generation = snapshot.generation(),
                            "config unchanged; no push"
                        );
                    }
                    self.sync
                        .saw_generation(proxy, self.id, snapshot.generation());
                }
                Event::Stop => {
                    return Err(End::Status(Status::unavailable(
                        "the control plane is shutting down",
                    )));
                }
            }
        }
    }

    async fn on_request(
        &mut self,
        proxy: &str,
        request: DiscoveryRequest,
        nonces: &mut u64,
        sent: &mut Option<Sent>,
        held: &mut Held,
    ) -> Result<(), End> {
        if !request.type_url.is_empty() && request.type_url != PROXY_CONFIG_TYPE_URL {
            return Err(End::Status(unknown_type(&request.type_url)));
        }
        if request.response_nonce.is_empty() && !request.subscribe.is_empty() {
            // More names for an on-demand proxy: send what they add.
            let Some(wanted) = self.wanted.as_mut() else {
                return Ok(());
            };
            let room = MAX_SUBSCRIBED.saturating_sub(wanted.len());
            if request.subscribe.len() > room {
                tracing::warn!(
                    proxy,
                    limit = MAX_SUBSCRIBED,
                    left_out = request.subscribe.len() - room,
                    "on-demand subscription over the limit of names; the rest is left out"
                );
            }
            wanted.extend(
                request
                    .subscribe
                    .iter()
                    .take(room)
                    .map(|n| n.trim().to_ascii_lowercase()),
            );
            tracing::info!(proxy, names = ?request.subscribe, "on-demand subscription");
            let snapshot = self.snapshots.borrow().clone();
            let Some(entry) = snapshot.get(proxy) else {
                return Err(End::Status(unknown_proxy(proxy, &snapshot)));
            };
            let target = self.target(proxy, entry);
            self.push(
                proxy,
                entry,
                target,
                snapshot.generation(),
                nonces,
                sent,
                held,
            )
            .await?;
            return Ok(());
        }
        if request.response_nonce.is_empty() {
            // A new subscription on the same stream: send what differs from what the
            // proxy says it holds, unless it runs the current version.
            let snapshot = self.snapshots.borrow().clone();
            let Some(entry) = snapshot.get(proxy) else {
                return Err(End::Status(unknown_proxy(proxy, &snapshot)));
            };
            let target = self.target(proxy, entry);
            if request.version_info != target.version {
                *held = Held::listed(
                    proxy,
                    request.initial_resource_versions.into_iter().collect(),
                );
                self.push(
                    proxy,
                    entry,
                    target,
                    snapshot.generation(),
                    nonces,
                    sent,
                    held,
                )
                .await?;
            }
            return Ok(());
        }
        let Some(current) = sent.as_ref().filter(|s| s.nonce == request.response_nonce) else {
            tracing::debug!(proxy, nonce = %printable(&request.response_nonce, MAX_SHOWN), "stale nonce; ignored");
            return Ok(());
        };
        match request.error_detail {
            Some(error) => {
                let reason = printable(&error.message, MAX_ERROR_DETAIL);
                let runs = printable(&request.version_info, MAX_SHOWN);
                tracing::warn!(proxy, version = %current.version, %runs, %reason, refused = request.rejected_resources.len(), "proxy rejected resources of its config (NACK)");
                self.sync.nacked(proxy, self.id, &current.version, &reason);
                // The proxy says what it holds now; what it refused is not sent again
                // until it changes.
                let entry = &current.entry;
                let mut now = Held::listed(
                    proxy,
                    request.initial_resource_versions.into_iter().collect(),
                );
                let refused: Vec<String> = if request.rejected_resources.is_empty() {
                    let target = self.target(proxy, entry);
                    let all = now.delta(proxy, entry, target.subset.as_deref());
                    all.resources
                        .into_iter()
                        .map(|r| r.name)
                        .chain(all.removed)
                        .collect()
                } else {
                    request.rejected_resources
                };
                for name in refused {
                    let version = if name == proxy {
                        Some(entry.own_version.clone())
                    } else {
                        entry.shared.piece(&name).map(|p| p.version.clone())
                    };
                    now.rejected.insert(name, version.unwrap_or_default());
                }
                *held = now;
            }
            None => {
                let acked = printable(&request.version_info, MAX_SHOWN);
                if request.version_info != current.version {
                    tracing::warn!(proxy, sent = %current.version, %acked, "ACK names another version than the one sent");
                } else {
                    tracing::debug!(proxy, version = %acked, "ACK");
                }
                self.sync.acked(proxy, self.id, &acked);
            }
        }
        Ok(())
    }

    /// Pushes what brings the proxy to `target` of `entry`, what snapshot `generation`
    /// holds for it.
    #[allow(clippy::too_many_arguments)] // reason: the stream's state, passed apart
    async fn push(
        &mut self,
        proxy: &str,
        entry: &ProxyEntry,
        target: Target,
        generation: u64,
        nonces: &mut u64,
        sent: &mut Option<Sent>,
        held: &mut Held,
    ) -> Result<(), End> {
        let started = tokio::time::Instant::now();
        let mut delta = held.delta(proxy, entry, target.subset.as_deref());
        held.advance(proxy, entry, target.subset);
        let version = target.version;
        if delta.is_empty() {
            if delta.refused == 0 {
                // The proxy holds this version already (its NACK said what it holds).
                tracing::debug!(proxy, %version, "the proxy holds this version; nothing to send");
                self.sync.resumed(proxy, self.id, &version, generation);
                *sent = Some(Sent {
                    version: version.clone(),
                    nonce: String::new(),
                    entry: entry.clone(),
                });
            } else {
                tracing::debug!(proxy, %version, "nothing to send but what the proxy refused");
            }
            return Ok(());
        }
        let (count, removed, bytes) = (delta.resources.len(), delta.removed.len(), delta.bytes);
        let urgent = delta.endpoints_only();
        let queued = tokio::time::Instant::now();
        let mut place = Some(self.gate.enter(urgent).await);
        self.sync.queued(queued.elapsed());
        let mut parts = split(delta.resources).into_iter().peekable();
        let mut nonce = String::new();
        while let Some(resources) = parts.next() {
            let last = parts.peek().is_none();
            *nonces += 1;
            nonce = nonces.to_string();
            let response = DiscoveryResponse {
                type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
                version_info: version.clone(),
                nonce: nonce.clone(),
                resources,
                removed_resources: if last {
                    std::mem::take(&mut delta.removed)
                } else {
                    Vec::new()
                },
                more: !last,
            };
            let slot = match place {
                Some(_) => {
                    match tokio::time::timeout(self.gate.hold(), self.responses.reserve()).await {
                        Ok(slot) => slot,
                        Err(_slow) => {
                            // The proxy does not read: let other pushes go on.
                            tracing::warn!(
                                proxy,
                                hold = ?self.gate.hold(),
                                "the proxy takes no response; its push gives its place to others"
                            );
                            place = None;
                            self.responses.reserve().await
                        }
                    }
                }
                None => self.responses.reserve().await,
            };
            match slot {
                Ok(slot) => slot.send(Ok(response)),
                Err(_) => {
                    self.sync.push_failed();
                    return Err(End::ProxyGone);
                }
            }
        }
        drop(place);
        tracing::info!(proxy, %version, nonce = %nonce, resources = count, removed, bytes, "pushed config");
        self.sync.pushed(
            proxy,
            self.id,
            &version,
            generation,
            bytes,
            started.elapsed(),
        );
        *sent = Some(Sent {
            version,
            nonce,
            entry: entry.clone(),
        });
        Ok(())
    }

    /// What the proxy should hold of `entry`: all of it, or what it asked for (which
    /// the sync table then compares it with).
    fn target(&self, proxy: &str, entry: &ProxyEntry) -> Target {
        match &self.wanted {
            None => Target {
                version: entry.version.clone(),
                subset: None,
            },
            Some(wanted) => {
                let subset = entry.shared.subset(wanted);
                let digest = subset
                    .iter()
                    .fold(0, |d, p| d ^ piece_hash(&p.name, &p.version));
                let version = config_version(&entry.own_version, digest);
                self.sync.wants(proxy, self.id, &version);
                Target {
                    version,
                    subset: Some(subset),
                }
            }
        }
    }
}

/// Resources in runs of at most [`RESPONSE_BYTES`] of bodies (a larger body alone),
/// in order; one empty run when there are none.
fn split(resources: Vec<Resource>) -> Vec<Vec<Resource>> {
    let mut parts = vec![Vec::new()];
    let mut size = 0;
    for resource in resources {
        let len = resource.body.len();
        if size > 0 && size + len > RESPONSE_BYTES {
            parts.push(Vec::new());
            size = 0;
        }
        size += len;
        parts.last_mut().expect("never empty").push(resource);
    }
    parts
}

/// Checks the first request of a stream and returns the proxy id it names.
fn check_first(first: &DiscoveryRequest) -> Result<String, Status> {
    input::check_node(first).map_err(Status::invalid_argument)?;
    let id = first.node.as_ref().map(|n| n.id.trim()).unwrap_or_default();
    if id.is_empty() {
        return Err(Status::invalid_argument(
            "the first request of a stream must name the proxy in node.id",
        ));
    }
    if first.type_url != PROXY_CONFIG_TYPE_URL {
        return Err(unknown_type(&first.type_url));
    }
    if let Some(other) = first.resource_names.iter().find(|n| n.as_str() != id) {
        return Err(Status::invalid_argument(format!(
            "proxy {id:?} asked for resource {:?}; a proxy can only subscribe to its own config",
            printable(other, MAX_SHOWN)
        )));
    }
    Ok(id.to_owned())
}

fn unknown_type(type_url: &str) -> Status {
    Status::invalid_argument(format!(
        "unknown resource type {:?}; this control plane serves {PROXY_CONFIG_TYPE_URL}",
        printable(type_url, MAX_SHOWN)
    ))
}

fn unknown_proxy(proxy: &str, snapshot: &PushSnapshot) -> Status {
    let known: Vec<&str> = snapshot
        .proxies()
        .map(|(id, _)| id)
        .take(KNOWN_IDS_SHOWN)
        .collect();
    let more = snapshot.len().saturating_sub(known.len());
    let known = if known.is_empty() {
        "none".to_owned()
    } else if more > 0 {
        format!("{} and {more} more", known.join(", "))
    } else {
        known.join(", ")
    };
    let hint = match proxy.rsplit_once('.') {
        Some((name, ns)) => format!(
            "no workload named {name:?} in namespace {ns:?} runs a proxy in the mesh config"
        ),
        None => "proxy ids are <workload name>.<namespace>".to_owned(),
    };
    Status::not_found(format!(
        "proxy {proxy:?} is unknown to the control plane: {hint}; known proxies: {known}"
    ))
}

#[cfg(test)]
mod tests;
