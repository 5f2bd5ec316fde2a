//! Integration tests of skiff-identity: real files, real TLS over loopback TCP, the
//! gRPC CA service over TLS. One test binary, so it builds once.

mod ca;
mod grpc;
mod mtls;
mod support;
