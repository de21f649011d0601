//! `virtual-fido`: the virtual FIDO2 token daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use virtual_fido::authenticator::AttestationMode;
use virtual_fido::control::Control;
use virtual_fido::ctaphid::EngineConfig;
use virtual_fido::presence::PresencePolicy;
use virtual_fido::state::{DirStore, MemoryStore, Store};
use virtual_fido::token::{Token, TokenConfig};
use virtual_fido::transport::raw_socket::RawSocketServer;
use virtual_fido::transport::usbredir;

const AFTER_HELP: &str = "\
TRANSPORTS
  --raw-socket PATH     Unix stream socket carrying raw CTAPHID: every message, both ways, is
                        exactly one 64-byte HID report (no report id, no length prefix). Each
                        connection is one HID device with its own channels; all share the token.
                        For host tests (python-fido2 adapter: tests/python/).
  --usbredir-socket P   The device side of QEMU's usb-redir protocol: this daemon listens at P
                        and QEMU's chardev connects (-chardev socket,id=ur0,path=P -device
                        usb-redir,chardev=ur0, or QMP chardev-add with reconnect-ms, then
                        device_add). The guest sees a full-speed USB HID device (usage page
                        0xF1D0, 64-byte interrupt IN/OUT) and gets /dev/hidraw*. One host at a
                        time; `unplug` is a USB disconnect, `plug` connects again.
  Both transports may be given; they share one token (same credentials, counter, PIN).

PRESENCE POLICIES (--presence, and the control command `presence`)
  accept          touch at once
  deny            refuse at once (CTAP2 OPERATION_DENIED, U2F CONDITIONS_NOT_SATISFIED)
  timeout         never touch: KEEPALIVE(UPNEEDED) until --presence-timeout-ms, then
                  USER_ACTION_TIMEOUT
  delay:MS        touch after MS milliseconds (KEEPALIVE meanwhile)
  wait-for-touch  wait for the control command `touch`, up to --presence-timeout-ms
  U2F (CTAP1) never blocks: it answers CONDITIONS_NOT_SATISFIED until presence is given.

CONTROL PROTOCOL (--control PATH; JSON lines, one request and one reply per line)
  {\"cmd\":\"status\"}                                 summary (plug, policy, counter, PIN, faults…)
  {\"cmd\":\"presence\",\"policy\":\"accept|deny|timeout|wait-for-touch\"}
  {\"cmd\":\"presence\",\"policy\":\"delay\",\"ms\":500}
  {\"cmd\":\"touch\"}                                  one touch, kept until consumed
  {\"cmd\":\"plug\"} / {\"cmd\":\"unplug\"}              raw socket: connections closed; usb-redir: USB disconnect
  {\"cmd\":\"set-counter\",\"value\":N}                  signature counter
  {\"cmd\":\"export-state\"}                           the state file as JSON (private keys!)
  {\"cmd\":\"import-state\",\"state\":{…}}               replace the state (clone a token)
  {\"cmd\":\"fault\",\"fault\":\"corrupt|oversize|stall|drop\"}  one-shot, next CBOR/MSG reply
  {\"cmd\":\"clear-faults\"}
  Replies: {\"ok\":true,\"result\":…} or {\"ok\":false,\"error\":\"…\"}.

STATE
  --state-dir DIR holds token.json (credentials, counter, PIN hash, retries, AAGUID; versioned,
  replaced atomically) under an exclusive lock. Copying token.json clones the token.
";

/// A virtual FIDO2 token (CTAP2.1 + CTAP1/U2F over CTAPHID) with scripted presence, a state
/// file, faults and a control socket.
#[derive(Debug, Parser)]
#[command(name = "virtual-fido", version, after_help = AFTER_HELP)]
struct Args {
    /// State directory (token.json + lock). Without it the token lives in memory only.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Control socket path (JSON lines).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Raw CTAPHID socket path (64-byte reports both ways).
    #[arg(long)]
    raw_socket: Option<PathBuf>,
    /// usb-redir device-side socket to listen on (QEMU's usb-redir chardev connects).
    #[arg(long)]
    usbredir_socket: Option<PathBuf>,
    /// Initial presence policy: accept, deny, timeout, delay:MS, wait-for-touch.
    #[arg(long, default_value = "accept")]
    presence: PresencePolicy,
    /// How long `timeout` and `wait-for-touch` wait before USER_ACTION_TIMEOUT.
    #[arg(long, default_value_t = 30_000)]
    presence_timeout_ms: u64,
    /// Attestation: packed (TEST-ONLY certificate), self, none.
    #[arg(long, default_value = "packed")]
    attestation: AttestationMode,
    /// CTAPHID transaction time-out: a half-received message is dropped with ERR_MSG_TIMEOUT.
    #[arg(long, default_value_t = 1_000)]
    transaction_timeout_ms: u64,
    /// Write READY=1 to this inherited file descriptor once every socket listens.
    #[arg(long)]
    ready_fd: Option<i32>,
    /// Exit when this inherited pipe read end reports hang-up (the parent went away).
    #[arg(long)]
    lifeline_fd: Option<i32>,
}

fn run(args: Args) -> Result<(), String> {
    if args.raw_socket.is_none() && args.usbredir_socket.is_none() {
        return Err("no transport: give --raw-socket PATH and/or --usbredir-socket PATH".into());
    }
    if let Some(fd) = args.lifeline_fd {
        daemon_kit::watch_lifeline(fd);
    }
    let store: Box<dyn Store> = match &args.state_dir {
        Some(dir) => Box::new(DirStore(
            daemon_kit::StateDir::open(dir).map_err(|e| e.to_string())?,
        )),
        None => Box::new(MemoryStore),
    };
    let token = Token::open(
        store,
        TokenConfig {
            presence: args.presence,
            presence_timeout: Duration::from_millis(args.presence_timeout_ms),
            attestation: args.attestation,
        },
    )
    .map_err(|e| e.to_string())?;
    let engine = EngineConfig {
        transaction_timeout: Duration::from_millis(args.transaction_timeout_ms),
        ..EngineConfig::default()
    };
    if let Some(path) = &args.control {
        daemon_kit::ControlServer::bind(path, Arc::new(Control(Arc::clone(&token))))
            .map_err(|e| e.to_string())?
            .spawn();
    }
    if let Some(path) = &args.raw_socket {
        RawSocketServer::bind(path, Arc::clone(&token), engine.clone())
            .map_err(|e| format!("raw socket {}: {e}", path.display()))?
            .spawn();
    }
    if let Some(path) = &args.usbredir_socket {
        usbredir::serve(path, Arc::clone(&token), engine.clone())
            .map_err(|e| format!("usb-redir socket {}: {e}", path.display()))?;
    }
    if let Some(fd) = args.ready_fd {
        daemon_kit::notify_ready(fd).map_err(|e| format!("--ready-fd {fd}: {e}"))?;
    }
    tracing::info!("virtual-fido ready");
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = daemon_kit::die_with_parent();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virtual-fido: {e}");
            ExitCode::FAILURE
        }
    }
}
