//! Finding a card's LUKS2 header: the card's partition 2 through the MBR, or a plain LUKS2
//! device. A header inside a partition is copied to a temporary file (it holds only encrypted
//! keyslots and tokens) so libcryptsetup can read it as a detached header without a loop device.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// LUKS binary header magic.
const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Largest header copied (LUKS2 allows up to 128 MiB of keyslots area; ours is 16 MiB).
const MAX_HEADER: u64 = 256 << 20;

/// A LUKS2 header ready for libcryptsetup: the device itself or a temporary copy.
pub(crate) struct Header {
    path: PathBuf,
    _copy: Option<tempfile::NamedTempFile>,
}

impl Header {
    /// The path to give libcryptsetup.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn has_magic(file: &mut File, offset: u64) -> Result<bool> {
    let mut magic = [0u8; 6];
    file.seek(SeekFrom::Start(offset))?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == LUKS_MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The header size the LUKS2 metadata declares: two copies of the binary header + JSON area,
/// then the keyslots area (`config.keyslots_size`).
fn header_len(file: &mut File, offset: u64) -> Result<u64> {
    let mut bin = [0u8; 16];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut bin)?;
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if version != 2 {
        bail!("LUKS version {version}, not LUKS2");
    }
    let hdr_size = u64::from_be_bytes(bin[8..16].try_into().expect("8 bytes"));
    if !(16 << 10..=4 << 20).contains(&hdr_size) {
        bail!("implausible LUKS2 header size {hdr_size}");
    }
    let mut json = vec![0u8; usize::try_from(hdr_size - 4096)?];
    file.seek(SeekFrom::Start(offset + 4096))?;
    file.read_exact(&mut json)?;
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    let meta: serde_json::Value =
        serde_json::from_slice(&json[..end]).context("the LUKS2 JSON area is not JSON")?;
    let keyslots_size: u64 = meta["config"]["keyslots_size"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the LUKS2 JSON has no config.keyslots_size")?;
    let total = 2 * hdr_size + keyslots_size;
    if total > MAX_HEADER {
        bail!("implausible LUKS2 header length {total}");
    }
    Ok(total)
}

/// Finds the LUKS2 header of `card`: the file itself if it starts with one, else partition 2
/// of its MBR.
pub(crate) fn locate(card: &Path) -> Result<Header> {
    let mut file = File::open(card).with_context(|| format!("opening {}", card.display()))?;
    if has_magic(&mut file, 0)? {
        return Ok(Header {
            path: card.into(),
            _copy: None,
        });
    }
    file.seek(SeekFrom::Start(0))?;
    let layout = card::CardLayout::read_mbr(&mut file, card)
        .with_context(|| format!("{} is neither a LUKS2 volume nor a card", card.display()))?;
    let offset = layout.root.offset;
    if !has_magic(&mut file, offset)? {
        bail!(
            "{}: partition 2 (at byte {offset}) is not LUKS2 — is this card sealed?",
            card.display()
        );
    }
    let len = header_len(&mut file, offset).with_context(|| {
        format!(
            "{}: reading the LUKS2 header of partition 2",
            card.display()
        )
    })?;
    if len > layout.root.size {
        bail!(
            "{}: the LUKS2 header is larger than partition 2",
            card.display()
        );
    }
    let mut copy = tempfile::NamedTempFile::new().context("creating a temporary header file")?;
    file.seek(SeekFrom::Start(offset))?;
    let copied = std::io::copy(&mut (&mut file).take(len), copy.as_file_mut())
        .context("copying the LUKS2 header")?;
    if copied != len {
        bail!(
            "{}: partition 2 ends inside the LUKS2 header",
            card.display()
        );
    }
    Ok(Header {
        path: copy.path().into(),
        _copy: Some(copy),
    })
}
