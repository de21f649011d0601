//! Production client → drop-in libzk_app_utils.so → zymkey-emu over a unix socket, for every
//! exported function, and the typed errors at each boundary.

use std::time::Duration;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde_json::json;
use zymkey::{
    AxisSelect, BlobRejection, Error, Library, LockKey, PerimeterActions, PerimeterChannel, Slot,
};
use zymkey_testkit::{Module, library_path, open_at};

#[test]
fn every_exported_function_works_end_to_end() {
    let m = Module::start("board-1", "card-1");
    let zk = m.open().unwrap();

    assert_eq!(zk.model().unwrap(), "ZYMKEY4");
    let status = m.ctl(json!({"cmd": "status"}));
    assert_eq!(zk.serial().unwrap(), status["serial"].as_str().unwrap());
    assert!(zk.firmware().unwrap().starts_with("keybound-zymkey-emu"));

    // Random bytes: one chunk and several.
    let r = zk.random_bytes(32).unwrap();
    assert_eq!(r.len(), 32);
    assert_ne!(*r, vec![0u8; 32]);
    assert_eq!(zk.random_bytes(20_000).unwrap().len(), 20_000);
    let dir = m.tmp.path();
    zk.random_to_file(&dir.join("rand.bin"), 100).unwrap();
    assert_eq!(std::fs::read(dir.join("rand.bin")).unwrap().len(), 100);

    // Lock and unlock, all four shapes, both keys.
    for key in [LockKey::OneWay, LockKey::Shared] {
        let secret = b"the root volume secret".to_vec();
        let blob = zk.lock(&secret, key).unwrap();
        assert_eq!(&zk.unlock(&blob, key).unwrap()[..], &secret[..]);

        std::fs::write(dir.join("pt"), &secret).unwrap();
        zk.lock_file_to_file(&dir.join("pt"), &dir.join("ct"), key)
            .unwrap();
        zk.unlock_file_to_file(&dir.join("ct"), &dir.join("pt2"), key)
            .unwrap();
        assert_eq!(std::fs::read(dir.join("pt2")).unwrap(), secret);

        zk.lock_to_file(&secret, &dir.join("ct2"), key).unwrap();
        assert_eq!(
            &zk.unlock_file(&dir.join("ct2"), key).unwrap()[..],
            &secret[..]
        );
        let blob2 = zk.lock_file(&dir.join("pt"), key).unwrap();
        zk.unlock_to_file(&blob2, &dir.join("pt3"), key).unwrap();
        assert_eq!(std::fs::read(dir.join("pt3")).unwrap(), secret);
    }

    // ECDSA on every slot, checked against the exported key outside the module.
    let digest = [0x42u8; 32];
    for slot in Slot::ALL {
        let sig = zk.sign_digest(slot, &digest).unwrap();
        assert!(zk.verify_digest(slot, &digest, &sig).unwrap());
        assert!(!zk.verify_digest(slot, &[0u8; 32], &sig).unwrap());
        let pk = zk.export_public_key(slot).unwrap();
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&pk);
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        vk.verify_prehash(&digest, &sig).unwrap();
    }

    // Perimeter: notify wakes a waiter, info shows the first breach, clear resets.
    zk.set_perimeter_actions(
        PerimeterChannel::Zero,
        PerimeterActions {
            notify: true,
            self_destruct: false,
        },
    )
    .unwrap();
    assert!(!zk.wait_for_perimeter_event(Duration::ZERO).unwrap());
    m.ctl(json!({"cmd": "breach", "channel": 0}));
    assert!(zk.wait_for_perimeter_event(Duration::from_secs(5)).unwrap());
    let breaches = zk.perimeter_first_breaches().unwrap();
    assert!(
        breaches[0].is_some() && breaches[1].is_none(),
        "{breaches:?}"
    );
    zk.clear_perimeter_events().unwrap();
    assert_eq!(zk.perimeter_first_breaches().unwrap(), vec![None, None]);

    // Tap and accelerometer.
    zk.set_tap_sensitivity(AxisSelect::All, 80.0).unwrap();
    assert!(matches!(
        zk.set_tap_sensitivity(AxisSelect::X, 101.0),
        Err(Error::InvalidArgument)
    ));
    assert!(!zk.wait_for_tap(Duration::from_millis(10)).unwrap());
    m.ctl(json!({"cmd": "tap", "axis": "x"}));
    assert!(zk.wait_for_tap(Duration::from_secs(5)).unwrap());
    let axes = zk.accelerometer().unwrap();
    assert_eq!(axes[0].tap_direction, 1);
    assert!((axes[2].g - 1.0).abs() < 1e-9);

    // Clock, LED, I2C, binding.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((i64::from(zk.time(false).unwrap()) - now).abs() < 5);
    zk.led_on().unwrap();
    assert_eq!(m.ctl(json!({"cmd": "status"}))["led"]["state"], "on");
    zk.led_flash(Duration::from_millis(100), Duration::from_millis(200), 3)
        .unwrap();
    assert_eq!(m.ctl(json!({"cmd": "status"}))["led"]["state"], "flash");
    zk.led_off().unwrap();
    zk.set_i2c_address(0x61).unwrap();
    assert!(matches!(
        zk.set_i2c_address(0x40),
        Err(Error::InvalidArgument)
    ));
    assert!(matches!(zk.lock_binding(), Err(Error::Unsupported)));
    let info = zk.binding_info().unwrap();
    assert!(!info.locked && info.bound);
    m.ctl(json!({"cmd": "cut-tab"}));
    let info = zk.binding_info().unwrap();
    assert!(info.locked && info.bound);
}

#[test]
fn blob_rejections_are_typed_and_blobs_do_not_move() {
    let a = Module::start("board-a", "card-a");
    let b = Module::start("board-a", "card-a");
    let (za, zb) = (a.open().unwrap(), b.open().unwrap());
    let blob = za.lock(b"secret", LockKey::OneWay).unwrap();
    let mut modified = blob.clone();
    modified[50] ^= 1;
    let cases = [
        (
            zb.unlock(&blob, LockKey::OneWay),
            BlobRejection::ForeignModule,
        ),
        (
            za.unlock(&modified, LockKey::OneWay),
            BlobRejection::Modified,
        ),
        (
            za.unlock(&blob[..blob.len() - 3], LockKey::OneWay),
            BlobRejection::Truncated,
        ),
        (za.unlock(&blob, LockKey::Shared), BlobRejection::WrongKey),
    ];
    for (got, want) in cases {
        match got {
            Err(Error::BlobRejected(r)) => assert_eq!(r, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
}

#[test]
fn absent_library_absent_module_binding_failure_and_faults_are_distinct() {
    assert!(matches!(
        Library::load_from("/nonexistent/libzk_app_utils.so"),
        Err(Error::LibraryNotInstalled { .. })
    ));
    let m = Module::start("board-1", "card-1");
    assert!(matches!(
        open_at(&m.tmp.path().join("no-such.sock")),
        Err(Error::ModuleAbsent)
    ));
    let zk = m.open().unwrap();
    let blob = zk.lock(b"secret", LockKey::OneWay).unwrap();

    // Faults: an unknown code, a dropped connection, a flipped bit, a delay.
    m.ctl(json!({"cmd": "fault", "kind": "fail", "count": 1, "code": -4242}));
    assert!(matches!(zk.random_bytes(8), Err(Error::Unknown(-4242))));
    m.ctl(json!({"cmd": "fault", "kind": "drop", "count": 1}));
    assert!(matches!(zk.random_bytes(8), Err(Error::NotAnswering)));
    m.ctl(json!({"cmd": "fault", "kind": "bit-flip", "count": 1}));
    assert_ne!(&zk.unlock(&blob, LockKey::OneWay).unwrap()[..], b"secret");
    m.ctl(json!({"cmd": "fault", "kind": "delay", "count": 1, "ms": 50}));
    assert_eq!(&zk.unlock(&blob, LockKey::OneWay).unwrap()[..], b"secret");

    // Detached: the module is not there.
    m.ctl(json!({"cmd": "detach"}));
    assert!(matches!(zk.random_bytes(8), Err(Error::ModuleAbsent)));

    // Production mode on another board: binding failure; back home: unlocks.
    m.ctl(json!({"cmd": "attach", "board": "board-1", "card": "card-1"}));
    m.ctl(json!({"cmd": "cut-tab"}));
    m.ctl(json!({"cmd": "attach", "board": "board-2", "card": "card-1"}));
    assert!(matches!(
        zk.unlock(&blob, LockKey::OneWay),
        Err(Error::BindingFailed)
    ));
    assert!(matches!(zk.random_bytes(8), Err(Error::BindingFailed)));
    assert_eq!(
        m.ctl(json!({"cmd": "status"}))["led"]["state"],
        "binding-failed"
    );
    assert!(!zk.binding_info().unwrap().bound);
    m.ctl(json!({"cmd": "attach", "board": "board-1", "card": "card-1"}));
    assert_eq!(&zk.unlock(&blob, LockKey::OneWay).unwrap()[..], b"secret");

    // Self-destruct: gone.
    zk.set_perimeter_actions(
        PerimeterChannel::One,
        PerimeterActions {
            notify: false,
            self_destruct: true,
        },
    )
    .unwrap();
    m.ctl(json!({"cmd": "breach", "channel": 1}));
    assert!(matches!(
        zk.unlock(&blob, LockKey::OneWay),
        Err(Error::Destroyed)
    ));
}

#[test]
fn an_unlock_shows_the_secret_on_the_bus_trace() {
    let m = Module::start("board-1", "card-1");
    let zk = m.open().unwrap();
    let secret = b"SNIFF-ME-0123456789";
    let blob = zk.lock(secret, LockKey::OneWay).unwrap();
    m.ctl(json!({"cmd": "bus-trace", "on": true}));
    zk.unlock(&blob, LockKey::OneWay).unwrap();
    let trace = m.ctl(json!({"cmd": "bus-trace-read", "clear": true}));
    let needle = hex_encode(secret);
    let entries = trace["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["dir"] == "module-to-host" && e["hex"].as_str().unwrap().contains(&needle)),
        "secret not visible in {entries:?}"
    );
}

#[test]
fn the_library_is_found_next_to_the_test_binary() {
    assert!(library_path().ends_with("libzk_app_utils.so"));
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn concurrent_callers_are_serialised() {
    let m = Module::start("board-1", "card-1");
    let blob = m.open().unwrap().lock(b"shared", LockKey::OneWay).unwrap();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                let zk = m.open().unwrap();
                for _ in 0..15 {
                    assert_eq!(zk.random_bytes(16).unwrap().len(), 16);
                    assert_eq!(&zk.unlock(&blob, LockKey::OneWay).unwrap()[..], b"shared");
                }
            });
        }
    });
}

#[test]
fn payload_sizes_outside_the_api_limits_are_refused() {
    let m = Module::start("board-1", "card-1");
    let zk = m.open().unwrap();
    assert!(matches!(
        zk.lock(&[], LockKey::OneWay),
        Err(Error::InvalidArgument)
    ));
    assert!(matches!(
        zk.lock(&vec![1; 8193], LockKey::OneWay),
        Err(Error::InvalidArgument)
    ));
    assert!(matches!(zk.random_bytes(0), Err(Error::InvalidArgument)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Round trip through the whole stack for payload sizes across the API's range (1..=8192).
    #[test]
    fn lock_unlock_round_trips_through_the_stack(
        len in 1usize..=8192, shared in proptest::prelude::any::<bool>(), seed in proptest::prelude::any::<u8>()
    ) {
        use std::sync::OnceLock;
        static MODULE: OnceLock<Module> = OnceLock::new();
        let m = MODULE.get_or_init(|| Module::start("board-p", "card-p"));
        let zk = m.open().unwrap();
        let key = if shared { LockKey::Shared } else { LockKey::OneWay };
        let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
        let blob = zk.lock(&data, key).unwrap();
        proptest::prop_assert_eq!(&zk.unlock(&blob, key).unwrap()[..], &data[..]);
        let mut bad = blob.clone();
        bad[(seed as usize * 7919) % blob.len()] ^= 0x80;
        proptest::prop_assert!(matches!(zk.unlock(&bad, key), Err(Error::BlobRejected(_))));
        proptest::prop_assert!(matches!(
            zk.unlock(&blob[..blob.len() - 1 - (seed as usize % 40)], key),
            Err(Error::BlobRejected(_))
        ));
    }
}
