//! Compiles the certificate service with protox (no `protoc` needed) and generates the
//! tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/skiff/ca/v1/ca.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
