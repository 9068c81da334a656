//! What can go wrong with management, typed so that the app can act: a bad setup key needs a
//! new one, a login that needs a person (SSO) needs the NetBird app, an unreachable server only
//! needs time (the engine retries).

use crate::keys::KeyError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    /// gRPC NotFound on login: the setup key is unknown, revoked, expired or used up.
    #[error("the setup key was refused ({message}): create a new one in the NetBird dashboard")]
    InvalidSetupKey { message: String },
    /// gRPC PermissionDenied: the server wants a user login (SSO), or the peer's login expired.
    /// peerlink has no SSO flow; log the peer in with a setup key.
    #[error("management needs a user login or the peer's login expired ({message}); SSO is not supported: use a setup key")]
    LoginRequired { message: String },
    /// No answer, or a transport error: retried with backoff while the network is up.
    #[error("management server unreachable: {message}")]
    Unreachable { message: String },
    /// Any other gRPC status (FailedPrecondition, Internal, …).
    #[error("management refused {call}: {code}: {message}")]
    Refused {
        call: &'static str,
        code: String,
        message: String,
    },
    /// A body that does not open with the server's key, or does not decode.
    #[error("management sent a message that {problem}")]
    BadMessage { problem: String },
    /// The server's key is not a WireGuard key.
    #[error("management's server key is invalid: {0}")]
    ServerKey(KeyError),
    #[error("management URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
}

impl ManagementError {
    /// Whether retrying later can succeed without the app doing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            ManagementError::Unreachable { .. }
            | ManagementError::Refused { .. }
            | ManagementError::BadMessage { .. }
            | ManagementError::ServerKey(_) => true,
            ManagementError::InvalidSetupKey { .. }
            | ManagementError::LoginRequired { .. }
            | ManagementError::BadUrl { .. } => false,
        }
    }

    /// Maps a gRPC status of `call` as NetBird's server means it (`mapError` in its
    /// management grpc server: NotFound for setup keys, PermissionDenied for login needed).
    pub(crate) fn from_status(call: &'static str, status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::NotFound if call == "Login" => ManagementError::InvalidSetupKey { message },
            tonic::Code::PermissionDenied => ManagementError::LoginRequired { message },
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ManagementError::Unreachable { message }
            }
            code => ManagementError::Refused {
                call,
                code: format!("{code:?}"),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_what_the_app_must_do() {
        let e = ManagementError::from_status("Login", &tonic::Status::not_found("setup key not found"));
        assert!(matches!(e, ManagementError::InvalidSetupKey { .. }) && !e.is_transient());
        let e = ManagementError::from_status("Login", &tonic::Status::permission_denied("expired"));
        assert!(matches!(e, ManagementError::LoginRequired { .. }) && !e.is_transient());
        assert!(e.to_string().contains("SSO is not supported"), "{e}");
        let e = ManagementError::from_status("Sync", &tonic::Status::unavailable("down"));
        assert!(matches!(e, ManagementError::Unreachable { .. }) && e.is_transient());
        let e = ManagementError::from_status("Sync", &tonic::Status::internal("oops"));
        assert!(matches!(e, ManagementError::Refused { call: "Sync", .. }) && e.is_transient());
    }
}
