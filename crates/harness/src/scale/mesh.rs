//! The synthetic mesh of the scale harness: `S` services spread over `K` namespaces,
//! `N` workloads spread over the services, and a VirtualService with a
//! DestinationRule for the first few services. One resource per file, so a change
//! touches one file, as an edit or a `kubectl apply` of one object would.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The shape of the mesh.
#[derive(Debug, Clone, Copy)]
pub struct MeshShape {
    /// Workloads, each with a proxy.
    pub proxies: usize,
    /// Services; workload `j` belongs to service `j % services`.
    pub services: usize,
    /// Namespaces; service `i` is in namespace `i % namespaces`.
    pub namespaces: usize,
    /// Services that get a VirtualService (weights over subsets v1 and v2) and a
    /// DestinationRule defining the subsets.
    pub routed: usize,
    /// Workload addresses on loopback (127.1.0.0/16 and up), where real proxies can
    /// bind; otherwise in 10.0.0.0/8, which nothing uses.
    pub loopback: bool,
}

/// One workload of the mesh: the proxy a simulated client stands in for.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `<name>.<namespace>`: the proxy id.
    pub id: String,
    /// The namespace.
    pub namespace: String,
    /// Its service account (the service's name).
    pub service_account: String,
}

impl MeshShape {
    /// The address of workload `j`: unique in 10.0.0.0/8 (nothing connects to it), or
    /// with [`MeshShape::loopback`] in 127.1.0.0/16 and up.
    pub fn address(&self, j: usize) -> Ipv4Addr {
        let j = j as u32 + 1;
        let (first, second) = if self.loopback {
            (127, (j >> 16) as u8 + 1)
        } else {
            (10, (j >> 16) as u8)
        };
        Ipv4Addr::new(first, second, (j >> 8) as u8, j as u8)
    }

    fn namespace_of_service(&self, service: usize) -> String {
        format!("scale-{}", service % self.namespaces.max(1))
    }

    /// The workloads, in order.
    pub fn workloads(&self) -> Vec<Workload> {
        (0..self.proxies)
            .map(|j| {
                let service = j % self.services.max(1);
                let namespace = self.namespace_of_service(service);
                Workload {
                    id: format!("wl-{j}.{namespace}"),
                    namespace,
                    service_account: format!("svc-{service}"),
                }
            })
            .collect()
    }

    /// Writes the whole mesh into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        for sub in ["services", "workloads", "routes"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut namespaces = String::new();
        for k in 0..self.namespaces.max(1) {
            let _ = write!(
                namespaces,
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scale-{k}\n---\n"
            );
        }
        write(&dir.join("00-namespaces.yaml"), &namespaces)?;
        for i in 0..self.services {
            write(&self.service_file(dir, i), &self.service(i))?;
        }
        for j in 0..self.proxies {
            write(
                &self.workload_file(dir, j),
                &self.workload(j, self.address(j)),
            )?;
        }
        for i in 0..self.routed.min(self.services) {
            write(&self.route_file(dir, i), &self.route(i, 90))?;
        }
        Ok(())
    }

    fn service_file(&self, dir: &Path, i: usize) -> PathBuf {
        dir.join("services").join(format!("svc-{i}.yaml"))
    }

    fn workload_file(&self, dir: &Path, j: usize) -> PathBuf {
        dir.join("workloads").join(format!("wl-{j}.yaml"))
    }

    fn route_file(&self, dir: &Path, i: usize) -> PathBuf {
        dir.join("routes").join(format!("svc-{i}.yaml"))
    }

    fn service(&self, i: usize) -> String {
        let ns = self.namespace_of_service(i);
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: {ns}\n\
             spec:\n  selector:\n    app: svc-{i}\n  ports:\n  - name: http\n    port: 8080\n    \
             targetPort: 8080\n"
        )
    }

    fn workload(&self, j: usize, address: Ipv4Addr) -> String {
        let service = j % self.services.max(1);
        let ns = self.namespace_of_service(service);
        let version = if (j / self.services.max(1)).is_multiple_of(2) {
            "v1"
        } else {
            "v2"
        };
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: wl-{j}\n  \
             namespace: {ns}\nspec:\n  address: {address}\n  serviceAccount: svc-{service}\n  \
             labels:\n    app: svc-{service}\n    version: {version}\n"
        )
    }

    fn route(&self, i: usize, v1_weight: u32) -> String {
        let ns = self.namespace_of_service(i);
        let host = format!("svc-{i}.{ns}.svc.cluster.local");
        let v2_weight = 100 - v1_weight;
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: svc-{i}\n  \
             namespace: {ns}\nspec:\n  host: {host}\n  subsets:\n  - name: v1\n    labels:\n      \
             version: v1\n  - name: v2\n    labels:\n      version: v2\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: svc-{i}\n  \
             namespace: {ns}\nspec:\n  hosts:\n  - {host}\n  http:\n  - route:\n    - destination:\n        \
             host: {host}\n        subset: v1\n      weight: {v1_weight}\n    - destination:\n        \
             host: {host}\n        subset: v2\n      weight: {v2_weight}\n"
        )
    }

    /// Moves workload `j` to another address (round `round` of the churn): its
    /// service's endpoints change, nothing else.
    pub fn move_endpoint(&self, dir: &Path, j: usize, round: usize) -> anyhow::Result<()> {
        let first = if self.loopback { 127 } else { 10 };
        let moved = Ipv4Addr::new(first, 200, (round / 250) as u8, (round % 250) as u8 + 1);
        write(&self.workload_file(dir, j), &self.workload(j, moved))
    }

    /// Changes the weights of the VirtualService of service `i`.
    pub fn edit_route(&self, dir: &Path, i: usize, round: usize) -> anyhow::Result<()> {
        let weight = 50 + (round % 40) as u32;
        write(&self.route_file(dir, i), &self.route(i, weight))
    }

    /// Adds a service (number `i`, beyond the first `services`) with no workload.
    pub fn add_service(&self, dir: &Path, i: usize) -> anyhow::Result<()> {
        write(&self.service_file(dir, i), &self.service(i))
    }
}

/// Writes a file through a temporary name and a rename, so the watcher never reads
/// half of it.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
