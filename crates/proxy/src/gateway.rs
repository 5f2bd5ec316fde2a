//! A gateway listener: one port of the `Gateway` servers this proxy runs. HTTP servers
//! route requests by their VirtualServices' `http` rules; TCP servers carry connections
//! by `tcp` rules; `PASSTHROUGH` servers route TLS by the ClientHello's server name
//! (`tls` rules) without terminating it; `SIMPLE` / `MUTUAL` servers terminate TLS
//! (the server chosen by the ClientHello's name), then route HTTPS requests by `http`
//! rules and TLS servers' bytes by `tcp` rules.

use std::sync::Arc;
use std::time::Duration;

use skiff_model::config::Protocol;
use tokio::net::TcpStream;

use crate::ResponseFlag;
use crate::conn::{Conn, TlsInfo};
use crate::io::Rewind;
use crate::record::Record;
use crate::sniff::sni::{self, Hello};

mod tls;

pub(crate) use tls::TlsServers;

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection to gateway port `port` (as written in the Gateway).
pub(crate) async fn serve(conn: Arc<Conn>, stream: TcpStream, port: u16) {
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    let Some(p) = snapshot.gateway_port(port) else {
        return crate::http::serve(conn, stream).await;
    };
    if let Some(servers) = &p.tls {
        return Box::pin(terminate(conn, stream, servers, p.protocol, port)).await;
    }
    if p.protocol.is_http() {
        crate::http::serve(conn, stream).await
    } else {
        let ip = Some(conn.local.ip());
        crate::l4::serve(&conn, &snapshot, p, stream, None, ip).await
    }
}

/// Terminates TLS with the server the ClientHello names, then serves what is inside.
async fn terminate(
    conn: Arc<Conn>,
    mut stream: TcpStream,
    servers: &TlsServers,
    protocol: Protocol,
    port: u16,
) {
    let handshake = async {
        let (hello, seen) = sni::read(&mut stream).await.map_err(|e| e.to_string())?;
        let name = match hello {
            Hello::Sni(name) => Some(name),
            Hello::NoSni => None,
            Hello::NotTls | Hello::NeedMore => {
                return Err("the client did not start a TLS handshake".to_string());
            }
        };
        let Some((config, mesh)) = servers.select(name.as_deref()) else {
            return Err(format!(
                "no TLS server of port {port} serves {}",
                name.as_deref()
                    .unwrap_or("clients that send no server name")
            ));
        };
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(Rewind::new(seen, stream))
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok((tls, name, mesh))
    };
    let (tls, name, mesh) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => return refuse(&conn, reason),
        Err(_) => return refuse(&conn, "no TLS handshake within 10s".into()),
    };
    // Under ISTIO_MUTUAL the client proved a mesh identity, as at a sidecar's inbound.
    let peer_identity = mesh
        .then(|| skiff_identity::peer_identity(tls.get_ref().1))
        .flatten()
        .map(|id| Arc::<str>::from(id.to_string()));
    let conn = conn.with_tls(TlsInfo {
        peer_identity,
        sni: name.map(Arc::from),
        alpn: tls.get_ref().1.alpn_protocol().map(Arc::from),
        xfcc: None,
    });
    if protocol == Protocol::Https {
        crate::http::serve(conn, tls).await
    } else if let Some(snapshot) = conn.inputs.current()
        && let Some(p) = snapshot.gateway_port(port)
    {
        let ip = Some(conn.local.ip());
        crate::l4::serve(&conn, &snapshot, p, tls, None, ip).await
    }
}

/// Records a connection whose TLS handshake did not happen, with the reason.
fn refuse(conn: &Arc<Conn>, reason: String) {
    tracing::debug!(peer = %conn.peer, "gateway TLS: {reason}");
    let mut rec = Record::tcp(conn);
    rec.flag = ResponseFlag::DownstreamProtocolError;
    rec.details = Some(reason.into());
    rec.finish();
}
