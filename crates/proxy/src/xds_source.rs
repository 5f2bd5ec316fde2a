//! Config from the control plane: the xDS client of `skiff-xds` hands every pushed
//! config to [`Proxy::apply`], the same update path the file source uses; the result is
//! the ACK or the NACK (with the reason) that goes back.

use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo, XdsClient};

use crate::{Error, Proxy};

/// Connects to the control plane at `control` as proxy `id`. Must be called within a
/// tokio runtime (the client's task runs there). The returned client must be kept: it
/// stops when dropped. An unreachable control plane is retried with backoff; the proxy
/// keeps serving its last accepted config meanwhile.
pub fn connect(proxy: &Proxy, control: &str, id: &str) -> Result<XdsClient, Error> {
    let proxy = proxy.clone();
    skiff_xds::connect(
        control,
        NodeInfo::new(id).with("admin", proxy.admin_addr().to_string()),
        ClientOptions::default(),
        move |update: ConfigUpdate| {
            proxy
                .apply(update.version.clone(), update.config())
                .map_err(|e| e.to_string())
        },
    )
    .map_err(|e| Error::Control(e.to_string()))
}
