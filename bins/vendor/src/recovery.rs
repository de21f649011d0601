//! `recovery-secret`: decrypt a card's recovery secret with the vendor's identity.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Decrypts the recovery token of `card` with an identity from `identity_file`, checks the
/// secret against the recovery keyslot and prints its typable form.
pub(crate) fn run(card: &Path, identity_file: &Path) -> Result<()> {
    let identities = crate::identity::read(identity_file)?;
    let header = crate::header::locate(card)?;
    let tokens = sealed_root::read_tokens(header.path())
        .with_context(|| format!("reading the keybound tokens of {}", card.display()))?;
    let Some((_, token)) = tokens.recovery else {
        bail!(
            "{}: no keybound-recovery token (not enrolled?)",
            card.display()
        );
    };
    let secret = identities
        .iter()
        .find_map(|id| sealed_root::decrypt_recovery(&token.age_ciphertext, id).ok())
        .context(
            "no identity in the file decrypts this card's recovery token (another vendor key?)",
        )?;
    let typed = secret.to_typable();
    let mut luks = sealed_root::Luks2::open(header.path())?;
    if !luks.test_passphrase(token.keyslot, typed.as_bytes())? {
        bail!(
            "{}: the decrypted secret does not open recovery keyslot {} (token and keyslot disagree)",
            card.display(),
            token.keyslot
        );
    }
    eprintln!(
        "keybound-vendor: recovery secret of {} (opens keyslot {}); type it, never store it:",
        card.display(),
        token.keyslot
    );
    println!("{}", &*typed);
    Ok(())
}
