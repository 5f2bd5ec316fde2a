//! End-to-end tests of the proxy: real sockets on loopback, real HTTP backends, proxies
//! started in process with hand-built configs.

#![allow(
    unreachable_pub,
    reason = "a test binary: nothing here is reachable from outside"
)]

mod certs;
mod support;

mod admin;
mod authz;
mod chain;
mod failures;
mod gateway_tls;
mod hostile;
mod jwt;
mod l4;
mod mtls;
mod origination;
mod protocols;
mod resilience;
mod routing;
mod swap;
mod traffic;
mod xds;
