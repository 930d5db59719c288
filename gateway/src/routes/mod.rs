//! The Docker Engine API routes. Handlers are thin: parse the request, make one bus call (or
//! stream), render dockerd's JSON.

mod images;
pub mod system;

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
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
        .fallback(|| async { ApiError::not_found("page not found") })
        .with_state(state)
}
