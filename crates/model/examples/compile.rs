//! Compiles a directory of Istio and Kubernetes YAML and prints what the model makes
//! of it: the proxies, the findings, and one proxy's configuration as JSON.
//!
//!     cargo run -p skiff-model --example compile -- DIR [PROXY_ID]

use std::process::ExitCode;

use skiff_model::{Mesh, MeshOptions};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: compile DIR [PROXY_ID]");
        return ExitCode::from(2);
    };
    let loaded = match skiff_api::load(&[&dir]) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for d in loaded.diagnostics.iter() {
        eprintln!("{d}");
    }
    if loaded.diagnostics.has_errors() {
        return ExitCode::FAILURE;
    }
    let mesh = Mesh::build(&loaded.resources, MeshOptions::default());
    for d in mesh.diagnostics() {
        eprintln!("{d}");
    }
    eprintln!("proxies: {}", mesh.proxies().collect::<Vec<_>>().join(" "));
    let Some(id) = args.next() else {
        return ExitCode::SUCCESS;
    };
    match mesh.try_compile(&id) {
        Ok(config) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&config).expect("config serializes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
