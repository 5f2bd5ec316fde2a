//! The protocol between skiff's control plane and its proxies.
//!
//! An ADS-shaped gRPC stream (see `proto/skiff/discovery/v1/discovery.proto`): a proxy
//! subscribes with its node id, the control plane pushes the proxy's compiled
//! [`ProxyConfig`](skiff_model::config::ProxyConfig), and the proxy answers each push
//! with an ACK or a NACK.
//!
//! - [`server`]: the push server. It serves a stream of [`PushSnapshot`]s (one compiled
//!   config per proxy), pushes to a proxy only when its config version changes, and keeps
//!   a [`SyncTable`] of what each proxy was sent and acknowledged.
//! - [`client`]: what a proxy runs. It hands each config to a handler (whose result is
//!   the ACK or the NACK), reconnects with capped exponential backoff and jitter, and
//!   resumes with the version it runs so an unchanged config is not sent again.
//! - [`resource`]: type URLs, the body encoding (JSON for now) and versions.

#![warn(missing_docs)]

pub mod client;
mod error;
pub mod proto;
pub mod resource;
pub mod server;
mod snapshot;
mod sync;

pub use client::{
    ChannelFactory, ClientOptions, ClientStatus, ConfigUpdate, NodeInfo, Subscriber, XdsClient,
    connect, connect_with,
};
pub use error::XdsError;
pub use resource::PROXY_CONFIG_TYPE_URL;
pub use server::XdsServer;
pub use snapshot::{Piece, ProxyEntry, PushSnapshot, SharedEntry};
pub use sync::{ChangeRow, ChangeState, SyncRow, SyncStatus, SyncTable, Trigger};
