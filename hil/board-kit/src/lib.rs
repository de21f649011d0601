//! Ready-made QEMU boards on the current guest image, for tests, benches and the lab.

use std::path::{Path, PathBuf};
use std::time::Duration;

use board::{Board, BoardError};
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig};

/// The console line the test guest prints once its sshds listen.
pub const READY: &str = "keybound-guest: sshd ready";
/// How long a boot may take under TCG on a loaded machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The test image, built (cross-build included) or found in the cache; panics with the reason,
/// for tests.
pub fn test_image() -> BuiltImage {
    guest_image::build_all(&repo(), Profile::Test, false, &Progress::hidden())
        .expect("building the guest image")
}

/// A powered-off board named `name` in `dir/name` with a fresh card (an overlay over `image`'s
/// card at `dir/name-card.qcow2`) and the maintenance channel; `configure` adjusts the config.
pub fn new_board(
    repo: &Path,
    image: &BuiltImage,
    name: &str,
    dir: &Path,
    configure: impl FnOnce(&mut QemuBoardConfig),
) -> Result<QemuBoard, BoardError> {
    let mut config = QemuBoardConfig::new(name, dir.join(name), image.manifest.host_key.clone());
    config.maintenance_key = Some(guest_image::maintenance_key(repo));
    configure(&mut config);
    let mut board = QemuBoard::new(config)?;
    board.insert_card(Card::overlay(
        &image.card,
        "raw",
        dir.join(format!("{name}-card.qcow2")),
    )?)?;
    Ok(board)
}

/// [`new_board`] with the default configuration, for tests (panics with the reason).
pub fn board(image: &BuiltImage, name: &str, dir: &Path) -> QemuBoard {
    new_board(&repo(), image, name, dir, |_| {}).expect("creating a board")
}

/// Powers `board` on and waits for [`READY`] (panics with the console's last lines otherwise).
pub fn boot(board: &mut QemuBoard) {
    board.power_on().expect("powering on");
    board
        .console()
        .expect(READY, BOOT_TIMEOUT)
        .expect("the guest came up");
}

/// Appends `args` to the kernel command line in the card's `cmdline.txt`, as a customer with a
/// card reader would (panics with the reason, for tests).
pub fn append_to_cmdline(board: &QemuBoard, args: &str) {
    let card = board.card().expect("the board has a card");
    let original = String::from_utf8(
        card.read_boot_file("cmdline.txt")
            .expect("reading cmdline.txt"),
    )
    .expect("UTF-8 cmdline.txt");
    card.write_boot_file(
        "cmdline.txt",
        format!("{} {args}\n", original.trim()).as_bytes(),
    )
    .expect("writing cmdline.txt");
}
