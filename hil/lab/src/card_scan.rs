//! Looking at a card on the host as an attacker or a reviewer would: searching the whole image
//! for known secrets (raw, hex, base64), and proving that something left on its boot partition
//! opens its root volume (`cryptsetup open --test-passphrase`, no knowledge of our own needed).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use card::Card;
use scenario::engine::{Loot, Secret, StepError};

/// The forms a secret may take on a card: raw, hex (both cases), base64 at each alignment.
fn needles(secret: &Secret) -> Vec<Vec<u8>> {
    let b = &secret.bytes;
    let mut out = vec![
        b.clone(),
        hex::encode(b).into_bytes(),
        hex::encode_upper(b).into_bytes(),
    ];
    for skip in 0..3 {
        if b.len() > skip + 6 {
            let enc = base64_core(&b[skip..]);
            // The middle of the encoding does not depend on what precedes or follows.
            out.push(enc.as_bytes()[4..enc.len().saturating_sub(4)].to_vec());
        }
    }
    out
}

fn base64_core(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub(crate) fn scan_file(path: &Path, secrets: &[Secret]) -> std::io::Result<Vec<String>> {
    let forms: Vec<(usize, Vec<u8>)> = secrets
        .iter()
        .enumerate()
        .flat_map(|(i, s)| needles(s).into_iter().map(move |n| (i, n)))
        .collect();
    let pattern = forms
        .iter()
        .map(|(_, n)| n.iter().map(|b| format!("\\x{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("|");
    let pattern = format!("(?-u){pattern}");
    let re =
        regex::bytes::Regex::new(&pattern).map_err(|e| std::io::Error::other(e.to_string()))?;
    let overlap = forms.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(8 << 20);
    let mut found = vec![false; secrets.len()];
    let mut chunk = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        for m in re.find_iter(&buf) {
            if let Some((i, _)) = forms.iter().find(|(_, f)| f.as_slice() == m.as_bytes()) {
                found[*i] = true;
            }
        }
        let keep = buf.len().saturating_sub(overlap);
        buf.drain(..keep);
    }
    Ok(secrets
        .iter()
        .zip(found)
        .filter(|(_, f)| *f)
        .map(|(s, _)| s.label.clone())
        .collect())
}

/// The length of the sealed secret (the keyslot passphrase) a sniffer looks for.
const SECRET_LEN: usize = 32;

/// Files on a boot partition no bigger than this are tried as keys.
const MAX_LOOT_BYTES: usize = 4096;

/// The forms a file's content is tried in: as it is, trimmed, and hex- or base64-decoded.
fn key_candidates(content: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("as written", content.to_vec())];
    let trimmed = String::from_utf8_lossy(content).trim().to_string();
    if trimmed.as_bytes() != content {
        out.push(("trimmed", trimmed.clone().into_bytes()));
    }
    if let Ok(bytes) = hex::decode(&trimmed) {
        out.push(("hex-decoded", bytes));
    }
    out
}

/// The keyslot the `keybound-zymkey` token names (what an attacker reads from the public LUKS2
/// header), so candidates are tried against it alone: the recovery slot's production argon2id
/// would make every wrong try cost seconds.
fn sealed_keyslot(header: &Path) -> Option<String> {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(header)
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["tokens"]
        .as_object()?
        .values()
        .find(|t| t["type"] == "keybound-zymkey")?["keyslots"][0]
        .as_str()
        .map(String::from)
}

/// Proves on the host, without the harness's own knowledge of any secret, that something an
/// attacker got opens the card's root volume with the real `cryptsetup`: every small file on the
/// boot partition (as written, trimmed, hex-decoded), then `loot` captured elsewhere (each
/// 32-byte window of it: a sniffer does not know where a key starts). `None` when the root is not
/// LUKS2 or nothing opens it.
pub(crate) fn exfiltration_proof(card: &Card, loot: &[Loot]) -> Result<Option<String>, StepError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| StepError::Failed(format!("{what}: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("kb-loot-")
        .tempdir()
        .map_err(|e| failed("scratch directory", &e))?;
    let layout = card
        .layout()
        .map_err(|e| failed("reading the card layout", &e))?;
    // The LUKS2 header (metadata and keyslots) is in the first 16 MiB of the partition; the test
    // needs no data area.
    let root = dir.path().join("root-header.img");
    let range = layout.root.luks2_header();
    card.read_range(range, &root)
        .map_err(|e| failed("reading the root partition", &e))?;
    let is_luks = Command::new("cryptsetup")
        .arg("isLuks")
        .arg(&root)
        .status()
        .map_err(|e| failed("running cryptsetup (install it: scripts/setup)", &e))?;
    if !is_luks.success() {
        return Ok(None);
    }
    let slot = sealed_keyslot(&root);
    let opens = |candidate: &[u8]| -> Result<bool, StepError> {
        let key = dir.path().join("candidate");
        std::fs::write(&key, candidate).map_err(|e| failed("writing a candidate", &e))?;
        let mut cmd = Command::new("cryptsetup");
        cmd.args(["open", "--test-passphrase", "--key-file"])
            .arg(&key);
        if let Some(slot) = &slot {
            cmd.args(["--key-slot", slot]);
        }
        let opened = cmd
            .arg(&root)
            .output()
            .map_err(|e| failed("running cryptsetup", &e))?;
        let _ = std::fs::remove_file(&key);
        let said = String::from_utf8_lossy(&opened.stderr);
        if said.contains("Cannot use") {
            // The host cannot even try (e.g. no Adiantum in this kernel): not a failed attack.
            return Err(StepError::Failed(format!(
                "the host's cryptsetup cannot test this card's keyslot: {}",
                said.trim()
            )));
        }
        Ok(opened.status.success())
    };
    let files = card
        .list_boot_files()
        .map_err(|e| failed("listing the boot partition", &e))?;
    for name in files {
        let Ok(content) = card.read_boot_file(&name) else {
            continue;
        };
        if content.is_empty() || content.len() > MAX_LOOT_BYTES {
            continue;
        }
        for (form, candidate) in key_candidates(&content) {
            if opens(&candidate)? {
                return Ok(Some(format!(
                    "boot-partition file {name} ({form}) opens the root volume: `cryptsetup open --test-passphrase` accepted it"
                )));
            }
        }
    }
    for item in loot {
        for window in item.bytes.windows(SECRET_LEN) {
            if opens(window)? {
                return Ok(Some(format!(
                    "32 bytes from {} open the root volume: `cryptsetup open --test-passphrase` accepted them",
                    item.label
                )));
            }
        }
    }
    Ok(None)
}
