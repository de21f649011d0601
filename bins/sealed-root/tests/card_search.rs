//! DESIGN.md §7 row 1 on the host: a whole card image (MBR, boot partition, sealed root after
//! enrolment, reseal and rotation) searched for every secret — raw, hex, base64 — finds none;
//! the same search finds copies planted on purpose.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::{Module, found_in, fresh_volume, vendor};
use sealed_root::{RecoveryKdf, decrypt_recovery, enroll, recovery_ciphertext, unseal};

#[test]
fn no_secret_appears_on_the_card_and_the_search_finds_planted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, vk) = fresh_volume(tmp.path(), "root.img");
    let first = Module::start("board-1", "card-1");
    let second = Module::start("board-1", "card-1");
    let (identity, recipient) = vendor();
    let fast = RecoveryKdf::ReducedForTests;
    enroll(&root, &vk, &first.open(), &recipient, fast).unwrap();

    // Every secret this card ever had: first sealed secret, first recovery secret, then after a
    // reseal to a replacement module and a recovery rotation, their successors.
    let sealed_1 = unseal(&root, &first.open()).unwrap();
    let recovery_1 = decrypt_recovery(&recovery_ciphertext(&root).unwrap(), &identity).unwrap();
    sealed_root::reseal(&root, &recovery_1, &second.open()).unwrap();
    let sealed_2 = unseal(&root, &second.open()).unwrap();
    sealed_root::rotate_recovery(&root, &sealed_2, &recipient, fast).unwrap();
    let recovery_2 = decrypt_recovery(&recovery_ciphertext(&root).unwrap(), &identity).unwrap();

    let root_bytes = std::fs::read(&root).unwrap();
    let layout = card::CardLayout::plan(0x4b42_0002, 4, root_bytes.len() as u64);
    let card_path = tmp.path().join("card.img");
    let mut f = std::fs::File::create(&card_path).unwrap();
    f.set_len(layout.card_size()).unwrap();
    layout.write_mbr(&mut f).unwrap();
    f.seek(SeekFrom::Start(layout.root.offset)).unwrap();
    f.write_all(&root_bytes).unwrap();
    drop(f);
    let card = std::fs::read(&card_path).unwrap();

    let typable_1 = recovery_1.to_typable();
    let typable_2 = recovery_2.to_typable();
    let secrets: Vec<(&str, &[u8])> = vec![
        ("volume key", vk.expose_secret()),
        ("sealed secret 1", sealed_1.passphrase()),
        ("sealed secret 2", sealed_2.passphrase()),
        ("recovery secret 1", recovery_1.expose_secret()),
        ("recovery secret 2", recovery_2.expose_secret()),
        ("recovery passphrase 1", typable_1.as_bytes()),
        ("recovery passphrase 2", typable_2.as_bytes()),
    ];
    for (name, secret) in &secrets {
        let found = found_in(&card, secret);
        assert!(found.is_empty(), "{name} found on the card as {found:?}");
    }

    // The search works: copies planted in the image are found, in the encoding planted.
    use base64::Engine;
    let mut planted = card.clone();
    let hex: String = vk
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let at = layout.boot.offset as usize + 4096;
    planted[at..at + hex.len()].copy_from_slice(hex.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(sealed_2.passphrase());
    let at = planted.len() - 4096;
    planted[at..at + b64.len()].copy_from_slice(b64.as_bytes());
    let at = layout.root.offset as usize + (20 << 20);
    planted[at..at + 32].copy_from_slice(recovery_2.expose_secret());
    assert_eq!(found_in(&planted, vk.expose_secret()), vec!["hex"]);
    assert!(found_in(&planted, sealed_2.passphrase()).contains(&"base64".to_string()));
    assert_eq!(found_in(&planted, recovery_2.expose_secret()), vec!["raw"]);
}
