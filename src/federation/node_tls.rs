//! TLS towards another centre's node that checks whom it reached: besides the CA and the host name, the server's certificate must grant the node role of the centre the trust list says lives there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::TlsMaterial;
use super::identity::{Caller, Role};
use crate::code::CentreCode;

/// Accepts a server certificate the CA vouches for, for the host, granting `node` for `centre`.
#[derive(Debug)]
struct NodeVerifier {
    web_pki: Arc<WebPkiServerVerifier>,
    centre: CentreCode,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.web_pki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let names_the_node =
            Caller::from_certificate(end_entity).is_ok_and(|caller| caller.require(Role::Node, self.centre).is_ok());
        if !names_the_node {
            return Err(rustls::Error::General(format!(
                "the server's certificate does not grant the node role of centre {}",
                self.centre
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.web_pki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.web_pki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.web_pki.supported_verify_schemes()
    }
}

/// Opens TCP then TLS to one node for the HTTP/2 client.
#[derive(Clone)]
struct NodeConnector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    authority: String,
}

impl tower_service::Service<http::Uri> for NodeConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (tls, server_name, authority) = (self.tls.clone(), self.server_name.clone(), self.authority.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(&authority).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tls.connect(server_name, tcp).await?))
        })
    }
}

impl TlsMaterial {
    /// A lazily connected channel to the node at `address` (`https://host:port`) that only
    /// talks to a server whose certificate grants the node role of `centre`.
    pub fn node_channel(&self, address: &str, centre: CentreCode, timeout: Duration) -> Result<Channel, String> {
        let authority = address.strip_prefix("https://").ok_or_else(|| format!("{address}: not https://"))?;
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{address}: {e}"))?;
        let connector = NodeConnector {
            tls: TlsConnector::from(Arc::new(self.node_client_config(centre)?)),
            server_name,
            authority: authority.to_owned(),
        };
        // The connector speaks TLS itself; the channel sends HTTP/2 over it.
        let endpoint = Endpoint::from_shared(format!("http://{authority}")).map_err(|e| format!("{address}: {e}"))?;
        Ok(endpoint.connect_timeout(timeout).timeout(timeout).connect_with_connector_lazy(connector))
    }

    fn node_client_config(&self, centre: CentreCode) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&self.ca) {
            roots.add(certificate.map_err(|e| format!("tls.ca: {e}"))?).map_err(|e| format!("tls.ca: {e}"))?;
        }
        let web_pki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("tls.ca: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(&self.certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.private_key).map_err(|e| format!("tls.private_key: {e}"))?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NodeVerifier { web_pki, centre }))
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("tls: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}
