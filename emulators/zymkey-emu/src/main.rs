//! `zymkey-emu`: one software ZYMKEY4 per process (see the crate README).

use std::path::PathBuf;

use clap::Parser;

/// A software ZYMKEY4: guest wire on a unix socket, control socket, state directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// State directory (created if needed; locked while the daemon runs).
    #[arg(long, required_unless_present = "print_capabilities")]
    state_dir: Option<PathBuf>,
    /// Control socket path (JSON lines).
    #[arg(long, required_unless_present = "print_capabilities")]
    control: Option<PathBuf>,
    /// Guest socket path: QEMU's virtio-serial chardev connects here as a client.
    #[arg(long, required_unless_present = "print_capabilities")]
    guest_socket: Option<PathBuf>,
    /// Write READY=1 to this inherited descriptor once both sockets listen.
    #[arg(long)]
    ready_fd: Option<i32>,
    /// Exit when this inherited descriptor (read end of a pipe) hangs up.
    #[arg(long)]
    lifeline_fd: Option<i32>,
    /// Print the capabilities as JSON and exit.
    #[arg(long)]
    print_capabilities: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.print_capabilities {
        println!("{:#}", zymkey_emu::capabilities());
        return std::process::ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = daemon_kit::die_with_parent();
    let (Some(state_dir), Some(control), Some(guest_socket)) =
        (args.state_dir, args.control, args.guest_socket)
    else {
        unreachable!("clap enforces the three paths");
    };
    let config = zymkey_emu::DaemonConfig {
        state_dir,
        control,
        guest_socket,
    };
    if let Err(e) = zymkey_emu::Daemon::start(&config) {
        eprintln!("zymkey-emu: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Some(fd) = args.lifeline_fd {
        daemon_kit::watch_lifeline(fd);
    }
    if let Some(fd) = args.ready_fd
        && let Err(e) = daemon_kit::notify_ready(fd)
    {
        eprintln!("zymkey-emu: readiness fd {fd}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    tracing::info!("zymkey-emu ready");
    loop {
        std::thread::park();
    }
}
