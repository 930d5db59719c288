use nix::errno::Errno;

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec asks for something this launcher cannot do, or is incomplete.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A kernel call in the launching (parent) process failed.
    #[error("{what}: {errno}")]
    Os { what: String, errno: Errno },
    /// The container's init failed before exec; the message is the child's own, e.g.
    /// `exec: "nosuch": executable file not found in $PATH`.
    #[error("{0}")]
    Setup(String),
}

impl LaunchError {
    pub(crate) fn os(what: impl Into<String>, errno: Errno) -> Self {
        LaunchError::Os {
            what: what.into(),
            errno,
        }
    }
}

pub type Result<T> = std::result::Result<T, LaunchError>;

/// A failed step inside the child, before exec; its text travels to the parent.
#[derive(Debug)]
pub(crate) struct StepError(pub(crate) String);

impl StepError {
    pub(crate) fn os(what: impl std::fmt::Display, errno: Errno) -> Self {
        StepError(format!("{what}: {errno}"))
    }
}

pub(crate) type StepResult<T> = std::result::Result<T, StepError>;
