//! The vendor's age identity file: written 0600, read back strictly.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use anyhow::{Context, Result, bail};

/// `keygen`: a new X25519 identity written to `path` (mode 0600, never overwriting), the
/// recipient printed on stdout.
pub(crate) fn keygen(path: &Path) -> Result<()> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    let secret = identity.to_string();
    let text = zeroize::Zeroizing::new(format!(
        "# keybound vendor identity (age X25519); keep offline\n# created: {created} (unix time)\n# public key: {recipient}\n{}\n",
        secret.expose_secret()
    ));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "keybound-vendor: identity written to {} (mode 0600)",
        path.display()
    );
    println!("{recipient}");
    Ok(())
}

/// Reads the X25519 identities of an age identity file (comments and blank lines skipped).
pub(crate) fn read(path: &Path) -> Result<Vec<age::x25519::Identity>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading identity file {}", path.display()))?,
    );
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match age::x25519::Identity::from_str(line) {
            Ok(id) => out.push(id),
            // Never echo the line: it may be a (mistyped) secret key.
            Err(_) => bail!(
                "{}: line {} is not an age X25519 identity (AGE-SECRET-KEY-1…)",
                path.display(),
                n + 1
            ),
        }
    }
    if out.is_empty() {
        bail!("{}: no identity in the file", path.display());
    }
    Ok(out)
}
