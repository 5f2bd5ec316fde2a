//! The simulated proxies: one xDS client per workload, in this process, each with its
//! own certificate from the control plane's CA and its own TLS stream. Each decodes
//! every config it is pushed and acknowledges it, as a proxy does, and records when
//! it received it; nothing else runs behind it.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use skiff_identity::{BootstrapTokens, MeshTls, SpiffeId, TrustBundle};
use skiff_proxy::agent::{self, ControlPlane};
use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo, XdsClient};
use tokio::time::Instant;

use super::mesh::Workload;

/// How many first certificates are fetched at once.
const CERT_CONCURRENCY: usize = 16;

/// What one simulated proxy has seen.
#[derive(Debug, Default)]
struct Seen {
    /// The version it runs, and when it received it.
    last: Option<(String, Instant)>,
}

/// One simulated proxy.
#[derive(Debug)]
pub struct SimProxy {
    /// The proxy id.
    pub id: String,
    seen: Arc<Mutex<Seen>>,
    _client: XdsClient,
}

impl SimProxy {
    /// When it received the config it runs, if it has one.
    pub fn received_at(&self) -> Option<Instant> {
        self.lock().last.as_ref().map(|(_, at)| *at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts one simulated proxy per workload against the control plane at `control`
/// (xDS and the CA on one TLS port), with bootstrap tokens made from `tokens`.
pub async fn start(
    control: &str,
    bundle: &TrustBundle,
    tokens: &BootstrapTokens,
    workloads: &[Workload],
) -> anyhow::Result<Vec<SimProxy>> {
    let plane = ControlPlane {
        address: control.to_owned(),
        id: SpiffeId::control_plane(bundle.trust_domain())?,
    };
    let mut proxies = Vec::with_capacity(workloads.len());
    for chunk in workloads.chunks(CERT_CONCURRENCY) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for w in chunk {
            let id = SpiffeId::new(bundle.trust_domain(), &w.namespace, &w.service_account)?;
            let token = tokens.token_for(&id);
            let plane = plane.clone();
            let bundle = bundle.clone();
            let proxy_id = w.id.clone();
            tasks.push(tokio::spawn(async move {
                let tls = MeshTls::without_cert(bundle)?;
                let cert = agent::first_certificate(&plane, &tls, &id, &token)
                    .await
                    .with_context(|| format!("the certificate of {proxy_id}"))?;
                tls.rotate(cert);
                anyhow::Ok(connect(&plane, &tls, proxy_id)?)
            }));
        }
        for task in tasks {
            proxies.push(task.await??);
        }
    }
    Ok(proxies)
}

fn connect(plane: &ControlPlane, tls: &MeshTls, id: String) -> anyhow::Result<SimProxy> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let client = skiff_xds::connect_with(
        &plane.address,
        NodeInfo::new(id.clone()),
        ClientOptions::default(),
        move |update: ConfigUpdate| {
            // The client has decoded the resources that changed and checked that they
            // join, as a proxy's does; a proxy would now build its routing tables from
            // them. Keep only when and which version.
            let at = Instant::now();
            record.lock().unwrap_or_else(|e| e.into_inner()).last = Some((update.version, at));
            Ok(())
        },
        plane.channel_factory(tls),
    )?;
    Ok(SimProxy {
        id,
        seen,
        _client: client,
    })
}
