//! Who calls: the centres and roles a client certificate names (SAN URIs `urn:liangma:centre:<code>:<role>`), and what each role may do.

use std::fmt;

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::code::CentreCode;

/// Prefix of the SAN URI that grants a role for a centre.
pub const CENTRE_URI_PREFIX: &str = "urn:liangma:centre:";
/// The SAN URI of the national platform's operators (the trust directory's administrators).
pub const NATIONAL_OPERATOR_URI: &str = "urn:liangma:national:operator";

/// What a certificate holder does for a centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A counter of the loan centre: verifies codes, evaluates loans, looks up granted statuses.
    Counter,
    /// The centre's core business system: publishes its members' statuses, issues and revokes
    /// their codes, reads their usage records.
    Core,
    /// A liangma node serving the centre: consumes codes at their issuer's node, fetches the
    /// directory's list.
    Node,
    /// The centre's operators: reload the node's trust list, submit the centre's key changes.
    Operator,
}

impl Role {
    /// Every role, in the order documented.
    pub const ALL: [Role; 4] = [Role::Counter, Role::Core, Role::Node, Role::Operator];

    /// The name used in certificates and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Counter => "counter",
            Role::Core => "core",
            Role::Node => "node",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a certificate allows: a role for a centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// The centre.
    pub centre: CentreCode,
    /// The role for it.
    pub role: Role,
}

impl Grant {
    /// The SAN URI that carries this grant.
    pub fn uri(&self) -> String {
        format!("{CENTRE_URI_PREFIX}{}:{}", self.centre, self.role)
    }

    /// The grant a SAN URI carries; `None` for any other URI.
    pub fn from_uri(uri: &str) -> Option<Grant> {
        let (centre, role) = uri.strip_prefix(CENTRE_URI_PREFIX)?.split_once(':')?;
        let role = Role::ALL.into_iter().find(|known| known.as_str() == role)?;
        Some(Grant { centre: centre.parse().ok()?, role })
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No TLS on this listener (loopback dev default, or the loudly logged insecure setting):
    /// the caller is trusted as every role of every centre, as before federation.
    Unauthenticated,
    /// A client certificate the listener's CA vouches for, with what it grants.
    Certified {
        /// The certificate's grants (unknown URIs are ignored).
        grants: Vec<Grant>,
        /// Whether it names the national operator.
        national_operator: bool,
    },
    /// The listener requires certificates and the caller presented none.
    Anonymous,
}

/// Why a call was refused before it reached the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No client certificate on a listener that requires one.
    #[error("a client certificate is required")]
    NoCertificate,
    /// The certificate could not be read.
    #[error("the client certificate is not readable X.509")]
    BadCertificate,
    /// The certificate does not grant the role this call needs.
    #[error("this call needs the {role} role for centre {centre}; the client certificate does not grant it")]
    NotPermitted {
        /// The role needed.
        role: Role,
        /// For which centre.
        centre: CentreCode,
    },
    /// The certificate grants `role` for no centre.
    #[error("this call needs the {0} role; the client certificate does not grant it")]
    NoRole(Role),
    /// Only the national platform's operators may do this.
    #[error("this call needs the national operator role")]
    NotNationalOperator,
}

impl Caller {
    /// The caller a client certificate (DER) names; a certificate without liangma URIs grants nothing.
    pub fn from_certificate(der: &[u8]) -> Result<Caller, AccessError> {
        let certificate = Certificate::from_der(der).map_err(|_| AccessError::BadCertificate)?;
        let mut grants = Vec::new();
        let mut national_operator = false;
        if let Some((_, SubjectAltName(names))) =
            certificate.tbs_certificate().get_extension::<SubjectAltName>().map_err(|_| AccessError::BadCertificate)?
        {
            for name in names {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    let uri = uri.as_str();
                    if uri == NATIONAL_OPERATOR_URI {
                        national_operator = true;
                    } else if let Some(grant) = Grant::from_uri(uri) {
                        grants.push(grant);
                    }
                }
            }
        }
        grants.sort();
        grants.dedup();
        Ok(Caller::Certified { grants, national_operator })
    }

    /// Allows the call if the caller holds `role` for `centre`.
    pub fn require(&self, role: Role, centre: CentreCode) -> Result<(), AccessError> {
        match self {
            Caller::Unauthenticated => Ok(()),
            Caller::Anonymous => Err(AccessError::NoCertificate),
            Caller::Certified { grants, .. } if grants.contains(&Grant { centre, role }) => Ok(()),
            Caller::Certified { .. } => Err(AccessError::NotPermitted { role, centre }),
        }
    }

    /// Allows the call if the caller holds `role` for any centre.
    pub fn require_any(&self, role: Role) -> Result<(), AccessError> {
        match self {
            Caller::Unauthenticated => Ok(()),
            Caller::Anonymous => Err(AccessError::NoCertificate),
            Caller::Certified { grants, .. } if grants.iter().any(|grant| grant.role == role) => Ok(()),
            Caller::Certified { .. } => Err(AccessError::NoRole(role)),
        }
    }

    /// Allows the call for any certified caller (reading public data such as the trust list).
    pub fn require_known(&self) -> Result<(), AccessError> {
        match self {
            Caller::Anonymous => Err(AccessError::NoCertificate),
            Caller::Unauthenticated | Caller::Certified { .. } => Ok(()),
        }
    }

    /// Allows the call for the national operators, or for `role` of `centre` when given.
    pub fn require_national_or(&self, role_of: Option<(Role, CentreCode)>) -> Result<(), AccessError> {
        match (self, role_of) {
            (Caller::Certified { national_operator: true, .. }, _) => Ok(()),
            (_, Some((role, centre))) => self.require(role, centre),
            (Caller::Unauthenticated, None) => Ok(()),
            (Caller::Anonymous, None) => Err(AccessError::NoCertificate),
            (Caller::Certified { .. }, None) => Err(AccessError::NotNationalOperator),
        }
    }
}
