//! What every handler shares: the bus connection and this gateway's settings.

use std::sync::Arc;

use wharf_bus::nodes::Roster;

use crate::cluster::node::NodeClient;
use crate::error::{ApiError, ApiResult};
use crate::Options;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub bus: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub options: Options,
    /// Stable engine ID shown by `docker info`, derived from the host and data root.
    pub engine_id: String,
    /// The runtime nodes; started with the gateway, or on first use if the bus refused then.
    roster: tokio::sync::OnceCell<Roster>,
}

impl AppState {
    /// Node `name` (a container's, an exec's or a network's), to call its endpoints.
    pub fn node<'a>(&'a self, name: &'a str) -> NodeClient<'a> {
        NodeClient::new(&self.bus, name)
    }

    pub async fn new(bus: async_nats::Client, options: Options) -> AppState {
        use sha2::Digest;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let digest =
            sha2::Sha256::digest(format!("{host}{}", options.data_root.display()).as_bytes());
        let hex = hex::encode(digest).to_uppercase();
        let engine_id = hex
            .as_bytes()
            .chunks(4)
            .take(12)
            .map(|c| String::from_utf8_lossy(c).to_string())
            .collect::<Vec<_>>()
            .join(":");
        let jetstream = async_nats::jetstream::new(bus.clone());
        let state = AppState(Arc::new(Inner {
            bus,
            jetstream,
            options,
            engine_id,
            roster: tokio::sync::OnceCell::new(),
        }));
        if let Err(e) = state.roster().await {
            tracing::warn!(
                "cannot follow runtime nodes yet ({}); will retry on first use",
                e.message
            );
        }
        state
    }

    /// The runtime node roster, started now if it could not be at startup.
    pub async fn roster(&self) -> ApiResult<Roster> {
        self.roster
            .get_or_try_init(|| Roster::start(self.bus.clone()))
            .await
            .cloned()
            .map_err(ApiError::from)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
