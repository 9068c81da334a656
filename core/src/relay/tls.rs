//! Trust for `rels://` (DESIGN.md §12 "TLS on mobile"): the platform's certificate stores are out
//! of Rust's reach on Android and iOS, so a relay's certificate is checked against webpki's roots
//! plus the CA certificate(s) an app supplies for a self-hosted relay. The crypto is ring, the one
//! provider in the build (tonic's), handed to the config rather than installed process-wide.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::Connector;

/// The TLS settings of `rels://` connections. Cheap to clone: the config is shared.
#[derive(Clone)]
pub struct RelayTls {
    config: Arc<ClientConfig>,
    extra_cas: usize,
}

/// Why a CA bundle or the TLS settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error(
        "no PEM certificate found; give the CA as -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----"
    )]
    NoCertificate,
    #[error("PEM certificate {index} (from 0) is malformed: {detail}")]
    Pem { index: usize, detail: String },
    #[error("certificate {index} (from 0) cannot serve as a CA: {detail}")]
    Unusable { index: usize, detail: String },
    #[error("the TLS library refused its own settings: {0}")]
    Provider(String),
}

impl RelayTls {
    /// Trusts webpki's roots only: what a `rels://` connection without settings of its own uses.
    pub fn webpki() -> Result<Self, TlsConfigError> {
        Self::new(None)
    }

    /// Trusts webpki's roots plus every CA certificate in `ca_pem` (one or more PEM blocks; other
    /// PEM sections, such as keys, are ignored).
    pub fn new(ca_pem: Option<&str>) -> Result<Self, TlsConfigError> {
        let extra = match ca_pem {
            Some(pem) => parse_ca_pem(pem)?,
            None => Vec::new(),
        };
        let extra_cas = extra.len();
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (index, cert) in extra.into_iter().enumerate() {
            roots.add(cert).map_err(|e| TlsConfigError::Unusable {
                index,
                detail: e.to_string(),
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Provider(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            extra_cas,
        })
    }

    /// The connector to hand to [`super::RelayManagerConfig::tls`] or [`super::ClientOptions::tls`].
    pub fn connector(&self) -> Connector {
        Connector::Rustls(self.config.clone())
    }

    /// How many app-supplied CA certificates are trusted besides the webpki roots.
    pub fn extra_cas(&self) -> usize {
        self.extra_cas
    }
}

impl std::fmt::Debug for RelayTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTls")
            .field("extra_cas", &self.extra_cas)
            .finish_non_exhaustive()
    }
}

/// The certificates of a PEM bundle; at least one.
fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .enumerate()
        .map(|(index, cert)| {
            cert.map_err(|e| TlsConfigError::Pem {
                index,
                detail: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ca_trusts_the_webpki_roots_only() {
        let tls = RelayTls::webpki().unwrap();
        assert_eq!(tls.extra_cas(), 0);
        assert!(matches!(tls.connector(), Connector::Rustls(_)));
    }

    #[test]
    fn text_without_a_certificate_is_refused() {
        for pem in [
            "",
            "not a certificate",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert_eq!(
                RelayTls::new(Some(pem)).unwrap_err(),
                TlsConfigError::NoCertificate,
                "{pem:?}"
            );
        }
    }

    #[test]
    fn a_certificate_block_that_is_not_a_certificate_is_refused() {
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            RelayTls::new(Some(bad_base64)),
            Err(TlsConfigError::Pem { index: 0, .. })
        ));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            RelayTls::new(Some(not_der)),
            Err(TlsConfigError::Unusable { index: 0, .. })
        ));
    }

    #[test]
    fn debug_shows_only_the_count_of_extra_cas() {
        let tls = RelayTls::webpki().unwrap();
        assert_eq!(format!("{tls:?}"), "RelayTls { extra_cas: 0, .. }");
    }
}
