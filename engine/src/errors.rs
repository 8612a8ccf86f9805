//! Errors of tasks (classified retryable or fatal) and of the engine itself.

use trailhub_state::{ErrorRecord, StateError};

/// Whether an error is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient: throttling, 5xx, timeouts, eventual consistency. Retried with backoff.
    Retryable,
    /// Permanent until someone changes something. Never retried.
    Fatal,
}

/// An error from a task's `plan`, `apply` or `rollback`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// Retryable or fatal.
    pub kind: ErrorKind,
    /// What failed, with the provider's error code in it when there is one.
    pub message: String,
    /// The provider's error code (`NoSuchBucket`, `Throttling`…).
    pub code: Option<String>,
    /// What the operator can do about it.
    pub hint: Option<String>,
    /// Whether it holds whatever earlier nodes do (a conflict with what is live, not a resource
    /// that an earlier node is about to create): plan reports it even below a node it creates.
    pub standing: bool,
}

impl TaskError {
    /// A transient error.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError {
            kind: ErrorKind::Retryable,
            message: message.into(),
            code: None,
            hint: None,
            standing: false,
        }
    }

    /// A permanent error.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError {
            kind: ErrorKind::Fatal,
            message: message.into(),
            code: None,
            hint: None,
            standing: false,
        }
    }

    /// Sets the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Marks the error as holding whatever earlier nodes do (plan reports it even below a node
    /// it creates, where other probe errors become "known once … is created").
    pub fn standing(mut self) -> Self {
        self.standing = true;
        self
    }

    /// Sets what the operator can do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error, saying that retries ran out after `attempts` attempts.
    pub fn with_retries_exhausted(mut self, attempts: u32) -> Self {
        self.message = format!("{} (gave up after {attempts} attempts)", self.message);
        self
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The journal's form of this error.
    pub fn to_record(&self) -> ErrorRecord {
        ErrorRecord {
            message: self.message.clone(),
            code: self.code.clone(),
            retryable: self.is_retryable(),
            hint: self.hint.clone(),
        }
    }
}

/// One problem found while sealing a DAG.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum ValidationError {
    /// Two nodes share an id.
    #[error("duplicate node `{0}`")]
    Duplicate(String),
    /// A node depends on a node that is not in the DAG.
    #[error("node `{node}` depends on `{missing}`, which is not in the graph")]
    MissingDependency {
        /// The dependent.
        node: String,
        /// The unknown dependency.
        missing: String,
    },
    /// A set of nodes depend on each other.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// What can stop the engine itself (as opposed to a node failing).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The DAG is not valid; every problem is listed, sorted.
    #[error("invalid workflow graph:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ValidationError>),
    /// The journal failed; the run cannot continue safely.
    #[error(transparent)]
    Journal(#[from] StateError),
    /// The run cannot be acted on in its current status.
    #[error("{0}")]
    Refused(String),
}
