//! PEM framing: splitting a Secret's `tls.crt` into DER certificates, and
//! finding the private key block in `tls.key`.

use crate::error::CertError;
use base64::Engine;

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
    for (index, block) in blocks(pem).enumerate() {
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
    let mut found = Vec::new();
    for block in blocks(pem) {
        let block = block.map_err(|e| match e {
            FramingError::Headers => KeyError::Encrypted,
            FramingError::Unterminated | FramingError::Base64 => KeyError::MalformedPem,
        })?;
        found.push(SecretBlock {
            label: block.label,
            contents: zeroize::Zeroizing::new(block.contents),
        });
    }
    Ok(found)
}

/// What is wrong with a PEM block's framing (never its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("block has no END line")]
    Unterminated,
    #[error("block has RFC 1421 headers (a legacy encrypted key?)")]
    Headers,
    #[error("block body is not valid base64")]
    Base64,
}

/// One decoded `-----BEGIN <label>-----` … `-----END <label>-----` block.
pub(crate) struct Block {
    pub label: String,
    pub contents: Vec<u8>,
}

/// The PEM blocks of `input`, in order. Text outside blocks is ignored, as
/// openssl does (e.g. "Bag Attributes" lines). Errors describe the framing
/// only and never quote the input.
///
/// Written here rather than taken from x509-parser, whose PEM reader brings a
/// general-purpose base64 engine that is a sixth of the filter's size.
pub(crate) fn blocks(input: &[u8]) -> impl Iterator<Item = Result<Block, FramingError>> + '_ {
    let text = String::from_utf8_lossy(input);
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        let mut has_headers = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                // RFC 1421 headers (e.g. "Proc-Type: 4,ENCRYPTED") mark legacy encrypted keys.
                has_headers = true;
                continue;
            }
            body.push_str(line);
        }
        let block = if !closed {
            Err(FramingError::Unterminated)
        } else if has_headers {
            Err(FramingError::Headers)
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map(|contents| Block {
                    label: label.to_owned(),
                    contents,
                })
                .map_err(|_| FramingError::Base64)
        };
        out.push(block);
    }
    out.into_iter()
}
