//! Which records the access log writes, as the Telemetry API's `accessLogging` says for
//! each side (client: outbound and gateway; server: inbound): the proxy's own setting,
//! nothing, or the records a CEL `filter.expression` holds for.
//!
//! An expression is evaluated on the attributes Envoy documents (`request.*`,
//! `response.*`, `connection.*`, `source.*`, `destination.*`, `upstream.*`; see
//! `skiff_api::cel::ATTRIBUTES`). Their values are made only for a side that has a
//! filter; an attribute the record lacks (a TCP connection has no `request`) makes the
//! expression fail, and the record is not written, as Envoy does.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use skiff_model::config::{AccessLogConfig, MeshAccessLog, TelemetryConfig};

use crate::conn::Role;
use crate::record::Record;

/// What one side writes.
#[derive(Debug, Default)]
pub(crate) enum Decision {
    /// No Telemetry configures it: the proxy's own access-log setting.
    #[default]
    Own,
    /// Telemetry turned it on (the `envoy` provider, no filter).
    On,
    /// Telemetry turned it off.
    Off,
    /// Only the records the expression holds for.
    Filter(Arc<Program>),
}

impl Decision {
    fn of(cfg: Option<&AccessLogConfig>, headers: &mut bool) -> Decision {
        let Some(file) = cfg.and_then(AccessLogConfig::file) else {
            return Decision::Own;
        };
        if file.disabled {
            return Decision::Off;
        }
        let Some(expr) = &file.filter else {
            return Decision::On;
        };
        match skiff_api::cel::check(expr) {
            Ok(p) => {
                *headers |= skiff_api::cel::reads_headers(&p);
                Decision::Filter(Arc::new(p))
            }
            Err(e) => {
                // Refused when the config was loaded; a control plane of another
                // version may still send one. Every record is written then.
                tracing::warn!(expression = %expr, error = %e, "access-log filter left out");
                Decision::On
            }
        }
    }
}

/// Both sides' decisions.
pub(crate) struct Rules {
    client: Decision,
    server: Decision,
    /// A filter reads request headers: records keep them.
    pub(crate) headers: bool,
    /// The mesh config's `accessLogFile` is empty: where no Telemetry decides, nothing
    /// is written (Istio's default when a mesh config is given).
    mesh_off: bool,
    env: Arc<Env>,
    source: (
        Option<AccessLogConfig>,
        Option<AccessLogConfig>,
        Option<MeshAccessLog>,
    ),
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::of(&TelemetryConfig::default(), None)
    }
}

impl Rules {
    pub(crate) fn of(t: &TelemetryConfig, mesh: Option<&MeshAccessLog>) -> Rules {
        let mut headers = false;
        let client = Decision::of(t.client.access_log.as_ref(), &mut headers);
        let server = Decision::of(t.server.access_log.as_ref(), &mut headers);
        let filters =
            matches!(client, Decision::Filter(_)) || matches!(server, Decision::Filter(_));
        Rules {
            client,
            server,
            headers,
            mesh_off: mesh.is_some_and(|m| m.file.is_empty()),
            env: Arc::new(if filters {
                Env::stdlib()
            } else {
                Env::default()
            }),
            source: (
                t.client.access_log.clone(),
                t.server.access_log.clone(),
                mesh.cloned(),
            ),
        }
    }

    /// Both sides keep the proxy's own setting.
    pub(crate) fn is_own(&self) -> bool {
        !self.mesh_off && matches!((&self.client, &self.server), (Decision::Own, Decision::Own))
    }

    pub(crate) fn made_from(&self, t: &TelemetryConfig, mesh: Option<&MeshAccessLog>) -> bool {
        self.source.0 == t.client.access_log
            && self.source.1 == t.server.access_log
            && self.source.2.as_ref() == mesh
    }

    /// Whether the record is written, given the proxy's own setting `own`.
    pub(crate) fn writes(&self, r: &Record, own: bool) -> bool {
        let d = match r.conn.role {
            Role::Inbound => &self.server,
            Role::Outbound | Role::Gateway(_) => &self.client,
        };
        match d {
            Decision::Own => own && !self.mesh_off,
            Decision::On => own,
            Decision::Off => false,
            Decision::Filter(p) => own && self.holds(p, r),
        }
    }

    fn holds(&self, p: &Program, r: &Record) -> bool {
        let mut ctx = Context::with_env(self.env.clone());
        for (name, value) in activation(r) {
            ctx.add_variable_from_value(name, value);
        }
        matches!(p.execute(&ctx), Ok(Value::Bool(true)))
    }
}

fn map(entries: Vec<(&'static str, Value)>) -> Value {
    let m: HashMap<&'static str, Value> = entries.into_iter().collect();
    Value::from(m)
}

fn text(s: &str) -> Value {
    Value::from(s)
}

fn port(p: u16) -> Value {
    Value::Int(i64::from(p))
}

/// The attributes of a record, by root.
pub(crate) fn activation(r: &Record) -> Vec<(&'static str, Value)> {
    let mut out = Vec::with_capacity(6);
    let mut response = vec![("size", Value::Int(r.bytes_out as i64))];
    if let Some(head) = &r.request {
        let headers: HashMap<String, Value> = head
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), text(v.to_str().ok()?))))
            .collect();
        let header = |name: &str| {
            head.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .and_then(|v| v.to_str().ok())
        };
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = vec![
            ("path", text(path)),
            ("url_path", text(head.uri.path())),
            ("method", text(head.method.as_str())),
            ("headers", Value::from(headers)),
            ("query", text(head.uri.query().unwrap_or(""))),
            (
                "scheme",
                text(head.uri.scheme_str().unwrap_or(if r.conn.tls.is_some() {
                    "https"
                } else {
                    "http"
                })),
            ),
            ("protocol", text(super::version_str(head.version))),
            ("size", Value::Int(r.bytes_in() as i64)),
        ];
        if let Some(host) = head.authority() {
            request.push(("host", text(host)));
        }
        if let Some(ua) = header("user-agent") {
            request.push(("useragent", text(ua)));
        }
        if let Some(id) = r
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .or_else(|| header("x-request-id"))
        {
            request.push(("id", text(id)));
        }
        out.push(("request", map(request)));
        if r.status > 0 {
            response.push(("code", Value::Int(i64::from(r.status))));
        }
        if let Some(c) = r.grpc_label() {
            let code = if c == crate::record::grpc::INVALID {
                -1
            } else {
                i64::from(c)
            };
            response.push(("grpc_status", Value::Int(code)));
        }
    }
    if let Some(d) = &r.details {
        response.push(("code_details", text(&d.replace(' ', "_"))));
    } else if r.request.is_some() && r.upstream.is_some() && r.status > 0 {
        response.push(("code_details", text("via_upstream")));
    }
    out.push(("response", map(response)));
    let tls = r.conn.tls.as_ref();
    let peer = tls.and_then(|t| t.peer_identity.as_deref());
    let mut connection = vec![("mtls", Value::Bool(peer.is_some()))];
    if let Some(sni) = tls.and_then(|t| t.sni.as_deref()) {
        connection.push(("requested_server_name", text(sni)));
    }
    if let Some(p) = peer {
        connection.push(("uri_san_peer_certificate", text(p)));
    }
    out.push(("connection", map(connection)));
    out.push((
        "source",
        map(vec![
            ("address", text(&r.conn.peer.ip().to_string())),
            ("port", port(r.conn.peer.port())),
        ]),
    ));
    out.push((
        "destination",
        map(vec![
            ("address", text(&r.conn.local.ip().to_string())),
            ("port", port(r.conn.local.port())),
        ]),
    ));
    if let Some(addr) = r
        .upstream
        .as_ref()
        .and_then(|u| u.display.parse::<std::net::SocketAddr>().ok())
    {
        out.push((
            "upstream",
            map(vec![
                ("address", text(&addr.ip().to_string())),
                ("port", port(addr.port())),
            ]),
        ));
    }
    out
}
