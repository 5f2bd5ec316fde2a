//! Connects to a control plane as a proxy and prints every config it is pushed, as
//! JSON, then acknowledges it. Handy to see what a proxy would get without running
//! one:
//!
//! ```text
//! cargo run -p skiff-xds --example watch_config -- 127.0.0.1:15010 frontend.prod
//! ```

use std::time::Duration;

use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(control), Some(id)) = (args.next(), args.next()) else {
        anyhow::bail!(
            "usage: watch_config CONTROL_ADDR PROXY_ID (e.g. 127.0.0.1:15010 frontend.prod)"
        );
    };
    let client = skiff_xds::connect(
        &control,
        NodeInfo::new(id),
        ClientOptions::default(),
        |update: ConfigUpdate| {
            let json = serde_json::to_string_pretty(&update.config()).map_err(|e| e.to_string())?;
            println!("# version {}\n{json}", update.version);
            Ok(())
        },
    )?;
    let mut status = client.status();
    loop {
        let s = status.borrow_and_update().clone();
        if !s.connected
            && let Some(error) = &s.last_error
        {
            eprintln!("# disconnected: {error}");
        }
        if status.changed().await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
