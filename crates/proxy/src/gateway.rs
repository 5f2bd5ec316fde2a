//! A gateway listener: one port of the `Gateway` servers this proxy runs. HTTP servers
//! route requests by their VirtualServices' `http` rules; TCP servers carry connections
//! by `tcp` rules; `PASSTHROUGH` servers route TLS by the ClientHello's server name
//! (`tls` rules) without terminating it.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::conn::Conn;

/// Serves one connection to gateway port `port` (as written in the Gateway).
pub(crate) async fn serve(conn: Arc<Conn>, stream: TcpStream, port: u16) {
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    match snapshot.gateway_port(port) {
        Some(p) if !p.protocol.is_http() => {
            let ip = Some(conn.local.ip());
            crate::l4::serve(&conn, &snapshot, p, stream, None, ip).await
        }
        _ => crate::http::serve(conn, stream).await,
    }
}
