//! The CTAPHID engine in process: channels, errors, lock, time-outs, keepalive, cancel, faults.

mod common;

use std::time::{Duration, Instant};

use common::*;
use virtual_fido::PresencePolicy;
use virtual_fido::TokenConfig;
use virtual_fido::ctaphid::{MAX_MESSAGE_LEN, Packet, fragment};
use virtual_fido::faults::Fault;

const ERR_INVALID_CMD: u8 = 0x01;
const ERR_INVALID_PAR: u8 = 0x02;
const ERR_INVALID_LEN: u8 = 0x03;
const ERR_INVALID_SEQ: u8 = 0x04;
const ERR_MSG_TIMEOUT: u8 = 0x05;
const ERR_CHANNEL_BUSY: u8 = 0x06;
const ERR_INVALID_CHANNEL: u8 = 0x0B;

fn expect_error(host: &mut Host, cid: u32, code: u8) {
    let (rcid, cmd, data) = host.recv();
    assert_eq!((rcid, cmd, data), (cid, CMD_ERROR, vec![code]));
}

fn get_info() -> Vec<u8> {
    vec![0x04]
}

#[test]
fn init_allocates_distinct_channels_and_reports_capabilities() {
    let mut host = Host::accept();
    let a = host.cid;
    let b = host.init();
    assert_ne!(a, b);
    assert!(a != 0 && a != 0xFFFF_FFFF);
    host.send(0xFFFF_FFFF, CMD_INIT, &[9; 8]);
    let (_, _, reply) = host.recv();
    assert_eq!(reply.len(), 17);
    assert_eq!(reply[12], 2, "CTAPHID protocol version");
    assert_eq!(reply[16] & 0x05, 0x05, "WINK and CBOR");
    assert_eq!(reply[16] & 0x08, 0, "MSG is implemented (no NMSG)");
    // INIT on an allocated channel resynchronises it and keeps the id.
    host.send(a, CMD_INIT, &[3; 8]);
    let (cid, cmd, reply) = host.recv();
    assert_eq!((cid, cmd), (a, CMD_INIT));
    assert_eq!(u32::from_be_bytes(reply[8..12].try_into().unwrap()), a);
}

#[test]
fn channel_and_command_errors() {
    let mut host = Host::accept();
    host.send(0x1234_5678, CMD_PING, b"x");
    expect_error(&mut host, 0x1234_5678, ERR_INVALID_CHANNEL);
    host.send(0, CMD_PING, b"x");
    expect_error(&mut host, 0, ERR_INVALID_CHANNEL);
    host.send(0xFFFF_FFFF, CMD_PING, b"x");
    expect_error(&mut host, 0xFFFF_FFFF, ERR_INVALID_CHANNEL);
    host.send(0xFFFF_FFFF, CMD_INIT, &[1; 7]);
    expect_error(&mut host, 0xFFFF_FFFF, ERR_INVALID_LEN);
    let cid = host.cid;
    host.send(cid, 0x55, b"");
    expect_error(&mut host, cid, ERR_INVALID_CMD);
    host.send(cid, CMD_CBOR, b"");
    expect_error(&mut host, cid, ERR_INVALID_LEN);
    host.send(cid, CMD_WINK, b"x");
    expect_error(&mut host, cid, ERR_INVALID_LEN);
    assert_eq!(host.call(CMD_WINK, b""), (CMD_WINK, vec![]));
    // A declared length beyond the maximum.
    let mut report = fragment(cid, CMD_PING, b"")[0];
    report[5..7].copy_from_slice(&((MAX_MESSAGE_LEN + 1) as u16).to_be_bytes());
    host.hid.on_out_report_at(&report, Instant::now());
    expect_error(&mut host, cid, ERR_INVALID_LEN);
}

#[test]
fn ping_round_trips_every_size_class() {
    let mut host = Host::accept();
    for len in [0, 1, 57, 58, 116, 117, 1000, MAX_MESSAGE_LEN] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(
            host.call(CMD_PING, &payload),
            (CMD_PING, payload),
            "len {len}"
        );
    }
}

#[test]
fn continuation_errors_and_busy_channels() {
    let mut host = Host::accept();
    let a = host.cid;
    let b = host.init();
    let reports = fragment(a, CMD_PING, &[7; 200]);
    let now = Instant::now();
    host.hid.on_out_report_at(&reports[0], now);
    // Another channel starting a message while `a` is half-received: busy.
    host.send(b, CMD_PING, b"hi");
    expect_error(&mut host, b, ERR_CHANNEL_BUSY);
    // Spurious continuation on another channel is ignored; wrong sequence aborts.
    host.hid
        .on_out_report_at(&fragment(b, CMD_PING, &[0; 100])[1], now);
    host.hid.on_out_report_at(&reports[2], now);
    expect_error(&mut host, a, ERR_INVALID_SEQ);
    // An init packet on the same channel mid-message is a sequence error too.
    host.hid.on_out_report_at(&reports[0], now);
    host.hid.on_out_report_at(&reports[0], now);
    expect_error(&mut host, a, ERR_INVALID_SEQ);
    // Afterwards the channel works again.
    assert_eq!(host.call(CMD_PING, b"ok"), (CMD_PING, b"ok".to_vec()));
    assert!(host.try_recv(Duration::from_millis(20)).is_none());
}

#[test]
fn half_received_messages_time_out() {
    let mut host = Host::accept();
    let cid = host.cid;
    let reports = fragment(cid, CMD_PING, &[1; 100]);
    let t0 = Instant::now();
    host.hid.on_out_report_at(&reports[0], t0);
    host.hid.poll_at(t0 + Duration::from_millis(500));
    assert!(host.try_recv(Duration::from_millis(20)).is_none());
    host.hid.poll_at(t0 + Duration::from_millis(1001));
    expect_error(&mut host, cid, ERR_MSG_TIMEOUT);
    // The late continuation is ignored.
    host.hid
        .on_out_report_at(&reports[1], t0 + Duration::from_millis(1002));
    assert!(host.try_recv(Duration::from_millis(20)).is_none());
}

#[test]
fn lock_keeps_other_channels_out_until_released_or_expired() {
    let mut host = Host::accept();
    let a = host.cid;
    let b = host.init();
    host.send(a, CMD_LOCK, &[11]);
    expect_error(&mut host, a, ERR_INVALID_PAR);
    assert_eq!(host.call(CMD_LOCK, &[5]), (CMD_LOCK, vec![]));
    host.send(b, CMD_PING, b"x");
    expect_error(&mut host, b, ERR_CHANNEL_BUSY);
    assert_eq!(host.call(CMD_PING, b"own"), (CMD_PING, b"own".to_vec()));
    assert_eq!(host.call(CMD_LOCK, &[0]), (CMD_LOCK, vec![]));
    host.send(b, CMD_PING, b"x");
    assert_eq!(host.recv(), (b, CMD_PING, b"x".to_vec()));
    // Expiry.
    assert_eq!(host.call(CMD_LOCK, &[1]), (CMD_LOCK, vec![]));
    host.hid.poll_at(Instant::now() + Duration::from_secs(2));
    host.send(b, CMD_PING, b"y");
    assert_eq!(host.recv(), (b, CMD_PING, b"y".to_vec()));
}

#[test]
fn keepalive_while_waiting_then_touch_completes() {
    let mut host = Host::new(TokenConfig {
        presence: PresencePolicy::WaitForTouch,
        ..TokenConfig::default()
    });
    let cid = host.cid;
    let other = host.init();
    host.send(cid, CMD_CBOR, &[0x0B]); // selection
    let (rcid, cmd, status) = host.recv();
    assert_eq!(
        (rcid, cmd, status),
        (cid, CMD_KEEPALIVE, vec![0x02]),
        "UPNEEDED"
    );
    // The device is busy: another channel is told so, INIT still works.
    host.send(other, CMD_PING, b"x");
    loop {
        let (rcid, cmd, data) = host.recv();
        if rcid == other {
            assert_eq!((cmd, data), (CMD_ERROR, vec![ERR_CHANNEL_BUSY]));
            break;
        }
        assert_eq!(cmd, CMD_KEEPALIVE);
    }
    host.token.presence().touch();
    loop {
        let (rcid, cmd, data) = host.recv();
        assert_eq!(rcid, cid);
        if cmd != CMD_KEEPALIVE {
            assert_eq!((cmd, data), (CMD_CBOR, vec![0x00]));
            break;
        }
    }
}

#[test]
fn cancel_ends_the_wait_with_keepalive_cancel() {
    let mut host = Host::new(TokenConfig {
        presence: PresencePolicy::WaitForTouch,
        ..TokenConfig::default()
    });
    let cid = host.cid;
    host.send(cid, CMD_CBOR, &[0x0B]);
    assert_eq!(host.recv().1, CMD_KEEPALIVE);
    host.send(cid, CMD_CANCEL, b"");
    loop {
        let (_, cmd, data) = host.recv();
        if cmd != CMD_KEEPALIVE {
            assert_eq!(
                (cmd, data),
                (CMD_CBOR, vec![0x2D]),
                "CTAP2_ERR_KEEPALIVE_CANCEL"
            );
            break;
        }
    }
    // CANCEL with nothing outstanding gets no reply.
    host.send(cid, CMD_CANCEL, b"");
    assert!(host.try_recv(Duration::from_millis(30)).is_none());
}

#[test]
fn init_on_a_busy_channel_abandons_its_request() {
    let mut host = Host::new(TokenConfig {
        presence: PresencePolicy::WaitForTouch,
        ..TokenConfig::default()
    });
    let cid = host.cid;
    host.send(cid, CMD_CBOR, &[0x0B]);
    assert_eq!(host.recv().1, CMD_KEEPALIVE);
    host.send(cid, CMD_INIT, &[8; 8]);
    loop {
        let (rcid, cmd, data) = host.recv();
        assert_eq!(rcid, cid);
        if cmd == CMD_INIT {
            assert_eq!(&data[..8], &[8; 8]);
            break;
        }
        assert_eq!(cmd, CMD_KEEPALIVE);
    }
    // Nothing more for the abandoned request (stray keepalives at most), then the channel
    // serves the next request.
    while let Some((_, cmd, _)) = host.try_recv(Duration::from_millis(100)) {
        assert_eq!(
            cmd, CMD_KEEPALIVE,
            "the abandoned request's response leaked"
        );
    }
    host.token.presence().set_policy(PresencePolicy::Accept);
    assert_eq!(host.call(CMD_CBOR, &[0x0B]), (CMD_CBOR, vec![0x00]));
}

#[test]
fn faults_corrupt_oversize_stall_and_drop_the_next_response() {
    let mut host = Host::accept();
    let clean = host.call(CMD_CBOR, &get_info()).1;
    host.token.faults().arm(Fault::Corrupt);
    let corrupt = host.call(CMD_CBOR, &get_info()).1;
    assert_eq!(corrupt.len(), clean.len());
    assert_eq!(corrupt[0], clean[0]);
    assert!(
        corrupt[1..]
            .iter()
            .zip(&clean[1..])
            .all(|(c, o)| c ^ o == 0x5A)
    );
    assert_eq!(host.call(CMD_CBOR, &get_info()).1, clean, "one-shot");

    host.token.faults().arm(Fault::Oversize);
    host.send(host.cid, CMD_CBOR, &get_info());
    let first = host.rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let Packet::Init { bcnt, .. } = Packet::parse(&first) else {
        panic!()
    };
    assert!(usize::from(bcnt) > MAX_MESSAGE_LEN);
    let mut reports = 1;
    while host.rx.recv_timeout(Duration::from_millis(50)).is_ok() {
        reports += 1;
    }
    assert!(
        reports > 129,
        "more reports than a valid message has: {reports}"
    );

    host.token.faults().arm(Fault::Stall);
    host.send(host.cid, CMD_CBOR, &get_info());
    assert!(host.try_recv(Duration::from_millis(100)).is_none());
    assert_eq!(
        host.call(CMD_CBOR, &get_info()).1,
        clean,
        "served again after a stall"
    );

    host.token.faults().arm(Fault::Drop);
    host.send(host.cid, CMD_CBOR, &get_info());
    assert!(
        host.rx.recv_timeout(Duration::from_secs(5)).is_ok(),
        "first report"
    );
    assert!(
        host.rx.recv_timeout(Duration::from_secs(5)).is_err(),
        "then the connection is gone"
    );
}

mod random_reports {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use virtual_fido::ctaphid::{CtapHid, EngineConfig, Packet};
    use virtual_fido::transport::ChannelSink;
    use virtual_fido::{Token, TokenConfig};

    fn report() -> impl Strategy<Value = [u8; 64]> {
        (
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(2),
                Just(0xFFFF_FFFF),
                any::<u32>()
            ],
            prop_oneof![
                (0x80u8..=0xFF),
                Just(0x86),
                Just(0x90),
                Just(0x81),
                0u8..0x80
            ],
            any::<u16>().prop_map(|n| n % 400),
            proptest::collection::vec(any::<u8>(), 57),
        )
            .prop_map(|(cid, cmd, bcnt, data)| {
                let mut r = [0u8; 64];
                r[..4].copy_from_slice(&cid.to_be_bytes());
                r[4] = cmd;
                r[5..7].copy_from_slice(&bcnt.to_be_bytes());
                r[7..].copy_from_slice(&data);
                if cmd == 0x90 {
                    r[7] = 0x04; // CBOR getInfo, so some requests succeed
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_report_sequences_never_break_the_engine(reports in proptest::collection::vec(report(), 1..60)) {
            let (sink, rx) = ChannelSink::new();
            let config = EngineConfig { inline: true, ..EngineConfig::default() };
            let mut hid = CtapHid::new(Token::in_memory(TokenConfig::default()), Arc::new(sink), config);
            let t0 = Instant::now();
            let mut init = [0u8; 64];
            init[..7].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x86, 0, 8]);
            hid.on_out_report_at(&init, t0);
            for (i, r) in reports.iter().enumerate() {
                hid.on_out_report_at(r, t0 + Duration::from_millis(100 * i as u64));
            }
            drop(hid);
            for out in rx.try_iter() {
                if let Packet::Init { cmd, .. } = Packet::parse(&out) {
                    prop_assert!(matches!(cmd, 0x01 | 0x03 | 0x04 | 0x06 | 0x08 | 0x10 | 0x3B | 0x3F), "command {cmd:#x}");
                }
            }
        }
    }
}
