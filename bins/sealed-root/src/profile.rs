//! Policy that never comes from the header: the data cipher per board, the KDF per keyslot.

use libcryptsetup_rs::CryptPbkdfType;
use libcryptsetup_rs::consts::flags::CryptPbkdf;
use libcryptsetup_rs::consts::vals::CryptKdf;

/// The board's CPU decides the data cipher (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BoardProfile {
    /// The CPU has AES instructions (Pi 5, QEMU's cortex-a72): `aes-xts-plain64`, 512-bit key.
    AesXts,
    /// No AES instructions (Pi 4, CM4): `xchacha12,aes-adiantum-plain64`, 256-bit key.
    Adiantum,
}

impl BoardProfile {
    /// The profile for a CPU with or without AES instructions.
    pub fn for_cpu(has_aes: bool) -> Self {
        if has_aes {
            Self::AesXts
        } else {
            Self::Adiantum
        }
    }

    /// The cipher as libcryptsetup names it.
    pub fn cipher(self) -> &'static str {
        match self {
            Self::AesXts => "aes",
            Self::Adiantum => "xchacha12,aes",
        }
    }

    /// The cipher mode as libcryptsetup names it.
    pub fn mode(self) -> &'static str {
        match self {
            Self::AesXts => "xts-plain64",
            Self::Adiantum => "adiantum-plain64",
        }
    }

    /// `cipher-mode` as `cryptsetup luksDump` prints it.
    pub fn cipher_spec(self) -> String {
        format!("{}-{}", self.cipher(), self.mode())
    }

    /// The volume key length in bytes.
    pub fn key_bytes(self) -> usize {
        match self {
            Self::AesXts => 64,
            Self::Adiantum => 32,
        }
    }

    /// The profile's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesXts => "aes-xts",
            Self::Adiantum => "adiantum",
        }
    }
}

impl std::str::FromStr for BoardProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aes-xts" => Ok(Self::AesXts),
            "adiantum" => Ok(Self::Adiantum),
            other => Err(format!(
                "unknown board profile `{other}` (expected `aes-xts` or `adiantum`)"
            )),
        }
    }
}

/// The cost of the recovery keyslot's KDF. The recovery secret is high-entropy too, but it is
/// the one secret a human handles, so it gets the production password-grade KDF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecoveryKdf {
    /// libcryptsetup's LUKS2 defaults: argon2id, benchmarked to ~2 s, up to 1 GiB, 4 threads.
    #[default]
    Production,
    /// argon2id at a fixed low cost (4 iterations, 32 MiB, 1 thread): tests only.
    ReducedForTests,
}

/// Minimal PBKDF for a full-entropy passphrase, as systemd-cryptenroll sets it: PBKDF2-SHA512,
/// 1000 iterations (libcryptsetup's floor), no benchmark.
pub(crate) fn minimal_pbkdf() -> CryptPbkdfType {
    CryptPbkdfType {
        type_: CryptKdf::Pbkdf2,
        hash: Some("sha512".into()),
        time_ms: 0,
        iterations: 1000,
        max_memory_kb: 0,
        parallel_threads: 0,
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

/// The recovery keyslot's PBKDF.
pub(crate) fn recovery_pbkdf(cost: RecoveryKdf) -> Result<CryptPbkdfType, String> {
    // Planted bug weak-recovery-kdf (issue 8): the recovery slot gets the sealed slot's minimal
    // PBKDF2. Caught by scenario attacks/recovery-keyslot-has-production-kdf.
    #[cfg(keybound_mutant = "weak-recovery-kdf")]
    {
        let _ = cost;
        return Ok(minimal_pbkdf());
    }
    #[cfg(not(keybound_mutant = "weak-recovery-kdf"))]
    match cost {
        RecoveryKdf::Production => libcryptsetup_rs::CryptSettingsHandle::get_pbkdf_default(
            &libcryptsetup_rs::consts::vals::LuksType::Luks2,
        )
        .map_err(|e| e.to_string()),
        RecoveryKdf::ReducedForTests => Ok(CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: Some("sha256".into()),
            time_ms: 0,
            iterations: 4,
            max_memory_kb: 32 * 1024,
            parallel_threads: 1,
            flags: CryptPbkdf::NO_BENCHMARK,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_name_their_ciphers() {
        assert_eq!(BoardProfile::for_cpu(true).cipher_spec(), "aes-xts-plain64");
        assert_eq!(
            BoardProfile::for_cpu(false).cipher_spec(),
            "xchacha12,aes-adiantum-plain64"
        );
        for p in [BoardProfile::AesXts, BoardProfile::Adiantum] {
            assert_eq!(p.name().parse::<BoardProfile>().unwrap(), p);
        }
        assert!("aes".parse::<BoardProfile>().is_err());
    }

    #[test]
    fn the_recovery_slot_always_gets_argon2id_and_the_sealed_slot_minimal_pbkdf2() {
        for cost in [RecoveryKdf::Production, RecoveryKdf::ReducedForTests] {
            let p = recovery_pbkdf(cost).unwrap();
            assert!(matches!(p.type_, CryptKdf::Argon2Id), "{cost:?}");
        }
        let prod = recovery_pbkdf(RecoveryKdf::Production).unwrap();
        assert!(prod.max_memory_kb >= 1 << 20, "{}", prod.max_memory_kb);
        assert!(!prod.flags.contains(CryptPbkdf::NO_BENCHMARK));
        let sealed = minimal_pbkdf();
        assert!(matches!(sealed.type_, CryptKdf::Pbkdf2));
        assert_eq!(sealed.iterations, 1000);
    }
}
