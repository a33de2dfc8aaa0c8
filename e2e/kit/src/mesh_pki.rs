//! A mesh's PKI for tests of the mesh CA: a root, intermediates it signs
//! (good ones and each way of being wrong), and workload certificates in
//! the chain layout istio-agent hands Envoy as `default` (leaf,
//! intermediate, root).

use crate::pki::{set_validity, unix_now};
use anyhow::Result;
use certsync_contract::Fingerprint;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

/// A self-signed mesh root.
pub struct MeshRoot {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// How an intermediate is made (the defaults make a good one).
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub is_ca: bool,
    pub key_cert_sign: bool,
    /// Unix seconds; default ten years from now.
    pub not_after: Option<i64>,
    pub common_name: String,
}

impl Default for CaSpec {
    fn default() -> Self {
        CaSpec {
            is_ca: true,
            key_cert_sign: true,
            not_after: None,
            common_name: "cert-sync mesh intermediate".into(),
        }
    }
}

/// An intermediate CA: what a cert-manager CA Secret holds.
pub struct MeshIntermediate {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// `tls.crt`: the intermediate alone (cert-manager's layout for a CA
    /// issued by a root).
    pub cert_pem: String,
    /// `tls.key`.
    pub key_pem: String,
    pub sha256: Fingerprint,
}

impl MeshRoot {
    pub fn new(common_name: &str) -> Result<MeshRoot> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(common_name, &CaSpec::default(), None)?;
        Ok(MeshRoot {
            issuer: CertifiedIssuer::self_signed(params, key)?,
        })
    }

    /// `ca.crt` / `root-cert.pem`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn sha256(&self) -> Fingerprint {
        Fingerprint::of_der(self.issuer.der())
    }

    /// An intermediate signed by this root.
    pub fn intermediate(&self, spec: &CaSpec) -> Result<MeshIntermediate> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(&spec.common_name, spec, Some(0))?;
        let issuer = CertifiedIssuer::signed_by(params, key, &self.issuer)?;
        let key_pem = issuer.key().serialize_pem();
        Ok(MeshIntermediate {
            cert_pem: issuer.pem(),
            sha256: Fingerprint::of_der(issuer.der()),
            key_pem,
            issuer,
        })
    }
}

impl MeshIntermediate {
    /// A workload certificate for `spiffe_id`, as istio-agent gives it to
    /// Envoy: leaf, this intermediate, then `root_pem`.
    pub fn workload(&self, spiffe_id: &str, root_pem: &str) -> Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = unix_now()?;
        set_validity(&mut params, now - 60, now + 86_400)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}{}", cert.pem(), self.cert_pem, root_pem),
            key.serialize_pem(),
        ))
    }
}

fn ca_params(common_name: &str, spec: &CaSpec, path_len: Option<u8>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "cert-sync mesh");
    params.distinguished_name = dn;
    params.is_ca = if spec.is_ca {
        IsCa::Ca(match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        })
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = if spec.key_cert_sign {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    let now = unix_now()?;
    set_validity(
        &mut params,
        now - 3_600,
        spec.not_after.unwrap_or(now + 10 * 365 * 86_400),
    )?;
    Ok(params)
}
