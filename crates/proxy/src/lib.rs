//! The skiff data-plane proxy: the sidecar beside each workload and the gateway at the edge.
//!
//! A proxy runs one [`config::Snapshot`] at a time, compiled from the per-proxy
//! [`skiff_model::config::ProxyConfig`] that the control plane pushes (or that a file
//! provides, see [`file_source`]; the control plane's, see [`xds_source`]). Every update goes through [`Proxy::apply`]: it is
//! validated and compiled off the hot path, then swapped in atomically. A request keeps the
//! snapshot it started with; a rejected update leaves the old snapshot serving and returns
//! the reason (a NACK).
//!
//! The data path reads top to bottom:
//!
//! - `app.rs`: the listeners and their accept loops; each accepted connection gets its
//!   context (`conn.rs`: the listener's role, the peer, TLS and the peer's identity);
//! - `outbound.rs`: `:15001`, where the app sends its requests (as to an HTTP proxy, or
//!   through a `CONNECT` tunnel for TCP);
//! - `inbound.rs`: `:15006`, where peer proxies connect, naming the app port in a
//!   [`transport_header`];
//! - gateway ports serve HTTP directly; `admin.rs`: `:15000`, readiness, config dump
//!   and drain;
//! - `http.rs`: HTTP on a connection; every request then goes through the phases in
//!   `pipeline.rs`, in Istio's order (route, authenticate, authorize, fault,
//!   timeout/retry, balance, pool, transport), the forwarding ones in `forward.rs`;
//! - `record.rs`: one record per finished request or TCP connection, which Istio's
//!   standard metrics (`metrics.rs`) count and the access log (`access_log.rs`) writes
//!   out.
//!
//! They share [`route`] (matching a request to a route) and `upstream.rs` (clusters, load
//! balancing, connection pools that outlive snapshots).

#![warn(missing_docs)]

mod access_log;
mod admin;
pub mod agent;
mod app;
mod authn;
mod authz;
pub mod config;
mod conn;
mod dns;
mod drain;
mod error;
mod failures;
pub mod file_source;
mod forward;
mod gateway;
mod http;
mod http_route;
mod inbound;
mod io;
mod l4;
pub mod limits;
mod metrics;
mod outbound;
mod passthrough;
mod pipeline;
mod record;
mod respond;
pub mod route;
pub mod simulate;
pub mod sniff;
mod tcp;
mod transport;
pub mod transport_header;
mod upstream;
pub mod xds_source;

#[cfg(fuzzing)]
pub mod fuzzing;

pub use access_log::{AccessLogFormat, AccessLogTarget};
pub use admin::{LogControl, set_log_control};
pub use app::{Proxy, ProxyOptions};
pub use error::{Error, ResponseFlag};
pub use limits::{DEFAULT_STREAM_IDLE_TIMEOUT, Limits};
