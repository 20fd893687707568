//! [`Error`]: what a request can fail with, rendered as the spec's JSON error body.

use axum::{
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use store::blob::{BlobError, SpoolError};

/// The OCI distribution spec's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not in the spec: a server-side failure (HTTP 500).
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error with its spec code.
    #[error("{code:?}: {message}")]
    Api { status: StatusCode, code: Code, message: String, headers: Vec<(HeaderName, HeaderValue)> },
    #[error("{context}")]
    Storage { context: String, source: Box<BlobError> },
    #[error("{context}")]
    Spool { context: String, source: Box<SpoolError> },
}

impl Error {
    pub fn api(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Error::Api { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let (Error::Api { headers, .. }, Ok(value)) = (&mut self, HeaderValue::from_str(value)) {
            headers.retain(|(n, _)| n != name);
            headers.push((name, value));
        }
        self
    }

    pub fn storage(context: impl Into<String>) -> impl FnOnce(BlobError) -> Error {
        let context = context.into();
        move |source| Error::Storage { context, source: Box::new(source) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Api { status, .. } => *status,
            Error::Storage { source, .. } => match **source {
                BlobError::DigestMismatch { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Spool { source, .. } => match **source {
                SpoolError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                SpoolError::Body { .. } => StatusCode::BAD_REQUEST,
                SpoolError::Gone => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::Api { code, .. } => *code,
            Error::Storage { source, .. } => match **source {
                BlobError::DigestMismatch { .. } => Code::DigestInvalid,
                _ => Code::Unknown,
            },
            Error::Spool { source, .. } => match **source {
                SpoolError::TooLarge { .. } => Code::SizeInvalid,
                SpoolError::Body { .. } => Code::BlobUploadInvalid,
                SpoolError::Gone => Code::BlobUploadUnknown,
                _ => Code::Unknown,
            },
        }
    }
}

/// Shorthands for the common client errors.
pub fn not_found(code: Code, message: impl Into<String>) -> Error {
    Error::api(StatusCode::NOT_FOUND, code, message)
}

pub fn bad_request(code: Code, message: impl Into<String>) -> Error {
    Error::api(StatusCode::BAD_REQUEST, code, message)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let message = match &self {
            Error::Api { message, .. } => message.clone(),
            other => {
                let chain = error_chain(other);
                if status.is_server_error() {
                    tracing::error!(error = %chain, "Registry request failed.");
                }
                chain
            }
        };
        let body = serde_json::json!({ "errors": [{ "code": code.as_str(), "message": message, "detail": null }] });
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if let Error::Api { headers, .. } = self {
            for (name, value) in headers {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
