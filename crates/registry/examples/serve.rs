//! A bare standalone registry for profiling the crate without building the whole CLI:
//! `cargo run --release -p registry --example serve -- 127.0.0.1:5000 ./data`.
//! (`slipway registry` is the real command; this skips its config and S3 handling.)

use std::sync::Arc;

use registry::{Options, Registry};
use store::blob::FileStore;
use tokio_util::sync::CancellationToken;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:5000".to_owned());
    let dir = args.next().unwrap_or_else(|| "./registry-data".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = Arc::new(FileStore::open(&dir)?);
        let registry = Registry::new(store.clone(), store, Options::default())?;
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
            }
        });
        registry::serve(listener, registry, shutdown).await?;
        Ok(())
    })
}
