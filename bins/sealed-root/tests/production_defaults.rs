//! The one test that formats and enrols with the production defaults and reads them back from
//! `cryptsetup luksDump` (slow: the recovery slot's argon2id is benchmarked to ~2 s at 1 GiB).

mod common;

use common::{Module, fresh_volume, luks_dump, vendor};
use sealed_root::{RecoveryKdf, enroll};

/// The lines of one keyslot's block in `luksDump` output, as (key, value).
fn keyslot_block(dump: &str, keyslot: u32) -> Vec<(String, String)> {
    let head = format!("  {keyslot}: luks2");
    let start = dump
        .lines()
        .position(|l| l == head)
        .unwrap_or_else(|| panic!("no keyslot {keyslot} in\n{dump}"));
    dump.lines()
        .skip(start + 1)
        .take_while(|l| l.starts_with('\t'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(block: &'a [(String, String)], key: &str) -> &'a str {
    block
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no `{key}` in {block:?}"))
}

fn number(block: &[(String, String)], key: &str) -> u64 {
    field(block, key)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn production_defaults_show_in_luks_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, vk) = fresh_volume(tmp.path(), "root.img");
    let m = Module::start("board-1", "card-1");
    let (_, recipient) = vendor();
    let e = enroll(&img, &vk, &m.open(), &recipient, RecoveryKdf::Production).unwrap();
    let dump = luks_dump(&img);

    // Data segment: the AES-XTS profile, 512-bit key.
    assert!(dump.contains("\tcipher: aes-xts-plain64\n"), "{dump}");

    // Sealed slot: minimal PBKDF2 as systemd-cryptenroll uses for full-entropy secrets.
    let sealed = keyslot_block(&dump, e.sealed_keyslot);
    assert_eq!(field(&sealed, "Key"), "512 bits");
    assert_eq!(field(&sealed, "PBKDF"), "pbkdf2");
    assert_eq!(field(&sealed, "Hash"), "sha512");
    assert_eq!(number(&sealed, "Iterations"), 1000);

    // Recovery slot: argon2id at libcryptsetup's LUKS2 defaults: benchmarked for ~2 s with up to
    // 1 GiB (at most half the RAM) and 4 threads (at most the CPU count). The benchmark lowers
    // the time cost first; only at the minimum time cost (4) does it lower the memory, so a
    // lowered memory cost must come with time cost 4, and stays far above the test-only cost.
    let recovery = keyslot_block(&dump, e.recovery_keyslot);
    assert_eq!(field(&recovery, "Key"), "512 bits");
    assert_eq!(field(&recovery, "PBKDF"), "argon2id", "{recovery:?}");
    assert!(number(&recovery, "Time cost") >= 4, "{recovery:?}");
    let phys_kib = {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let cap = 1_048_576u64.min(phys_kib / 2);
    let memory = number(&recovery, "Memory");
    assert!(memory <= cap, "{recovery:?}");
    assert!(
        memory == cap || number(&recovery, "Time cost") == 4,
        "memory lowered while time cost was not minimal: {recovery:?}"
    );
    assert!(memory >= 128 * 1024, "{recovery:?}");
    assert_eq!(number(&recovery, "Threads"), 4u64.min(cpus), "{recovery:?}");
}
