//! The LUKS2 on-disk header, read without libcryptsetup: the binary header (magic, version,
//! header size, checksum) and the JSON metadata area after it. The primary header is used if its
//! checksum holds, else the secondary one (at the primary's header size).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Size of the binary part of a LUKS2 header.
const BINARY_SIZE: usize = 4096;
/// Offsets of fields in the binary header (cryptsetup's `luks2_hdr_disk`).
const OFF_VERSION: usize = 6;
const OFF_HDR_SIZE: usize = 8;
const OFF_CSUM_ALG: usize = 72;
const OFF_CSUM: usize = 448;
/// The header sizes LUKS2 allows (binary + JSON area): 16 KiB .. 4 MiB, powers of two.
const MIN_HDR: u64 = 16 << 10;
const MAX_HDR: u64 = 4 << 20;

const MAGIC_PRIMARY: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";

/// A header that cannot be read. Messages name the device and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The device could not be read.
    #[error("reading the LUKS2 header of {}: {source}", device.display())]
    Io {
        /// The device.
        device: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Neither header copy is a valid LUKS2 header.
    #[error("{} holds no usable LUKS2 header: {reason}", device.display())]
    NotLuks2 {
        /// The device.
        device: PathBuf,
        /// What is wrong with each copy.
        reason: String,
    },
}

/// A parsed header: which copy it came from and its JSON metadata.
#[derive(Debug, Clone)]
pub struct Luks2Header {
    /// Byte offset of the copy that was used (0 for the primary).
    pub offset: u64,
    /// The JSON metadata (`keyslots`, `tokens`, `segments`, `digests`, `config`).
    pub json: Value,
}

impl Luks2Header {
    /// The tokens of `token_type`, as `(token id, token JSON)`, in id order.
    pub fn tokens_of_type(&self, token_type: &str) -> Vec<(u32, Value)> {
        let mut out: Vec<(u32, Value)> = self.json["tokens"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, t)| t["type"].as_str() == Some(token_type))
            .filter_map(|(id, t)| Some((id.parse().ok()?, t.clone())))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

/// Reads the LUKS2 header of `device` (a block device or an image file).
pub fn read_header(device: &Path) -> Result<Luks2Header, HeaderError> {
    let io = |source| HeaderError::Io {
        device: device.into(),
        source,
    };
    let mut file = File::open(device).map_err(io)?;
    let primary = read_copy(&mut file, 0, MAGIC_PRIMARY).map_err(|e| e.at(device))?;
    match primary {
        Copy::Valid(json) => Ok(Luks2Header { offset: 0, json }),
        Copy::Invalid {
            reason,
            hdr_size: Some(size),
        } => match read_copy(&mut file, size, MAGIC_SECONDARY).map_err(|e| e.at(device))? {
            Copy::Valid(json) => Ok(Luks2Header { offset: size, json }),
            Copy::Invalid { reason: second, .. } => Err(HeaderError::NotLuks2 {
                device: device.into(),
                reason: format!("primary: {reason}; secondary: {second}"),
            }),
        },
        Copy::Invalid { reason, .. } => Err(HeaderError::NotLuks2 {
            device: device.into(),
            reason,
        }),
    }
}

enum Copy {
    Valid(Value),
    /// `hdr_size` when the binary header was readable enough to find the other copy.
    Invalid {
        reason: String,
        hdr_size: Option<u64>,
    },
}

struct ReadError(std::io::Error);

impl ReadError {
    fn at(self, device: &Path) -> HeaderError {
        HeaderError::Io {
            device: device.into(),
            source: self.0,
        }
    }
}

fn read_copy(file: &mut File, offset: u64, magic: &[u8; 6]) -> Result<Copy, ReadError> {
    let invalid = |reason: &str, hdr_size| {
        Ok(Copy::Invalid {
            reason: reason.into(),
            hdr_size,
        })
    };
    let mut binary = vec![0u8; BINARY_SIZE];
    file.seek(SeekFrom::Start(offset)).map_err(ReadError)?;
    if let Err(e) = file.read_exact(&mut binary) {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            invalid("device shorter than a LUKS2 header", None)
        } else {
            Err(ReadError(e))
        };
    }
    if &binary[..6] != magic {
        return invalid("bad magic", None);
    }
    if u16::from_be_bytes([binary[OFF_VERSION], binary[OFF_VERSION + 1]]) != 2 {
        return invalid("not version 2", None);
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&binary[OFF_HDR_SIZE..OFF_HDR_SIZE + 8]);
    let hdr_size = u64::from_be_bytes(size);
    if !(MIN_HDR..=MAX_HDR).contains(&hdr_size) || !hdr_size.is_power_of_two() {
        return invalid("header size out of range", None);
    }
    let mut json_area = vec![0u8; hdr_size as usize - BINARY_SIZE];
    if let Err(e) = file.read_exact(&mut json_area) {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            invalid("JSON area cut short", Some(hdr_size))
        } else {
            Err(ReadError(e))
        };
    }
    let alg_field = &binary[OFF_CSUM_ALG..OFF_CSUM_ALG + 32];
    let alg = &alg_field[..alg_field.iter().position(|b| *b == 0).unwrap_or(32)];
    if alg != b"sha256" {
        return invalid("checksum algorithm is not sha256", Some(hdr_size));
    }
    let mut stored = [0u8; 32];
    stored.copy_from_slice(&binary[OFF_CSUM..OFF_CSUM + 32]);
    binary[OFF_CSUM..OFF_CSUM + 64].fill(0);
    let mut hasher = Sha256::new();
    hasher.update(&binary);
    hasher.update(&json_area);
    if hasher.finalize()[..] != stored {
        return invalid("checksum mismatch", Some(hdr_size));
    }
    let end = json_area
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(json_area.len());
    match serde_json::from_slice(&json_area[..end]) {
        Ok(json) => Ok(Copy::Valid(json)),
        Err(_) => invalid("JSON area is not JSON", Some(hdr_size)),
    }
}
