//! The Docker Engine API routes. Handlers are thin: parse the request as dockerd does, make the
//! bus call (or open the stream) its declaration in `wharf_bus::api` names, on the node the
//! cluster layer ([`crate::cluster`]) finds, and render dockerd's answer.

mod auth;
mod build;
mod containers;
mod distribution;
mod images;
mod networks;
mod swarm;
mod sync;
pub mod system;
mod volumes;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::content_type::json_post;
use crate::error::ApiError;
use crate::state::AppState;

/// The routes; those registered with [`json_post`] take a JSON body and refuse other content
/// types, as dockerd's `CheckForJSON` does (`content_type.rs`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/auth", json_post(auth::login))
        .route("/system/df", get(system::disk_usage))
        .route("/build/prune", post(system::build_prune))
        .route("/build", post(build::build))
        .route("/wharf/sync", json_post(sync::sync))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/create", json_post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{name}", delete(containers::remove))
        .route(
            "/containers/{name}/{alias}",
            delete(containers::remove_link),
        )
        .route("/containers/{name}/json", get(containers::inspect))
        .route("/containers/{name}/logs", get(containers::logs))
        .route("/containers/{name}/start", post(containers::start))
        .route("/containers/{name}/stop", post(containers::stop))
        .route("/containers/{name}/restart", post(containers::restart))
        .route("/containers/{name}/kill", post(containers::kill))
        .route("/containers/{name}/pause", post(containers::pause))
        .route("/containers/{name}/unpause", post(containers::unpause))
        .route("/containers/{name}/rename", post(containers::rename))
        .route("/containers/{name}/resize", post(containers::resize))
        .route("/containers/{name}/wait", post(containers::wait))
        .route("/containers/{name}/attach", post(containers::attach))
        .route(
            "/containers/{name}/exec",
            json_post(containers::exec::create),
        )
        .route("/containers/{name}/stats", get(containers::stats))
        .route("/containers/{name}/top", get(containers::top))
        .route("/containers/{name}/update", json_post(containers::update))
        .route(
            "/containers/{name}/archive",
            get(containers::archive::get)
                .head(containers::archive::head)
                .put(containers::archive::put),
        )
        .route(
            "/containers/{name}/export",
            get(containers::archive::export),
        )
        .route(
            "/containers/{name}/changes",
            get(containers::archive::changes),
        )
        .route("/commit", json_post(containers::archive::commit))
        .route("/exec/{id}/start", json_post(containers::exec::start))
        .route("/exec/{id}/resize", post(containers::exec::resize))
        .route("/exec/{id}/json", get(containers::exec::inspect))
        .route("/networks", get(networks::list))
        .route("/networks/create", json_post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", json_post(networks::connect))
        .route("/networks/{id}/disconnect", json_post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", json_post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/distribution/{*rest}", get(distribution::inspect))
        .merge(swarm::router())
        .fallback(|| async { ApiError::not_found("page not found") })
        .with_state(state)
}
