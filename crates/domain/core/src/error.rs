use thiserror::Error;

/// Why the domain refused an operation. Each variant maps to one HTTP status in the server's
/// single error-mapping place; messages are written for the person who has to fix the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// Bad input: names the field and says what would be accepted. `problem` says what is
    /// wrong by type where an edge may word it for its own readers (a form beside its field);
    /// the message stays what the API answers.
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        message: String,
        problem: Option<Problem>,
    },
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such request or grant (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The thing was already decided, used or ended.
    #[error("{0}")]
    Conflict(String),
    /// The payload a reviewer confirmed (by its SHA-256) is not the request's: they were shown
    /// something else than what they would approve. Nothing is approved.
    #[error("{0}")]
    PayloadMismatch(String),
    /// A field longer than the limit every caller is held to.
    #[error("{field}: is {len} bytes; keep it under {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl DomainError {
    /// `Err(TooLong)` if `value` is over `max` bytes.
    pub fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
        if value.len() > max {
            return Err(DomainError::TooLong {
                field,
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
            problem: None,
        }
    }

    /// [`DomainError::invalid`], with what is wrong by type.
    pub fn invalid_because(field: impl Into<String>, message: impl Into<String>, problem: Problem) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
            problem: Some(problem),
        }
    }
}

/// What is wrong with an input, by type, for the refusals an edge words for its readers
/// rather than passing the API's message on (which may, say, quote a regular expression).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The reason mentions no ticket the workflow's pattern accepts. `example` is one it
    /// accepts, when the policy can name one.
    NoTicket { example: Option<String> },
}
