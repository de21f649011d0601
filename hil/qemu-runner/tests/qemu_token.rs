//! The virtual FIDO2 token as the guest kernel sees it: a USB HID device plugged into the board's
//! xHCI bus over usb-redir (QMP hot-plug), driven by libfido2's real tools in the guest with
//! their verification on, enrolled by pamu2fcfg, and gone after unplug.
//! Needs the host-built `virtual-fido` daemon (built by `cargo nextest run --workspace`).

use std::time::{Duration, Instant};

use board::Board;
use board_kit::{board, boot, test_image as image};
use qemu_runner::{QemuBoard, VirtualToken};

/// Polls the guest until `fido2-token -L` lists (or stops listing) a device.
fn wait_listed(board: &QemuBoard, present: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = board.maintenance_exec("fido2-token -L 2>&1").unwrap();
        if list.contains("/dev/hidraw") == present || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Registers and asserts with libfido2's tools and verifies both, then enrols with pamu2fcfg.
const GUEST_CHECKS: &str = r#"set -e
dev=$(fido2-token -L | head -n1 | cut -d: -f1)
fido2-token -I "$dev" > /tmp/info
rand() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
printf '%s\n%s\n%s\n%s\n' "$(rand 32)" keybound.test tech "$(rand 16)" > /tmp/cred.in
fido2-cred -M -i /tmp/cred.in -o /tmp/cred.out "$dev" es256
fido2-cred -V -i /tmp/cred.out -o /tmp/cred.ver es256
sed -n 1p /tmp/cred.ver > /tmp/cred.id
sed 1d /tmp/cred.ver > /tmp/cred.pem
printf '%s\n%s\n%s\n' "$(rand 32)" keybound.test "$(cat /tmp/cred.id)" > /tmp/assert.in
fido2-assert -G -p -i /tmp/assert.in -o /tmp/assert.out "$dev" es256
fido2-assert -V -p -i /tmp/assert.out /tmp/cred.pem es256
echo "VERIFIED"
pamu2fcfg -u tech -o pam://keybound -i pam://keybound
"#;

#[test]
fn qemu_token_plugs_as_usb_hid_and_libfido2_tools_verify_it() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let sockets = tempfile::Builder::new().prefix("tok-").tempdir().unwrap();
    let token = VirtualToken::start(&dir.path().join("token"), sockets.path(), "accept").unwrap();
    let mut board = board(&image, "pi", dir.path());
    boot(&mut board);
    assert!(
        !wait_listed(&board, false).contains("/dev/hidraw"),
        "no token before the plug"
    );

    board
        .plug_usb_redir("token0", token.usbredir_socket())
        .unwrap();
    let list = wait_listed(&board, true);
    assert!(
        list.contains("/dev/hidraw"),
        "fido2-token -L after plug: {list:?}"
    );

    let out = board.maintenance_exec(GUEST_CHECKS).unwrap();
    assert!(out.contains("VERIFIED"), "{out}");
    let info = board.maintenance_exec("cat /tmp/info").unwrap();
    assert!(
        info.contains("FIDO_2_0") && info.contains("hmac-secret"),
        "fido2-token -I: {info}"
    );
    let authline = out.lines().last().unwrap_or_default();
    assert!(
        authline.starts_with("tech:") && authline.contains(",es256,+presence"),
        "pamu2fcfg enrolment line: {authline:?}"
    );

    board.unplug_usb("token0").unwrap();
    let after = wait_listed(&board, false);
    assert!(
        !after.contains("/dev/hidraw"),
        "fido2-token -L after unplug: {after:?}"
    );
    board.power_cut().unwrap();
}
