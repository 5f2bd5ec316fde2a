//! Compiles the discovery protocol with protox (no `protoc` needed) and generates the
//! tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/skiff/discovery/v1/discovery.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".skiff.discovery.v1.Resource.body")
        .compile_fds(descriptors)?;
    Ok(())
}
