//! A throwaway PKI for tests: a CA made at run time and certificates naming centres and roles as docs/federation.md describes.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

use crate::federation::TlsMaterial;
use crate::federation::identity::{Grant, NATIONAL_OPERATOR_URI};

/// A CA and what it issues.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate: String,
    /// Its private key.
    pub private_key: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    /// The CA certificate, PEM.
    pub fn certificate(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1 (server and client use) carrying `grants`
    /// (and the national operator URI when `national_operator`).
    pub fn issue(&self, grants: &[Grant], national_operator: bool) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf parameters");
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let uris = grants.iter().map(Grant::uri).chain(national_operator.then(|| NATIONAL_OPERATOR_URI.to_owned()));
        for uri in uris {
            params.subject_alt_names.push(SanType::URI(uri.as_str().try_into().expect("ASCII URI")));
        }
        params.distinguished_name.push(DnType::CommonName, "liangma test peer");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("leaf key");
        let certificate = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Issued { certificate: certificate.pem(), private_key: key.serialize_pem() }
    }

    /// TLS material for a holder of `grants`.
    pub fn material(&self, grants: &[Grant], national_operator: bool) -> TlsMaterial {
        let issued = self.issue(grants, national_operator);
        TlsMaterial::from_pem(&issued.certificate, &issued.private_key, &self.certificate())
    }
}
