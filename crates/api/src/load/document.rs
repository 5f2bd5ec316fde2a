//! Turning one YAML document into a typed, validated [`Resource`].

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::kinds::{KindLookup, lookup};
use crate::meta::{DEFAULT_NAMESPACE, ObjectMeta};
use crate::resource::{Kind, Origin, Position, Resource, Spec, display_name};
use crate::yaml::{Document, Node, Resolved, Sink, Value, from_node, index_positions};

/// What one file gave.
#[derive(Debug, Clone)]
pub(super) struct FileLoad {
    pub(super) resources: Vec<Resource>,
    /// Resources that were read but have errors: left out of the mesh, kept for
    /// analysis (Istio's analyzers run on what the API server stored).
    pub(super) rejected: Vec<Resource>,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) documents: usize,
}

/// The envelope every resource shares: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S> {
    #[allow(dead_code)] // reason: checked before; listed so the field is known
    api_version: String,
    #[allow(dead_code)] // reason: checked before; listed so the field is known
    kind: String,
    metadata: ObjectMeta,
    spec: Option<S>,
    /// Written by controllers; accepted and ignored.
    #[allow(dead_code)] // reason: accepted so `kubectl get -o yaml` output loads
    status: Option<serde_json::Value>,
}

pub(super) fn load_file(file: Arc<Path>, text: &str) -> FileLoad {
    let mut out = FileLoad {
        resources: Vec::new(),
        rejected: Vec::new(),
        diagnostics: Vec::new(),
        documents: 0,
    };
    for doc in crate::yaml::parse_documents(text) {
        load_document(&file, doc, &mut out);
    }
    out
}

fn diag(
    file: &Arc<Path>,
    severity: Severity,
    position: Position,
    resource: Option<String>,
    path: Option<String>,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity,
        file: file.clone(),
        position: Some(position),
        resource,
        path: path.filter(|p| !p.is_empty()),
        message: message.into(),
        analysis: None,
    }
}

fn load_document(file: &Arc<Path>, doc: Document, out: &mut FileLoad) {
    if let Some((pos, message)) = doc.error {
        out.documents += 1;
        out.diagnostics
            .push(diag(file, Severity::Error, pos, None, None, message));
        return;
    }
    let Some(root) = doc.root else { return };
    if matches!(root.resolve(), Some(Resolved::Null)) {
        return; // a document holding only `~` or comments
    }
    out.documents += 1;
    load_node(file, doc.index, &root, out);
}

/// One resource, or a `v1` `List` of them (as `kubectl get -o yaml` writes).
fn load_node(file: &Arc<Path>, document: usize, root: &Node, out: &mut FileLoad) {
    if root.get("kind").and_then(Node::scalar_text) == Some("List")
        && root.get("apiVersion").and_then(Node::scalar_text) == Some("v1")
    {
        match root.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) => {
                for item in items {
                    load_node(file, document, item, out);
                }
            }
            None => {}
            Some(_) => out.diagnostics.push(diag(
                file,
                Severity::Error,
                root.get("items").map_or(root.pos, |n| n.pos),
                None,
                Some("items".to_owned()),
                "expected a list of resources",
            )),
        }
        return;
    }
    if !matches!(root.value, Value::Map(_)) {
        out.diagnostics.push(diag(
            file,
            Severity::Error,
            root.pos,
            None,
            None,
            format!(
                "expected a resource (a mapping with apiVersion, kind, metadata and spec), \
                 found {}",
                root.describe()
            ),
        ));
        return;
    }
    let header = |field: &str| -> Result<String, Diagnostic> {
        match root.get(field) {
            None => Err(diag(
                file,
                Severity::Error,
                root.pos,
                None,
                None,
                format!("missing required field `{field}`"),
            )),
            Some(n) => match n.resolve() {
                Some(Resolved::Str(s)) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(diag(
                    file,
                    Severity::Error,
                    n.pos,
                    None,
                    Some(field.to_owned()),
                    format!("expected a non-empty string, found {}", n.describe()),
                )),
            },
        }
    };
    let (api_version, kind_name) = match (header("apiVersion"), header("kind")) {
        (Ok(a), Ok(k)) => (a, k),
        (a, k) => {
            out.diagnostics.extend(a.err());
            out.diagnostics.extend(k.err());
            return;
        }
    };
    let label = label_from_node(&kind_name, root);
    let kind = match lookup(&api_version, &kind_name) {
        KindLookup::Read(kind) => kind,
        KindLookup::Ignore(reason) => {
            out.diagnostics.push(diag(
                file,
                Severity::Warning,
                root.pos,
                Some(label),
                None,
                reason,
            ));
            return;
        }
        KindLookup::Reject(field, message) => {
            let pos = root.get(field).map_or(root.pos, |n| n.pos);
            out.diagnostics.push(diag(
                file,
                Severity::Error,
                pos,
                Some(label),
                Some(field.to_owned()),
                message,
            ));
            return;
        }
    };
    let origin = Origin {
        file: file.clone(),
        document,
        position: root.pos,
        fields: Arc::new(index_positions(root, "")),
    };
    let sink = Sink::default();
    let parsed = parse_kind(kind, root, &sink);
    let mut diagnostics: Vec<Diagnostic> = sink
        .into_issues()
        .into_iter()
        .map(|i| {
            diag(
                file,
                i.severity,
                i.pos,
                Some(label.clone()),
                Some(i.path),
                i.message,
            )
        })
        .collect();
    let resource = match parsed {
        Ok((metadata, Ok(spec))) => Resource {
            api_version,
            metadata,
            spec,
            origin,
        },
        // A Pod without `spec`: rejected, but kept for analysis with
        // an empty spec, as the API server of Istio's analyzer tests would hold it.
        Ok((metadata, Err(e))) => {
            diagnostics.push(diag(
                file,
                Severity::Error,
                e.pos.unwrap_or(root.pos),
                Some(label),
                e.path,
                e.message,
            ));
            out.diagnostics.extend(diagnostics);
            let spec = match kind {
                Kind::Pod => Spec::Pod(Default::default()),
                _ => return,
            };
            out.rejected.push(Resource {
                api_version,
                metadata,
                spec,
                origin,
            });
            return;
        }
        Err(e) => {
            diagnostics.push(diag(
                file,
                Severity::Error,
                e.pos.unwrap_or(root.pos),
                Some(label),
                e.path,
                e.message,
            ));
            out.diagnostics.extend(diagnostics);
            return;
        }
    };
    diagnostics.extend(crate::validate::validate(&resource));
    let rejected = diagnostics.iter().any(Diagnostic::is_error);
    if !rejected {
        diagnostics.extend(crate::unenforced::warnings(&resource));
    }
    out.diagnostics.extend(diagnostics);
    if rejected {
        out.rejected.push(resource);
    } else {
        out.resources.push(resource);
    }
}

/// `Kind namespace/name` read straight from the document, for messages about documents
/// that could not be read.
fn label_from_node(kind: &str, root: &Node) -> String {
    let meta = root.get("metadata");
    let get = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Node::scalar_text)
            .filter(|s| !s.is_empty())
    };
    let name = get("name").unwrap_or("<unnamed>");
    let namespace = get("namespace").unwrap_or(DEFAULT_NAMESPACE);
    match Kind::ALL.into_iter().find(|k| k.as_str() == kind) {
        Some(k) => display_name(k, namespace, name),
        None => format!("{kind} {namespace}/{name}"),
    }
}

fn parse_kind(
    kind: Kind,
    root: &Node,
    sink: &Sink,
) -> Result<(ObjectMeta, Result<Spec, crate::yaml::DeError>), crate::yaml::DeError> {
    /// The metadata, and the spec or why there is none (the metadata alone is still
    /// good for analysis).
    type Read<S> = (ObjectMeta, Result<S, crate::yaml::DeError>);
    fn read<S: DeserializeOwned>(
        root: &Node,
        sink: &Sink,
        spec_required: bool,
        default: impl FnOnce() -> Option<S>,
    ) -> Result<Read<S>, crate::yaml::DeError> {
        let env: Envelope<S> = from_node(root, "", sink)?;
        match env.spec.or_else(default) {
            Some(spec) => Ok((env.metadata, Ok(spec))),
            None => {
                debug_assert!(spec_required);
                Ok((
                    env.metadata,
                    Err(crate::yaml::DeError {
                        message: "missing required field `spec`".to_owned(),
                        path: None,
                        pos: Some(root.pos),
                    }),
                ))
            }
        }
    }
    macro_rules! spec {
        ($variant:ident) => {
            read(root, sink, true, || None).map(|(m, s)| (m, s.map(Spec::$variant)))
        };
    }
    match kind {
        Kind::VirtualService => spec!(VirtualService),
        Kind::DestinationRule => spec!(DestinationRule),
        Kind::Gateway => spec!(Gateway),
        Kind::ServiceEntry => spec!(ServiceEntry),
        Kind::WorkloadEntry => spec!(WorkloadEntry),
        Kind::WorkloadGroup => spec!(WorkloadGroup),
        Kind::Sidecar => spec!(Sidecar),
        Kind::PeerAuthentication => spec!(PeerAuthentication),
        Kind::AuthorizationPolicy => spec!(AuthorizationPolicy),
        Kind::RequestAuthentication => spec!(RequestAuthentication),
        Kind::Telemetry => spec!(Telemetry),
        Kind::Service => spec!(Service),
        Kind::Pod => spec!(Pod),
        Kind::Deployment => spec!(Deployment),
        Kind::Job => spec!(Job),
        Kind::CronJob => spec!(CronJob),
        Kind::Namespace => read(root, sink, false, || Some(Default::default()))
            .map(|(m, s)| (m, s.map(Spec::Namespace))),
    }
}
