//! Ready-made QEMU boards on the current guest image, for tests, benches and the lab.

use std::path::{Path, PathBuf};
use std::time::Duration;

use board::{Board, BoardError};
use card::Card;
use guest_image::{BuiltImage, Profile, Progress};
use qemu_runner::{QemuBoard, QemuBoardConfig, VirtualToken};

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

/// The guest account enrolled with the test token (password in fixtures/test-keys/README.md).
pub const TEST_USER: &str = "tech";
/// [`TEST_USER`]'s password (TEST-ONLY, public).
pub const TEST_PASSWORD: &str = "keybound-test";
/// The USB id the test token is plugged as by [`plug_test_token`].
pub const TEST_TOKEN_USB_ID: &str = "token0";

/// The committed state of the TEST-ONLY virtual-fido token enrolled for [`TEST_USER`] in the
/// test image's authfile (`/etc/keybound/u2f_keys`, from `fixtures/guest/test-channel`).
pub fn test_token_state(repo: &Path) -> PathBuf {
    repo.join("fixtures/test-keys/virtual-fido-token-tech.json")
}

/// Starts a virtual-fido daemon holding a copy of the enrolled test token (its state in
/// `dir/token`, sockets in a short-named temporary directory `sockets`), presence `presence`
/// (`accept`, `deny`, `timeout`, `wait-for-touch`, …). Each call is a fresh copy: two calls make
/// a token and its clone.
pub fn start_test_token(
    repo: &Path,
    dir: &Path,
    sockets: &Path,
    presence: &str,
) -> Result<VirtualToken, BoardError> {
    let state = dir.join("token");
    std::fs::create_dir_all(&state).map_err(BoardError::io("creating", &state))?;
    let src = test_token_state(repo);
    std::fs::copy(&src, state.join("token.json")).map_err(BoardError::io("copying", &src))?;
    VirtualToken::start(&state, sockets, presence)
}

/// The enrolled test token, plugged into `board` (powered) as [`TEST_TOKEN_USB_ID`] once the
/// guest has its `/dev/hidraw*` node; keep the returned handle alive as long as the token should
/// stay plugged (panics with the reason, for tests). `sockets` must be short (unix socket paths
/// are limited to 108 bytes).
pub fn plug_test_token(board: &mut QemuBoard, dir: &Path, sockets: &Path) -> VirtualToken {
    let token = start_test_token(&repo(), dir, sockets, "accept").expect("starting the test token");
    board
        .plug_usb_redir(TEST_TOKEN_USB_ID, token.usbredir_socket())
        .expect("plugging the test token");
    wait_for_hidraw(board, true);
    token
}

/// Waits (up to 30 s, over the maintenance channel) until the guest lists a `/dev/hidraw*` node
/// (`present`) or none; panics with what it saw otherwise.
pub fn wait_for_hidraw(board: &QemuBoard, present: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = board
            .maintenance_exec("ls /dev/ | grep hidraw || true")
            .expect("listing /dev in the guest");
        if list.contains("hidraw") == present {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest's hidraw nodes did not become {}: {list:?}",
            if present { "present" } else { "absent" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
