//! The built image's package list, as a snapshot: a change in what the recipe pulls in shows up
//! in review. Versions move with Debian point releases, so only names and architectures are kept.
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
        .map(|p| format!("{} ({})", p.name, p.arch))
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
