//! Which node holds an exec: every node is asked (`exec.locate`), the one that has it says so.

use wharf_bus::api;
use wharf_bus::container::{ExecLocation, ExecRef};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn no_such_exec(id: &str) -> ApiError {
    ApiError::not_found(format!("No such exec instance: {id}"))
}

/// The node that says it holds the exec.
pub fn holder(exec_id: &str, answers: Vec<ExecLocation>) -> ApiResult<String> {
    answers
        .into_iter()
        .find(|a| a.found)
        .map(|a| a.node)
        .ok_or_else(|| no_such_exec(exec_id))
}

/// Which node holds exec `exec_id`.
pub async fn locate(state: &AppState, exec_id: &str) -> ApiResult<String> {
    if exec_id.is_empty() {
        return Err(no_such_exec(exec_id));
    }
    let request = ExecRef {
        exec_id: exec_id.to_string(),
    };
    let answers = state
        .roster()
        .await?
        .gather::<api::ExecLocate>(&request)
        .await?;
    holder(exec_id, answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn the_exec_is_on_the_node_that_found_it() {
        let at = |node: &str, found| ExecLocation {
            node: node.into(),
            found,
        };
        assert_eq!(
            holder("e1", vec![at("n1", false), at("n2", true)]).unwrap(),
            "n2"
        );
        let err = holder("e1", vec![at("n1", false)]).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "No such exec instance: e1");
        assert!(holder("e1", vec![]).is_err());
    }
}
