//! The network of centres: caller identity from client certificates, the trust directory, nodes following it, and consumption at the issuer's node (docs/federation.md).

pub mod directory;
pub mod identity;
mod node_tls;
pub mod refresh;
pub mod remote;

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// The PEM files of `[tls]`, read once at start.
#[derive(Clone)]
pub struct TlsMaterial {
    certificate: Vec<u8>,
    private_key: zeroize::Zeroizing<Vec<u8>>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { .. }")
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("tls.{what}: reading {}", path.display()))
}

impl TlsMaterial {
    /// Reads the files; a private key others can read is refused like any secret key file.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Self> {
        crate::trust::keys::check_protected(&config.private_key)
            .with_context(|| format!("tls.private_key {}", config.private_key.display()))?;
        Ok(Self {
            certificate: read(&config.certificate, "certificate")?,
            private_key: zeroize::Zeroizing::new(read(&config.private_key, "private_key")?),
            ca: read(&config.ca, "ca")?,
        })
    }

    /// Material from PEM text (tests and tools).
    pub fn from_pem(certificate: &str, private_key: &str, ca: &str) -> Self {
        Self {
            certificate: certificate.as_bytes().to_vec(),
            private_key: zeroize::Zeroizing::new(private_key.as_bytes().to_vec()),
            ca: ca.as_bytes().to_vec(),
        }
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.certificate, self.private_key.as_slice())
    }

    /// The listener's TLS: this node's certificate; client certificates from the CA are
    /// verified when presented, and calls without one are refused per RPC (UNAUTHENTICATED),
    /// so that health checks work without a certificate.
    pub fn server_config(&self, handshake_timeout: std::time::Duration) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
            .timeout(handshake_timeout)
    }

    /// TLS towards another node or the directory: its certificate must come from the CA; this
    /// node presents its own.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca)).identity(self.identity())
    }
}
