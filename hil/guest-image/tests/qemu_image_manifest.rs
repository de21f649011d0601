//! The built image's package list, as a snapshot: a change in what the recipe pulls in shows up
//! in review. Versions move with Debian point releases, so only names and architectures are kept,
//! and the kernel's ABI number in its package name (`linux-image-6.1.0-N-arm64`, bumped by every
//! kernel update) is written as `<abi>`.
//! (In the `qemu` group: it shares the image build with the boot tests.)

use std::path::Path;

use guest_image::{Profile, Progress};

#[test]
fn qemu_image_manifest_package_list() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let image = guest_image::build_all(&repo, Profile::Test, false, &Progress::hidden())
        .expect("building the guest image");
    let names: Vec<String> = image
        .manifest
        .packages
        .iter()
        .map(|p| format!("{} ({})", kernel_abi_redacted(&p.name), p.arch))
        .collect();
    assert!(
        image
            .manifest
            .packages
            .iter()
            .all(|p| p.sha256.len() == 64 && !p.version.is_empty()),
        "every package has a version and sha256"
    );
    assert!(
        image
            .manifest
            .binaries
            .iter()
            .any(|b| b.dest == "/usr/sbin/keybound")
    );
    assert!(guest_image::is_aarch64_elf(
        &guest_image::CrossBuild::new(&repo)
            .artifact_dir()
            .join("keybound")
    ));
    insta::assert_yaml_snapshot!("image-packages", names);
}

/// `linux-image-6.1.0-57-arm64` → `linux-image-<abi>-arm64`; other names unchanged.
fn kernel_abi_redacted(name: &str) -> String {
    let Some(rest) = name.strip_prefix("linux-image-") else {
        return name.to_string();
    };
    match rest.rsplit_once('-') {
        Some((abi, flavour)) if abi.starts_with(|c: char| c.is_ascii_digit()) => {
            format!("linux-image-<abi>-{flavour}")
        }
        _ => name.to_string(),
    }
}

#[test]
fn the_kernel_abi_is_redacted_and_nothing_else() {
    assert_eq!(
        kernel_abi_redacted("linux-image-6.1.0-57-arm64"),
        "linux-image-<abi>-arm64"
    );
    assert_eq!(
        kernel_abi_redacted("linux-image-arm64"),
        "linux-image-arm64"
    );
    assert_eq!(kernel_abi_redacted("libc6"), "libc6");
}
