//! `keygen-boot` and `sign` through the binary: the key is private and never overwritten, the
//! signed image holds the boot files and its boot.sig verifies with the printed public key.

use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use keybound_vendor::boot::{BootPublicKey, BootSig, SigError};

fn vendor_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keybound-vendor"))
        .args(args)
        .output()
        .expect("running keybound-vendor")
}

#[test]
fn keygen_boot_then_sign_yields_an_image_that_verifies_only_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor-boot.pem");
    let out = vendor_cmd(&["keygen-boot", "--out", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        public_path,
        dir.path().join("vendor-boot.pub.pem").to_str().unwrap()
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = vendor_cmd(&["keygen-boot", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let boot = dir.path().join("boot");
    std::fs::create_dir_all(boot.join("overlays")).unwrap();
    std::fs::write(
        boot.join("config.txt"),
        "kernel=kernel8.img\ninitramfs initramfs8 followkernel\n",
    )
    .unwrap();
    std::fs::write(boot.join("cmdline.txt"), "console=ttyAMA0 root=/dev/vda2\n").unwrap();
    std::fs::write(boot.join("kernel8.img"), vec![0xAAu8; 300_000]).unwrap();
    std::fs::write(boot.join("initramfs8"), vec![0x55u8; 70_000]).unwrap();
    std::fs::write(boot.join("bcm2711-rpi-4-b.dtb"), b"dtb").unwrap();
    std::fs::write(boot.join("overlays/vc4.dtbo"), b"dtbo").unwrap();
    std::fs::write(
        boot.join("start4.elf"),
        b"firmware, not signed into boot.img",
    )
    .unwrap();
    let signed = dir.path().join("signed");
    let out = vendor_cmd(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--boot-dir",
        boot.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let img = std::fs::read(signed.join("boot.img")).unwrap();
    let listed = card::boot_fs::list(Cursor::new(img.clone())).unwrap();
    assert_eq!(
        listed,
        [
            "bcm2711-rpi-4-b.dtb",
            "cmdline.txt",
            "config.txt",
            "initramfs8",
            "kernel8.img",
            "overlays/vc4.dtbo"
        ]
    );
    assert_eq!(
        card::boot_fs::read(Cursor::new(img.clone()), "kernel8.img").unwrap(),
        vec![0xAAu8; 300_000]
    );
    let public = BootPublicKey::from_pem(&std::fs::read_to_string(&public_path).unwrap()).unwrap();
    let sig = BootSig::parse(&std::fs::read(signed.join("boot.sig")).unwrap()).unwrap();
    assert!(sig.ts.is_some());
    sig.verify(&public, &img).unwrap();
    let mut tampered = img;
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert_eq!(
        sig.verify(&public, &tampered),
        Err(SigError::DigestMismatch)
    );
}

#[test]
fn sign_refuses_a_boot_dir_without_the_named_kernel_and_a_non_rsa_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    assert!(
        vendor_cmd(&["keygen-boot", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::write(dir.path().join("config.txt"), "kernel=missing.img\n").unwrap();
    std::fs::write(dir.path().join("cmdline.txt"), "x\n").unwrap();
    let sign = |key: &str| {
        vendor_cmd(&[
            "sign",
            "--key",
            key,
            "--boot-dir",
            dir.path().to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ])
    };
    let out = sign(key.to_str().unwrap());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.img"));
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = sign(bogus.to_str().unwrap());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an RSA-2048 private key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sign_card_writes_a_verifying_boot_img_onto_a_raw_card_image() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = vendor_cmd(&["keygen-boot", "--out", key.to_str().unwrap()]);
    let public_path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A raw card with a 96 MiB boot partition holding a Pi's boot files.
    let layout = card::CardLayout::plan(0x5157_0001, 96, 1 << 20);
    let mut part = Cursor::new(vec![0u8; usize::try_from(layout.boot.size).unwrap()]);
    card::boot_fs::format(
        &mut part,
        &[
            ("config.txt", b"kernel=kernel8.img\n"),
            ("cmdline.txt", b"console=ttyAMA0\n"),
            ("kernel8.img", &[0x11u8; 50_000]),
        ],
    )
    .unwrap();
    let img_path = dir.path().join("card.img");
    let mut file = std::fs::File::create(&img_path).unwrap();
    file.set_len(layout.card_size()).unwrap();
    layout.write_mbr(&mut file).unwrap();
    file.seek(SeekFrom::Start(layout.boot.offset)).unwrap();
    file.write_all(part.get_ref()).unwrap();
    drop(file);

    let out = vendor_cmd(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--card",
        img_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bytes = std::fs::read(&img_path).unwrap();
    let start = usize::try_from(layout.boot.offset).unwrap();
    let end = start + usize::try_from(layout.boot.size).unwrap();
    let part = bytes[start..end].to_vec();
    let img = card::boot_fs::read(Cursor::new(part.clone()), "boot.img").unwrap();
    let sig = card::boot_fs::read(Cursor::new(part.clone()), "boot.sig").unwrap();
    let public = BootPublicKey::from_pem(&std::fs::read_to_string(&public_path).unwrap()).unwrap();
    BootSig::parse(&sig).unwrap().verify(&public, &img).unwrap();
    assert_eq!(
        card::boot_fs::read(Cursor::new(img), "cmdline.txt").unwrap(),
        b"console=ttyAMA0\n"
    );
    // The loose files stay where they were.
    assert_eq!(
        card::boot_fs::read(Cursor::new(part), "kernel8.img").unwrap(),
        vec![0x11u8; 50_000]
    );
}
