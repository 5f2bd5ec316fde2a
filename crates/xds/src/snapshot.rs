//! What the push server serves: one compiled configuration per proxy, as resources:
//! the proxy's own part and the pieces of a shared part that every proxy with the
//! same view of the mesh holds. Each piece is encoded once and kept once, however
//! many views and proxies hold it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use skiff_model::config::{Node, ProxyConfig, ProxyParts, SharedConfig, SharedPiece};

use crate::resource::{
    PieceDigest, config_version, decode_piece, encode_piece, encode_proxy_config, piece_hash,
    version_of,
};

/// The compiled configuration of every proxy at one moment, immutable once built.
///
/// The control plane publishes a new snapshot (through a `tokio::sync::watch` channel)
/// whenever its inputs change; the push server compares what each proxy holds with
/// what the snapshot holds for it and sends only the resources that differ.
#[derive(Debug, Clone, Default)]
pub struct PushSnapshot {
    generation: u64,
    proxies: BTreeMap<String, ProxyEntry>,
    shared: usize,
    pieces: usize,
}

/// One proxy's configuration, encoded once for every push.
#[derive(Debug, Clone)]
pub struct ProxyEntry {
    /// The proxy's own part: node, inbound ports, gateway listeners, policies and
    /// telemetry (its shared fields are empty).
    pub own: Arc<ProxyConfig>,
    /// Its encoding on the wire (see [`crate::resource`]).
    pub own_body: Bytes,
    /// The version of `own_body`.
    pub own_version: String,
    /// The shared part, the same value for every proxy that sees the mesh alike.
    pub shared: Arc<SharedEntry>,
    /// The version of the whole ([`config_version`]).
    pub version: String,
}

/// One piece of a shared part, encoded: a resource of its own.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    /// Its name (`cluster/outbound|80||backend.prod.svc.cluster.local`, …).
    pub name: String,
    /// A hash of `body`.
    pub version: String,
    /// Its encoding on the wire.
    pub body: Bytes,
    /// For a virtual host: the names that reach it (what an on-demand proxy asks for).
    pub domains: Vec<String>,
    /// For a virtual host or a port: the clusters its routes send to.
    pub clusters: Vec<String>,
}

/// The shared part of some proxies' configurations, as encoded pieces.
#[derive(Debug)]
pub struct SharedEntry {
    /// Its pieces, sorted by name. A piece held by several shared parts is one value.
    pub pieces: Vec<Arc<Piece>>,
    /// The [`PieceDigest`] of `pieces`.
    pub digest: PieceDigest,
    /// Bytes of all pieces' bodies.
    pub size: usize,
    /// The changes from shared parts proxies held before, each worked out once for
    /// all the proxies that held it (see [`SharedEntry::changes_from`]).
    changes: std::sync::Mutex<Vec<(std::sync::Weak<SharedEntry>, Arc<Changes>)>>,
}

/// What turns one shared part into another: the pieces to send and the names to
/// remove, both sorted by name.
#[derive(Debug, Default)]
pub struct Changes {
    /// Pieces new or changed.
    pub changed: Vec<Arc<Piece>>,
    /// Names of pieces gone.
    pub removed: Vec<String>,
}

/// How many earlier shared parts an entry keeps the changes from (the views of the
/// snapshots before it; a few per view).
const KEPT_CHANGES: usize = 64;

/// Pieces already encoded, by the [`piece_hash`] of their name and version: those of
/// the snapshot being built and of the one before it, so that a piece a change did
/// not touch stays the same value from one snapshot to the next.
#[derive(Default)]
struct Interned {
    pieces: HashMap<u64, Arc<Piece>>,
    /// The pieces the new snapshot holds (each kept alive by `pieces`).
    used: HashSet<*const Piece>,
    /// The pieces encoded for the new snapshot, by name, as values: most pieces are
    /// alike in every view (a cluster and its endpoints are), and comparing values
    /// costs less than encoding them again.
    typed: HashMap<String, Vec<(SharedPiece, Arc<Piece>)>>,
}

impl Interned {
    /// Every piece of `snapshot`, ready to be used again.
    fn of(snapshot: &PushSnapshot) -> Self {
        let mut pieces = HashMap::new();
        let mut seen = HashSet::new();
        for entry in snapshot.proxies.values() {
            if seen.insert(Arc::as_ptr(&entry.shared)) {
                for piece in &entry.shared.pieces {
                    pieces.insert(piece_hash(&piece.name, &piece.version), piece.clone());
                }
            }
        }
        Interned {
            pieces,
            ..Interned::default()
        }
    }

    /// The one value of this piece, encoded only if no view had it before.
    fn intern_typed(&mut self, name: String, piece: SharedPiece) -> Arc<Piece> {
        if let Some(found) = self
            .typed
            .get(&name)
            .and_then(|alike| alike.iter().find(|(p, _)| *p == piece))
        {
            return found.1.clone();
        }
        let encoded = self.intern(name.clone(), encode_piece(&piece), &piece);
        self.typed
            .entry(name)
            .or_default()
            .push((piece, encoded.clone()));
        encoded
    }

    /// The one value of this piece.
    fn intern(&mut self, name: String, body: Bytes, typed: &SharedPiece) -> Arc<Piece> {
        let version = version_of(&body);
        let key = piece_hash(&name, &version);
        let piece = match self.pieces.get(&key) {
            Some(piece) if piece.name == name && piece.version == version => piece.clone(),
            // A new piece, or (against all odds) another one with the same hash.
            found => {
                let piece = Arc::new(Piece {
                    name,
                    version,
                    body,
                    domains: typed.domains().to_vec(),
                    clusters: typed.clusters().into_iter().map(str::to_owned).collect(),
                });
                if found.is_none() {
                    self.pieces.insert(key, piece.clone());
                }
                piece
            }
        };
        self.used.insert(Arc::as_ptr(&piece));
        piece
    }
}

impl SharedEntry {
    fn new(config: SharedConfig, interned: &mut Interned) -> Self {
        let pieces: Vec<Arc<Piece>> = config
            .into_pieces()
            .into_iter()
            .map(|(name, piece)| interned.intern_typed(name, piece))
            .collect();
        let digest = pieces
            .iter()
            .fold(0, |d, p| d ^ piece_hash(&p.name, &p.version));
        let size = pieces.iter().map(|p| p.body.len()).sum();
        SharedEntry {
            pieces,
            digest,
            size,
            changes: std::sync::Mutex::default(),
        }
    }

    /// What turns `held` into this part. After a change, every proxy of a view holds
    /// the same part and wants the same one: the walk over both is done once, for the
    /// first of them, and kept for the others.
    pub fn changes_from(&self, held: &Arc<SharedEntry>) -> Arc<Changes> {
        let mut kept = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, changes)) = kept
            .iter()
            .find(|(from, _)| std::ptr::eq(from.as_ptr(), Arc::as_ptr(held)))
        {
            return changes.clone();
        }
        let changes = Arc::new(diff_pieces(&held.pieces, &self.pieces));
        kept.retain(|(from, _)| from.strong_count() > 0);
        if kept.len() < KEPT_CHANGES {
            kept.push((Arc::downgrade(held), changes.clone()));
        }
        changes
    }

    /// The part, decoded from its pieces (for dumps and debugging).
    pub fn config(&self) -> SharedConfig {
        let decoded: Vec<(&str, SharedPiece)> = self
            .pieces
            .iter()
            .map(|p| {
                let piece = decode_piece(&p.name, &p.body)
                    .unwrap_or_else(|e| unreachable!("an encoded piece decodes: {e}"));
                (p.name.as_str(), piece)
            })
            .collect();
        SharedConfig::from_pieces(decoded.iter().map(|(n, p)| (*n, p)))
            .unwrap_or_else(|e| unreachable!("the pieces of a config join: {e}"))
    }

    /// The pieces a proxy that asked only for `authorities` needs: its ports, the
    /// mesh piece, the virtual hosts one of the names reaches (exactly, with or
    /// without the port), and the clusters and endpoints their routes send to.
    /// Sorted by name, as [`SharedEntry::pieces`].
    pub fn subset(&self, authorities: &std::collections::BTreeSet<String>) -> Vec<Arc<Piece>> {
        let reaches = |p: &Piece| {
            p.domains.iter().any(|d| {
                authorities.contains(d.as_str())
                    || authorities
                        .iter()
                        .any(|a| a.rsplit_once(':').is_some_and(|(host, _)| host == d))
            })
        };
        let mut clusters: HashSet<&str> = HashSet::new();
        let mut keep = vec![false; self.pieces.len()];
        for (i, p) in self.pieces.iter().enumerate() {
            let always = p.name.starts_with("port/") || p.name == skiff_model::config::MESH_PIECE;
            if always || (p.name.starts_with("vhost/") && reaches(p)) {
                keep[i] = true;
                clusters.extend(p.clusters.iter().map(String::as_str));
            }
        }
        for (i, p) in self.pieces.iter().enumerate() {
            let cluster = p
                .name
                .strip_prefix("cluster/")
                .or_else(|| p.name.strip_prefix("endpoints/"));
            if cluster.is_some_and(|c| clusters.contains(c)) {
                keep[i] = true;
            }
        }
        self.pieces
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// A piece by name.
    pub fn piece(&self, name: &str) -> Option<&Arc<Piece>> {
        self.pieces
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.pieces[i])
    }
}

/// The pieces of `want` that `held` lacks or holds in another version, and the names
/// `held` has that `want` lacks; both lists sorted by name. A piece that is the very
/// value held (successive snapshots share what a change did not touch) is passed
/// over without comparing.
fn diff_pieces(held: &[Arc<Piece>], want: &[Arc<Piece>]) -> Changes {
    let mut changes = Changes::default();
    let (mut h, mut w) = (held.iter().peekable(), want.iter().peekable());
    loop {
        match (h.peek(), w.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                h.next();
                w.next();
            }
            (Some(a), Some(b)) => match a.name.cmp(&b.name) {
                std::cmp::Ordering::Less => {
                    changes.removed.push(h.next().expect("peeked").name.clone())
                }
                std::cmp::Ordering::Greater => {
                    changes.changed.push(w.next().expect("peeked").clone())
                }
                std::cmp::Ordering::Equal => {
                    let (a, b) = (h.next().expect("peeked"), w.next().expect("peeked"));
                    if a.version != b.version {
                        changes.changed.push(b.clone());
                    }
                }
            },
            (Some(_), None) => changes.removed.push(h.next().expect("peeked").name.clone()),
            (None, Some(_)) => changes.changed.push(w.next().expect("peeked").clone()),
        }
    }
    changes
}

impl ProxyEntry {
    /// Encodes a whole configuration (split into its parts) and computes its version.
    pub fn new(config: ProxyConfig) -> Self {
        let parts = ProxyParts::from(config);
        let shared = Arc::unwrap_or_clone(parts.shared);
        let shared = SharedEntry::new(shared, &mut Interned::default());
        ProxyEntry::of(parts.own, Arc::new(shared))
    }

    fn of(own: ProxyConfig, shared: Arc<SharedEntry>) -> Self {
        let own_body = encode_proxy_config(&own);
        let own_version = version_of(&own_body);
        let version = config_version(&own_version, shared.digest);
        ProxyEntry {
            own: Arc::new(own),
            own_body,
            own_version,
            shared,
            version,
        }
    }

    /// Who the proxy is.
    pub fn node(&self) -> &Node {
        &self.own.node
    }

    /// The whole configuration, both parts joined (a copy: for dumps and debugging).
    pub fn config(&self) -> ProxyConfig {
        ProxyParts {
            own: ProxyConfig::clone(&self.own),
            shared: Arc::new(self.shared.config()),
        }
        .join()
    }

    /// Bytes of the own part and every piece, encoded.
    pub fn size(&self) -> usize {
        self.own_body.len() + self.shared.size
    }
}

impl PushSnapshot {
    /// A snapshot of generation `generation` holding these configurations, each keyed
    /// by its `node.id`. When two configurations share an id, the last one wins.
    pub fn new(generation: u64, configs: impl IntoIterator<Item = ProxyConfig>) -> Self {
        Self::from_parts(generation, configs.into_iter().map(ProxyParts::from))
    }

    /// A snapshot from configurations in parts. Parts that are one value (the same
    /// `Arc`) are encoded once; equal parts in different values are kept once, and so
    /// is each piece that several parts hold.
    pub fn from_parts(generation: u64, configs: impl IntoIterator<Item = ProxyParts>) -> Self {
        Self::build(generation, configs, Interned::default())
    }

    /// The snapshot that follows this one: [`PushSnapshot::from_parts`], where each
    /// piece that this snapshot holds already stays the same value (so the push
    /// server sees at a glance what did not change, and memory is not churned).
    pub fn next(&self, generation: u64, configs: impl IntoIterator<Item = ProxyParts>) -> Self {
        Self::build(generation, configs, Interned::of(self))
    }

    fn build(
        generation: u64,
        configs: impl IntoIterator<Item = ProxyParts>,
        mut interned: Interned,
    ) -> Self {
        // The shared parts by address, each kept once (the `Arc` keeps its address
        // from being reused while the map lives), and each proxy's own part with the
        // index of its shared part, in order.
        let mut groups: HashMap<*const SharedConfig, usize> = HashMap::new();
        let mut shared_parts: Vec<Arc<SharedConfig>> = Vec::new();
        let mut owns: Vec<(ProxyConfig, usize)> = Vec::new();
        for parts in configs {
            let index = *groups.entry(Arc::as_ptr(&parts.shared)).or_insert_with(|| {
                shared_parts.push(parts.shared.clone());
                shared_parts.len() - 1
            });
            owns.push((parts.own, index));
            // Dropping `parts.shared` here leaves each part one holder.
        }
        drop(groups);
        let mut by_version: HashMap<PieceDigest, Arc<SharedEntry>> = HashMap::new();
        let entries: Vec<Arc<SharedEntry>> = shared_parts
            .into_iter()
            .map(|shared| {
                let shared = Arc::try_unwrap(shared).unwrap_or_else(|a| SharedConfig::clone(&a));
                let entry = SharedEntry::new(shared, &mut interned);
                by_version
                    .entry(entry.digest)
                    .or_insert_with(|| Arc::new(entry))
                    .clone()
            })
            .collect();
        let mut proxies = BTreeMap::new();
        for (own, index) in owns {
            let id = own.node.id.clone();
            proxies.insert(id, ProxyEntry::of(own, entries[index].clone()));
        }
        PushSnapshot {
            generation,
            proxies,
            shared: by_version.len(),
            pieces: interned.used.len(),
        }
    }

    /// Counts snapshots: each one the control plane publishes has a higher generation.
    /// The empty snapshot a server may start with is generation 0.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The entry of one proxy, if the snapshot knows it.
    pub fn get(&self, proxy_id: &str) -> Option<&ProxyEntry> {
        self.proxies.get(proxy_id)
    }

    /// All proxies, sorted by id.
    pub fn proxies(&self) -> impl Iterator<Item = (&str, &ProxyEntry)> {
        self.proxies.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// Number of proxies.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// True when the snapshot holds no proxy.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// Number of distinct shared parts: the views of the mesh its proxies have.
    pub fn shared_parts(&self) -> usize {
        self.shared
    }

    /// Number of distinct pieces all shared parts hold together.
    pub fn pieces(&self) -> usize {
        self.pieces
    }
}

#[cfg(test)]
mod tests;
