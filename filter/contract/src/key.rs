//! Does this private key belong to that certificate? Supports PKCS#1 (RSA),
//! SEC1 (EC) and PKCS#8 (RSA, ECDSA P-256/P-384, Ed25519) PEM keys.
//!
//! The check derives the public key from the private one and compares it with
//! the leaf's SubjectPublicKeyInfo. Errors name formats and algorithms only;
//! key bytes never leave this module, and decoded blocks are zeroized on drop.

use crate::cert;
use crate::error::InvalidKind;
use crate::pem::{self, SecretBlock};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use pkcs1::der::Decode;
use thiserror::Error;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The algorithm of a matching key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("no private key PEM block found")]
    NoKey,
    #[error("more than one private key PEM block found")]
    MultipleKeys,
    #[error("private key PEM framing is malformed")]
    MalformedPem,
    #[error("private key is encrypted; cert-sync needs an unencrypted key")]
    Encrypted,
    #[error("private key is not a valid {format} structure")]
    Malformed { format: &'static str },
    #[error("private key algorithm {0} is not supported (RSA, ECDSA P-256/P-384, Ed25519 are)")]
    Unsupported(String),
    #[error("certificate: {0}")]
    Certificate(#[source] crate::CertError),
    #[error("private key ({key:?}) does not match the certificate's public key")]
    Mismatch { key: KeyAlgorithm },
}

impl KeyError {
    /// Which kind of failure this is.
    pub fn kind(&self) -> InvalidKind {
        match self {
            KeyError::TooLarge { .. } => InvalidKind::TooLarge,
            KeyError::NoKey => InvalidKind::MissingKey,
            KeyError::MultipleKeys | KeyError::MalformedPem | KeyError::Malformed { .. } => {
                InvalidKind::MalformedKey
            }
            KeyError::Encrypted | KeyError::Unsupported(_) => InvalidKind::UnsupportedKey,
            KeyError::Certificate(e) => e.kind(),
            KeyError::Mismatch { .. } => InvalidKind::KeyMismatch,
        }
    }

    /// [`Self::kind`] as its stable label.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// A public key in comparable form.
#[derive(PartialEq, Eq)]
enum PublicKey {
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    P256(p256::PublicKey),
    P384(p384::PublicKey),
    Ed25519([u8; 32]),
}

impl PublicKey {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Rsa { .. } => KeyAlgorithm::Rsa,
            PublicKey::P256(_) => KeyAlgorithm::EcdsaP256,
            PublicKey::P384(_) => KeyAlgorithm::EcdsaP384,
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }
}

/// Checks that the PEM private key `key_pem` belongs to the leaf (first
/// certificate) of `cert_pem`.
pub fn check_matches(cert_pem: &[u8], key_pem: &[u8]) -> Result<KeyAlgorithm, KeyError> {
    let ders = pem::certificates(cert_pem).map_err(KeyError::Certificate)?;
    let leaf_der = ders
        .first()
        .ok_or(KeyError::Certificate(crate::CertError::NoCertificate))?;
    let leaf = cert::parse(leaf_der, 0).map_err(KeyError::Certificate)?;
    let private = public_key_of_private(key_pem)?;
    let algorithm = private.algorithm();
    match public_key_of_cert(leaf.public_key()) {
        Some(public) if public == private => Ok(algorithm),
        _ => Err(KeyError::Mismatch { key: algorithm }),
    }
}

fn public_key_of_private(key_pem: &[u8]) -> Result<PublicKey, KeyError> {
    let mut keys = pem::key_blocks(key_pem)?
        .into_iter()
        .filter(|b| b.label.ends_with("PRIVATE KEY"));
    let block = keys.next().ok_or(KeyError::NoKey)?;
    if keys.next().is_some() {
        return Err(KeyError::MultipleKeys);
    }
    match block.label.as_str() {
        "RSA PRIVATE KEY" => rsa_from_pkcs1(&block.contents),
        "EC PRIVATE KEY" => ec_from_sec1(&block),
        "PRIVATE KEY" => from_pkcs8(&block.contents),
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
        other => Err(KeyError::Unsupported(other.to_owned())),
    }
}

fn rsa_from_pkcs1(der: &[u8]) -> Result<PublicKey, KeyError> {
    let key = pkcs1::RsaPrivateKey::from_der(der).map_err(|_| KeyError::Malformed {
        format: "PKCS#1 RSAPrivateKey",
    })?;
    Ok(PublicKey::Rsa {
        modulus: key.modulus.as_bytes().to_vec(),
        exponent: key.public_exponent.as_bytes().to_vec(),
    })
}

fn ec_from_sec1(block: &SecretBlock) -> Result<PublicKey, KeyError> {
    let malformed = KeyError::Malformed {
        format: "SEC1 ECPrivateKey",
    };
    let parsed = sec1::EcPrivateKey::from_der(&block.contents).map_err(|_| malformed.clone())?;
    let curve = parsed
        .parameters
        .and_then(|p| p.named_curve())
        .ok_or_else(|| malformed.clone())?
        .to_string();
    match curve.as_str() {
        OID_P256 => p256::SecretKey::from_sec1_der(&block.contents)
            .map(|k| PublicKey::P256(k.public_key()))
            .map_err(|_| malformed),
        OID_P384 => p384::SecretKey::from_sec1_der(&block.contents)
            .map(|k| PublicKey::P384(k.public_key()))
            .map_err(|_| malformed),
        other => Err(KeyError::Unsupported(format!("EC curve {other}"))),
    }
}

fn from_pkcs8(der: &[u8]) -> Result<PublicKey, KeyError> {
    let malformed = KeyError::Malformed {
        format: "PKCS#8 PrivateKeyInfo",
    };
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|_| malformed.clone())?;
    match info.algorithm.oid.to_string().as_str() {
        OID_RSA => rsa_from_pkcs1(info.private_key),
        OID_EC => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| malformed.clone())?
                .to_string();
            match curve.as_str() {
                OID_P256 => <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                    .map(|k| PublicKey::P256(k.public_key()))
                    .map_err(|_| malformed),
                OID_P384 => <p384::SecretKey as p384::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                    .map(|k| PublicKey::P384(k.public_key()))
                    .map_err(|_| malformed),
                other => Err(KeyError::Unsupported(format!("EC curve {other}"))),
            }
        }
        OID_ED25519 => ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(|k| PublicKey::Ed25519(k.verifying_key().to_bytes()))
            .map_err(|_| malformed),
        other => Err(KeyError::Unsupported(format!("algorithm {other}"))),
    }
}

fn public_key_of_cert(spki: &SubjectPublicKeyInfo<'_>) -> Option<PublicKey> {
    let point = spki.subject_public_key.data.as_ref();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => {
            let key = pkcs1::RsaPublicKey::from_der(point).ok()?;
            Some(PublicKey::Rsa {
                modulus: key.modulus.as_bytes().to_vec(),
                exponent: key.public_exponent.as_bytes().to_vec(),
            })
        }
        OID_EC => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            match curve.to_id_string().as_str() {
                OID_P256 => p256::PublicKey::from_sec1_bytes(point)
                    .ok()
                    .map(PublicKey::P256),
                OID_P384 => p384::PublicKey::from_sec1_bytes(point)
                    .ok()
                    .map(PublicKey::P384),
                _ => None,
            }
        }
        OID_ED25519 => <[u8; 32]>::try_from(point).ok().map(PublicKey::Ed25519),
        _ => None,
    }
}
