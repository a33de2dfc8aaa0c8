//! PEM framing: splitting a Secret's `tls.crt` into DER certificates, and
//! finding the private key block in `tls.key`.

use crate::error::CertError;
use x509_parser::pem::Pem;

/// Upper bound for a `tls.crt` or `tls.key` value. Kubernetes caps a whole
/// Secret at 1 MiB; real chains are a few KiB.
pub const MAX_PEM_BYTES: usize = 256 * 1024;
/// Longest chain accepted: leaf, a few intermediates, perhaps a root.
pub const MAX_CHAIN_LEN: usize = 8;

/// The DER certificates of a PEM chain, in file order (leaf first).
/// Every block must be a CERTIFICATE; anything else is refused by label.
pub fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(CertError::TooLarge {
            size: pem.len(),
            limit: MAX_PEM_BYTES,
        });
    }
    let mut ders = Vec::new();
    for (index, block) in Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| CertError::MalformedPem {
            index,
            reason: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            return Err(CertError::UnexpectedBlock {
                index,
                label: block.label,
            });
        }
        if ders.len() == MAX_CHAIN_LEN {
            return Err(CertError::ChainTooLong {
                len: ders.len() + 1,
                limit: MAX_CHAIN_LEN,
            });
        }
        ders.push(block.contents);
    }
    if ders.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(ders)
}

/// A decoded PEM block whose contents are wiped when dropped: used for keys.
#[cfg(feature = "keys")]
pub(crate) struct SecretBlock {
    pub label: String,
    pub contents: zeroize::Zeroizing<Vec<u8>>,
}

/// All PEM blocks of a key file. Errors never include block contents.
#[cfg(feature = "keys")]
pub(crate) fn key_blocks(pem: &[u8]) -> Result<Vec<SecretBlock>, crate::key::KeyError> {
    use crate::key::KeyError;
    if pem.len() > MAX_PEM_BYTES {
        return Err(KeyError::TooLarge {
            size: pem.len(),
            limit: MAX_PEM_BYTES,
        });
    }
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        // The parser's message may quote input; say only that framing failed.
        let block = block.map_err(|_| KeyError::MalformedPem)?;
        blocks.push(SecretBlock {
            label: block.label,
            contents: zeroize::Zeroizing::new(block.contents),
        });
    }
    Ok(blocks)
}
