//! Where the objects a proxy's config came from were written: the compiled config names
//! routes `<namespace>/<virtualservice>/<rule>` and clusters
//! `outbound|<port>|<subset>|<fqdn>`; this finds the VirtualService rule, the
//! DestinationRule subset, the Service or the workload behind such a name in the
//! configuration directory, with file:line, through the same model the control plane
//! compiles with.

use std::path::Path;

use skiff_api::{Loaded, Resource};
use skiff_model::diagnostic::ResourceRef;
use skiff_model::registry::{Service, Workload};
use skiff_model::rules::{DestinationRuleInfo, HttpRule, SubsetInfo, VirtualServiceInfo};
use skiff_model::{Mesh, MeshOptions};

/// The configuration, loaded and modelled.
pub(crate) struct Provenance {
    loaded: Loaded,
    mesh: Mesh,
}

/// A place in the configuration: the object, the field and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    /// `Kind namespace/name`.
    pub(crate) object: String,
    /// The field path, when the place is a field.
    pub(crate) field: Option<String>,
    /// `file:line`.
    pub(crate) at: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.object)?;
        match (&self.at, &self.field) {
            (Some(at), Some(field)) => write!(f, ", {at} ({field})"),
            (Some(at), None) => write!(f, ", {at}"),
            (None, Some(field)) => write!(f, " ({field})"),
            (None, None) => Ok(()),
        }
    }
}

/// A file as messages show it: relative to the working directory when it is under it.
fn shown(file: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| file.strip_prefix(cwd).ok())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// `backend.prod.svc.cluster.local` → `backend.prod`, as Istio's messages shorten a
/// Kubernetes service name.
pub(crate) fn short_host(fqdn: &str) -> &str {
    fqdn.find(".svc.").map_or(fqdn, |i| &fqdn[..i])
}

/// The parts of `outbound|<port>|<subset>|<fqdn>`.
pub(crate) fn parse_cluster(name: &str) -> Option<(u16, Option<&str>, &str)> {
    let mut parts = name.split('|');
    if parts.next()? != "outbound" {
        return None;
    }
    let port = parts.next()?.parse().ok()?;
    let subset = parts.next().filter(|s| !s.is_empty());
    let fqdn = parts.next()?;
    Some((port, subset, fqdn))
}

impl Provenance {
    /// Loads and models the YAML of `dir`, as the control plane does.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Provenance> {
        let loaded = skiff_api::load(&[dir.to_path_buf()])?;
        let mesh = Mesh::build(&loaded.resources, MeshOptions::default());
        Ok(Provenance { loaded, mesh })
    }

    /// The model of the configuration.
    pub(crate) fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// What `skiff analyze` says about the configuration.
    pub(crate) fn analysis(&self) -> Vec<skiff_model::analyze::Message> {
        skiff_model::analyze::analyze(&self.loaded, MeshOptions::default())
    }

    fn resource(&self, r: &ResourceRef) -> Option<&Resource> {
        self.loaded.resources.iter().find(|x| {
            x.kind().to_string() == r.kind
                && (x.namespace() == r.namespace || !x.kind().is_namespaced())
                && x.name() == r.name
        })
    }

    /// The place of `field` in the resource `r` (its document start without a field).
    pub(crate) fn place(&self, r: &ResourceRef, field: Option<&str>) -> Place {
        let resource = self.resource(r);
        let at = resource.map(|res| {
            let line = field
                .and_then(|f| res.origin.fields.lookup(f))
                .map_or(res.origin.position.line, |p| p.key.unwrap_or(p.value).line);
            format!("{}:{line}", shown(&res.origin.file))
        });
        Place {
            object: r.to_string(),
            field: field.map(str::to_owned),
            at,
        }
    }

    /// Whether `field` is written in the resource `r`.
    pub(crate) fn has_field(&self, r: &ResourceRef, field: &str) -> bool {
        self.resource(r)
            .is_some_and(|res| res.origin.fields.contains(field))
    }

    /// The workloads behind a service.
    pub(crate) fn workloads_of(&self, service: &Service) -> Vec<&Workload> {
        let registry = self.mesh.registry();
        service
            .endpoints
            .iter()
            .map(|&i| &registry.workloads()[i])
            .collect()
    }

    /// The VirtualService rule a route was compiled from.
    pub(crate) fn route_rule(&self, route: &str) -> Option<(&VirtualServiceInfo, &HttpRule)> {
        self.mesh
            .rules()
            .virtual_services()
            .iter()
            .find_map(|vs| vs.http.iter().find(|r| r.name == route).map(|r| (vs, r)))
    }

    /// The VirtualServices (for sidecars) that list `fqdn` among their hosts.
    pub(crate) fn virtual_services_for(&self, fqdn: &str) -> Vec<&VirtualServiceInfo> {
        self.mesh
            .rules()
            .virtual_services()
            .iter()
            .filter(|vs| vs.hosts.iter().any(|h| skiff_model::host::covers(h, fqdn)))
            .collect()
    }

    /// The DestinationRules for `fqdn`, and the one defining `subset` if any does.
    pub(crate) fn subset(
        &self,
        fqdn: &str,
        subset: &str,
    ) -> (
        Vec<&DestinationRuleInfo>,
        Option<(&DestinationRuleInfo, &SubsetInfo)>,
    ) {
        let rules: Vec<&DestinationRuleInfo> = self
            .mesh
            .rules()
            .destination_rules()
            .iter()
            .filter(|dr| skiff_model::host::covers(&dr.host, fqdn))
            .collect();
        let defined = rules.iter().find_map(|dr| {
            dr.subsets
                .iter()
                .find(|s| s.name == subset)
                .map(|s| (*dr, s))
        });
        (rules, defined)
    }

    /// The DestinationRules for `fqdn`.
    pub(crate) fn destination_rules(&self, fqdn: &str) -> Vec<&DestinationRuleInfo> {
        self.subset(fqdn, "").0
    }

    /// The service with this host name.
    pub(crate) fn service(&self, fqdn: &str) -> Option<&Service> {
        let registry = self.mesh.registry();
        registry
            .services_by_host(fqdn)
            .first()
            .map(|&i| &registry.services()[i])
    }

    /// A host name as a proxy of `namespace` resolves it (`backend` → the FQDN).
    pub(crate) fn lookup_host(&self, host: &str, namespace: &str) -> Option<&Service> {
        let registry = self.mesh.registry();
        let (fqdn, _) = registry.resolve_host(host, namespace);
        registry
            .lookup(&fqdn, namespace)
            .map(|i| &registry.services()[i])
    }

    /// The workload at this address (`ip:port` or `ip`).
    pub(crate) fn workload_at(&self, address: &str) -> Option<&Workload> {
        let ip: std::net::IpAddr = address
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| address.parse())
            .ok()?;
        self.mesh
            .registry()
            .workloads()
            .iter()
            .find(|w| w.address == Some(ip))
    }

    /// The AuthorizationPolicy named `namespace/name`.
    pub(crate) fn authorization_policy(&self, key: &str) -> Option<Place> {
        self.policy(skiff_api::Kind::AuthorizationPolicy, key)
    }

    /// The RequestAuthentication `namespace/name`, as a place.
    pub(crate) fn request_authentication(&self, key: &str) -> Option<Place> {
        self.policy(skiff_api::Kind::RequestAuthentication, key)
    }

    fn policy(&self, kind: skiff_api::Kind, key: &str) -> Option<Place> {
        let (ns, name) = key.split_once('/')?;
        let r = self
            .loaded
            .resources
            .iter()
            .find(|r| r.kind() == kind && r.namespace() == ns && r.name() == name)?;
        Some(Place {
            object: format!("{kind} {ns}/{name}"),
            field: None,
            at: Some(format!(
                "{}:{}",
                shown(&r.origin.file),
                r.origin.position.line
            )),
        })
    }

    /// The AuthorizationPolicies that apply to workloads of `namespace` (by namespace,
    /// or mesh-wide from the root namespace), as places.
    pub(crate) fn authorization_policies_in(&self, namespace: &str) -> Vec<Place> {
        let root = &self.mesh.options().root_namespace;
        self.loaded
            .resources
            .iter()
            .filter(|r| r.kind() == skiff_api::Kind::AuthorizationPolicy)
            .filter(|r| r.namespace() == namespace || r.namespace() == root)
            .filter_map(|r| self.authorization_policy(&format!("{}/{}", r.namespace(), r.name())))
            .collect()
    }
}
