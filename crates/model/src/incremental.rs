//! Building and compiling the mesh again after a change, reusing what the change did
//! not touch.
//!
//! The routes of a sidecar's view (its virtual hosts, TCP routes and the clusters they
//! name) follow from the services, the routing and policy rules, the mesh options and
//! the view; they never depend on endpoints. So when a change touches only the
//! resources that make endpoints (WorkloadEntries, Pods, Deployments), the routes of
//! every view seen before are kept as they are and only its clusters and endpoints are
//! built again: the endpoint fast path of Istio's incremental EDS pushes. Any other
//! change compiles every view whole.

use std::collections::HashMap;
use std::sync::Arc;

use skiff_api::{Kind, ResourceEvent, ResourceStore};

use crate::compile::{ViewCache, ViewKey, ViewRoutes};
use crate::config::ProxyParts;
use crate::{Mesh, MeshOptions};

/// Builds and compiles meshes one after another, each from the resources of a
/// [`ResourceStore`], reusing the routes of the one before when the events since
/// then touched only endpoints. The result is always what [`Mesh::build`] and
/// [`Mesh::compile_all`] give.
#[derive(Debug, Default)]
pub struct Incremental {
    /// The options and the store generation of the last compile.
    last: Option<(MeshOptions, u64)>,
    /// The routes of every view of the last compile.
    routes: HashMap<ViewKey, Arc<ViewRoutes>>,
}

/// A mesh and the configuration of each of its proxies.
#[derive(Debug)]
pub struct Compiled {
    /// The mesh, for its diagnostics and lookups.
    pub mesh: Mesh,
    /// What [`Mesh::compile_all`] gives for it.
    pub configs: Vec<ProxyParts>,
    /// True when only endpoints changed since the last compile, so routes were kept.
    pub endpoints_only: bool,
    /// How many distinct sidecar views the proxies have.
    pub views: usize,
    /// How many of those views had their routes compiled (the others kept theirs).
    pub routes_compiled: usize,
}

/// Whether resources of this kind make only endpoints (workloads), never services,
/// routes or policies.
pub fn makes_only_endpoints(kind: Kind) -> bool {
    matches!(kind, Kind::WorkloadEntry | Kind::Pod | Kind::Deployment)
}

impl Incremental {
    /// Nothing compiled yet: the first compile is whole.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the mesh of `store`'s resources and compiles every proxy. `changes` are
    /// the events the store applied since the last compile (one batch): when they are
    /// all about endpoints, the routes of the last compile are kept.
    pub fn compile(
        &mut self,
        store: &ResourceStore,
        changes: &[ResourceEvent],
        options: MeshOptions,
    ) -> Compiled {
        let endpoints_only = self.last.as_ref().is_some_and(|(o, generation)| {
            *o == options
                && store.generation() <= generation + 1
                && changes.iter().all(|c| makes_only_endpoints(c.kind()))
        });
        self.last = Some((options.clone(), store.generation()));
        let routes = std::mem::take(&mut self.routes);
        let mut views = if endpoints_only {
            ViewCache::with_routes(routes)
        } else {
            drop(routes);
            ViewCache::default()
        };
        let resources = store.resources();
        let mesh = Mesh::build(&resources, options);
        let configs = mesh.compile_all_in(&mut views);
        let (count, routes_compiled) = (views.len(), views.routes_compiled());
        self.routes = views.into_routes();
        Compiled {
            mesh,
            configs,
            endpoints_only,
            views: count,
            routes_compiled,
        }
    }
}
