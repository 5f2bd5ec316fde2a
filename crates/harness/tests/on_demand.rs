//! On-demand discovery, in process: a sidecar that subscribes on demand starts with
//! none of the mesh's 1,000 services, holds only the ones its app calls (asserted
//! from its config dump), and the first request to each succeeds: the proxy asks the
//! control plane for the authority and waits for the config that brings it. A sidecar
//! with the whole view beside it holds every service.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use skiff_harness::{Mesh, MeshOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CLIENT: &str = "client.prod";
const FULL: &str = "full.prod";
/// Services with a workload; the rest of the 1,000 have none.
const CALLED: [&str; 4] = ["svc-a", "svc-b", "svc-c", "svc-d"];
const SERVICES: usize = 1000;

fn mesh_yaml() -> String {
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n");
    let service = |yaml: &mut String, name: &str| {
        let _ = write!(
            yaml,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: prod\n\
             spec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    \
             targetPort: 8080\n"
        );
    };
    for name in CALLED {
        service(&mut yaml, name);
        let _ = write!(
            yaml,
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  \
             name: {name}\n  namespace: prod\nspec:\n  address: {{{{ip.{name}}}}}\n  labels:\n    \
             app: {name}\n"
        );
    }
    for i in CALLED.len()..SERVICES {
        service(&mut yaml, &format!("filler-{i}"));
    }
    for client in ["client", "full"] {
        let _ = write!(
            yaml,
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  \
             name: {client}\n  namespace: prod\nspec:\n  address: {{{{ip.{client}}}}}\n  \
             labels:\n    app: {client}\n"
        );
    }
    yaml
}

/// `GET /config_dump` on a proxy's admin port: the virtual hosts of its outbound
/// ports.
async fn virtual_hosts(admin: SocketAddr) -> Result<Vec<String>> {
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /config_dump HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (_, body) = text.split_once("\r\n\r\n").context("an HTTP answer")?;
    let dump: serde_json::Value = serde_json::from_str(body).context("JSON")?;
    let mut names = Vec::new();
    for port in dump["config"]["outbound"]
        .as_array()
        .context("outbound ports")?
    {
        for vhost in port["virtualHosts"].as_array().into_iter().flatten() {
            names.push(vhost["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn an_on_demand_proxy_holds_only_what_it_calls_and_a_first_call_succeeds() -> Result<()> {
    let yaml = mesh_yaml();
    let mesh = Mesh::start_with(
        &[("mesh.yaml", &yaml)],
        MeshOptions {
            on_demand: vec![CLIENT.to_owned()],
            ..MeshOptions::default()
        },
    )
    .await?;
    let admin = mesh.proxy(CLIENT).proxy().admin_addr();
    assert_eq!(
        virtual_hosts(admin).await?,
        Vec::<String>::new(),
        "it starts with none"
    );
    let full = virtual_hosts(mesh.proxy(FULL).proxy().admin_addr()).await?;
    assert_eq!(full.len(), SERVICES, "the full view holds every service");

    for (n, name) in CALLED[..3].iter().enumerate() {
        let reply = mesh
            .get_via(CLIENT, &format!("http://{name}.prod/"))
            .await?;
        assert_eq!(
            reply.status, 200,
            "the first call to {name}: {}",
            reply.body
        );
        assert_eq!(virtual_hosts(admin).await?.len(), n + 1);
    }
    let want: Vec<String> = CALLED[..3]
        .iter()
        .map(|n| format!("{n}.prod.svc.cluster.local:80"))
        .collect();
    assert_eq!(
        virtual_hosts(admin).await?,
        want,
        "it holds the three it called"
    );

    // A fourth service, first call.
    let reply = mesh
        .get_via(CLIENT, "http://svc-d.prod.svc.cluster.local/")
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(virtual_hosts(admin).await?.len(), 4);
    // Calling one it has asks nothing more; a name no service has is answered as
    // the full-view proxy answers it, once no config brings it (the wait is paid by
    // the first request to it only).
    let again = mesh.get_via(CLIENT, "http://svc-a.prod/").await?;
    assert_eq!(again.status, 200);
    let expected = mesh.get_via(FULL, "http://nowhere.prod/").await?.status;
    for _ in 0..2 {
        let unknown = mesh.get_via(CLIENT, "http://nowhere.prod/").await?;
        assert_eq!(unknown.status, expected, "{}", unknown.body);
    }
    assert_eq!(virtual_hosts(admin).await?.len(), 4);
    Ok(())
}
