//! The CTAPHID engine: channels, transactions, locking, timeouts and dispatch to a [`Backend`].
//!
//! The engine is fed OUT reports ([`CtapHid::on_out_report`]) and writes IN reports to a
//! [`ReportSink`]. `CBOR` and `MSG` requests run on a worker thread so that `CANCEL` and `INIT`
//! keep working while the authenticator waits for the user, and so that `KEEPALIVE` reports flow
//! meanwhile. Time-outs of half-received messages are checked on every report and on
//! [`CtapHid::poll`], which a transport calls periodically.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::message::{Progress, Reassembler, ReassemblyError, fragment};
use super::packet::{Packet, REPORT_LEN};
use super::{BROADCAST_CID, Command, HidError, KeepaliveStatus, MAX_MESSAGE_LEN, capability};
use crate::faults::Fault;
use crate::presence::Interaction;
use crate::transport::{HidReportDevice, ReportSink};

/// What runs the requests: the authenticator, seen from the framing layer.
pub trait Backend: Send + Sync + 'static {
    /// Handles one CTAP2 request (command byte + CBOR) and returns the response (status byte +
    /// CBOR). May block while waiting for the user; `io` sends keepalives and reports `CANCEL`.
    fn cbor(&self, request: &[u8], io: &dyn Interaction) -> Vec<u8>;
    /// Handles one CTAP1/U2F APDU and returns the response APDU (data + status word).
    fn msg(&self, apdu: &[u8], io: &dyn Interaction) -> Vec<u8>;
    /// The fault to apply to the next `CBOR`/`MSG` response, if one is armed (consumed).
    fn next_fault(&self) -> Option<Fault> {
        None
    }
    /// The device was asked to identify itself.
    fn wink(&self) {}
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a half-received message may wait for its next packet before `ERR_MSG_TIMEOUT`.
    pub transaction_timeout: Duration,
    /// How often `KEEPALIVE` is sent while the authenticator waits.
    pub keepalive_interval: Duration,
    /// Run requests on the caller's thread (no concurrent `CANCEL`): for fuzzing and benches.
    pub inline: bool,
    /// Device version reported by `INIT` (major, minor, build).
    pub device_version: (u8, u8, u8),
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            transaction_timeout: Duration::from_millis(1000),
            keepalive_interval: Duration::from_millis(100),
            inline: false,
            device_version: (0, 1, 0),
        }
    }
}

/// How many channels stay allocated; the oldest is forgotten beyond that.
const MAX_CHANNELS: usize = 256;

struct Shared {
    sink: Arc<dyn ReportSink>,
    /// The request being processed.
    busy: Mutex<Option<Busy>>,
    cancel: AtomicBool,
    keepalive_interval: Duration,
}

impl Shared {
    fn send(&self, cid: u32, cmd: Command, payload: &[u8]) {
        for report in fragment(cid, cmd as u8, payload) {
            self.sink.send_report(report);
        }
    }

    fn error(&self, cid: u32, error: HidError) {
        self.send(cid, Command::Error, &[error as u8]);
    }
}

/// The channel whose request is being processed, and whether the host abandoned it (`INIT`
/// on that channel): an abandoned request's response is never sent.
#[derive(Debug, Clone, Copy)]
struct Busy {
    cid: u32,
    abandoned: bool,
}

struct Job {
    cid: u32,
    cmd: Command,
    payload: Vec<u8>,
}

/// The per-request view handed to the backend: keepalives go to the request's channel.
struct JobInteraction<'a> {
    shared: &'a Shared,
    cid: u32,
}

impl Interaction for JobInteraction<'_> {
    fn keepalive(&self, status: KeepaliveStatus) {
        self.shared
            .send(self.cid, Command::Keepalive, &[status as u8]);
    }
    fn cancelled(&self) -> bool {
        self.shared.cancel.load(Ordering::SeqCst)
    }
    fn keepalive_interval(&self) -> Duration {
        self.shared.keepalive_interval
    }
}

fn run_job(shared: &Shared, backend: &dyn Backend, job: Job) {
    let io = JobInteraction {
        shared,
        cid: job.cid,
    };
    let response = match job.cmd {
        Command::Cbor => backend.cbor(&job.payload, &io),
        _ => backend.msg(&job.payload, &io),
    };
    let finished = shared.busy.lock().unwrap_or_else(|e| e.into_inner()).take();
    if finished.is_some_and(|b| b.abandoned) {
        tracing::debug!(cid = job.cid, "response to an abandoned request dropped");
        return;
    }
    match backend.next_fault() {
        // Applied by the authenticator, not the transport.
        None | Some(Fault::WrongRp) => shared.send(job.cid, job.cmd, &response),
        Some(Fault::Stall) => tracing::info!(cid = job.cid, "fault: stalled, no response"),
        Some(Fault::Corrupt) => {
            let mut response = response;
            match response.len() {
                0 => response.push(0x5A),
                1 => response[0] ^= 0x5A,
                _ => response[1..].iter_mut().for_each(|b| *b ^= 0x5A),
            }
            shared.send(job.cid, job.cmd, &response);
        }
        Some(Fault::Oversize) => {
            let mut response = response;
            response.resize(response.len() + MAX_MESSAGE_LEN + 1, 0xAA);
            shared.send(job.cid, job.cmd, &response);
        }
        Some(Fault::Drop) => {
            if let Some(first) = fragment(job.cid, job.cmd as u8, &response).first() {
                shared.sink.send_report(*first);
            }
            shared.sink.disconnect();
        }
    }
}

/// The CTAPHID state machine of one HID device (one connection of a transport).
pub struct CtapHid {
    shared: Arc<Shared>,
    backend: Arc<dyn Backend>,
    config: EngineConfig,
    channels: VecDeque<u32>,
    next_cid: u32,
    assembling: Option<(Reassembler, Instant)>,
    lock: Option<(u32, Instant)>,
    jobs: Option<mpsc::Sender<Job>>,
}

impl CtapHid {
    /// A new device writing IN reports to `sink` and running requests on `backend`.
    pub fn new(backend: Arc<dyn Backend>, sink: Arc<dyn ReportSink>, config: EngineConfig) -> Self {
        let shared = Arc::new(Shared {
            sink,
            busy: Mutex::new(None),
            cancel: AtomicBool::new(false),
            keepalive_interval: config.keepalive_interval,
        });
        let jobs = (!config.inline).then(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let shared = Arc::clone(&shared);
            let backend = Arc::clone(&backend);
            thread::Builder::new()
                .name("ctaphid-worker".into())
                .spawn(move || {
                    for job in rx {
                        run_job(&shared, &*backend, job);
                    }
                })
                .expect("spawning the CTAPHID worker thread");
            tx
        });
        Self {
            shared,
            backend,
            config,
            channels: VecDeque::new(),
            next_cid: 1,
            assembling: None,
            lock: None,
            jobs,
        }
    }

    /// Handles one OUT report at time `now`.
    pub fn on_out_report_at(&mut self, report: &[u8; REPORT_LEN], now: Instant) {
        self.poll_at(now);
        match Packet::parse(report) {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => self.on_init_packet(cid, cmd, bcnt, &data, now),
            Packet::Cont { cid, seq, data } => {
                let Some((assembly, deadline)) = &mut self.assembling else {
                    return; // spurious continuation: ignored
                };
                if assembly.cid() != cid {
                    return;
                }
                match assembly.push(seq, &data) {
                    Err(_) => {
                        self.assembling = None;
                        self.shared.error(cid, HidError::InvalidSeq);
                    }
                    Ok(Progress::NeedMore) => *deadline = now + self.config.transaction_timeout,
                    Ok(Progress::Complete { cmd, payload }) => {
                        self.assembling = None;
                        self.dispatch(cid, cmd, payload, now);
                    }
                }
            }
        }
    }

    /// Checks time-outs at time `now`: a half-received message gets `ERR_MSG_TIMEOUT`, an
    /// expired lock is released.
    pub fn poll_at(&mut self, now: Instant) {
        if let Some((assembly, deadline)) = &self.assembling
            && now >= *deadline
        {
            let cid = assembly.cid();
            self.assembling = None;
            self.shared.error(cid, HidError::MsgTimeout);
        }
        if let Some((_, until)) = self.lock
            && now >= until
        {
            self.lock = None;
        }
    }

    fn busy_cid(&self) -> Option<u32> {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|b| b.cid)
    }

    fn allocated(&self, cid: u32) -> bool {
        self.channels.contains(&cid)
    }

    fn allocate(&mut self) -> u32 {
        let cid = self.next_cid;
        self.next_cid = match self.next_cid.wrapping_add(1) {
            0 | BROADCAST_CID => 1,
            n => n,
        };
        if self.channels.len() >= MAX_CHANNELS {
            self.channels.pop_front();
        }
        self.channels.push_back(cid);
        cid
    }

    fn on_init_packet(
        &mut self,
        cid: u32,
        cmd: u8,
        bcnt: u16,
        data: &[u8; super::packet::INIT_PAYLOAD],
        now: Instant,
    ) {
        if cid == 0 {
            return self.shared.error(cid, HidError::InvalidChannel);
        }
        if cmd == Command::Init as u8 {
            if bcnt != 8 {
                return self.shared.error(cid, HidError::InvalidLen);
            }
            return self.init(cid, &data[..8]);
        }
        if cid == BROADCAST_CID || !self.allocated(cid) {
            return self.shared.error(cid, HidError::InvalidChannel);
        }
        if cmd == Command::Cancel as u8 {
            if self.busy_cid() == Some(cid) {
                self.shared.cancel.store(true, Ordering::SeqCst);
            }
            return; // CANCEL never gets a reply of its own
        }
        if let Some((owner, _)) = self.lock
            && owner != cid
        {
            return self.shared.error(cid, HidError::ChannelBusy);
        }
        if self.busy_cid().is_some() {
            return self.shared.error(cid, HidError::ChannelBusy);
        }
        if let Some((assembly, _)) = &self.assembling {
            if assembly.cid() != cid {
                return self.shared.error(cid, HidError::ChannelBusy);
            }
            self.assembling = None;
            return self.shared.error(cid, HidError::InvalidSeq);
        }
        match Reassembler::start(cid, cmd, bcnt, data) {
            Err(ReassemblyError::TooLong(_)) | Err(ReassemblyError::BadSequence { .. }) => {
                self.shared.error(cid, HidError::InvalidLen)
            }
            Ok((assembly, Progress::NeedMore)) => {
                self.assembling = Some((assembly, now + self.config.transaction_timeout));
            }
            Ok((_, Progress::Complete { cmd, payload })) => self.dispatch(cid, cmd, payload, now),
        }
    }

    fn init(&mut self, cid: u32, nonce: &[u8]) {
        let new_cid = if cid == BROADCAST_CID {
            self.allocate()
        } else if self.allocated(cid) {
            // Resynchronise: abandon whatever this channel was doing.
            if self
                .assembling
                .as_ref()
                .is_some_and(|(a, _)| a.cid() == cid)
            {
                self.assembling = None;
            }
            let mut busy = self.shared.busy.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = busy.as_mut().filter(|b| b.cid == cid) {
                b.abandoned = true;
                self.shared.cancel.store(true, Ordering::SeqCst);
            }
            cid
        } else {
            return self.shared.error(cid, HidError::InvalidChannel);
        };
        let (major, minor, build) = self.config.device_version;
        let mut reply = Vec::with_capacity(17);
        reply.extend_from_slice(nonce);
        reply.extend_from_slice(&new_cid.to_be_bytes());
        reply.extend_from_slice(&[2, major, minor, build, capability::WINK | capability::CBOR]);
        self.shared.send(cid, Command::Init, &reply);
    }

    fn dispatch(&mut self, cid: u32, cmd: u8, payload: Vec<u8>, now: Instant) {
        match Command::from_code(cmd) {
            Some(Command::Ping) => self.shared.send(cid, Command::Ping, &payload),
            Some(Command::Wink) => {
                if !payload.is_empty() {
                    return self.shared.error(cid, HidError::InvalidLen);
                }
                self.backend.wink();
                self.shared.send(cid, Command::Wink, &[]);
            }
            Some(Command::Lock) => {
                let [seconds] = payload[..] else {
                    return self.shared.error(cid, HidError::InvalidLen);
                };
                if seconds > 10 {
                    return self.shared.error(cid, HidError::InvalidPar);
                }
                self.lock =
                    (seconds > 0).then(|| (cid, now + Duration::from_secs(u64::from(seconds))));
                self.shared.send(cid, Command::Lock, &[]);
            }
            Some(command @ (Command::Cbor | Command::Msg)) => {
                if payload.is_empty() {
                    return self.shared.error(cid, HidError::InvalidLen);
                }
                *self.shared.busy.lock().unwrap_or_else(|e| e.into_inner()) = Some(Busy {
                    cid,
                    abandoned: false,
                });
                self.shared.cancel.store(false, Ordering::SeqCst);
                let job = Job {
                    cid,
                    cmd: command,
                    payload,
                };
                match &self.jobs {
                    Some(jobs) => {
                        if let Err(mpsc::SendError(job)) = jobs.send(job) {
                            run_job(&self.shared, &*self.backend, job);
                        }
                    }
                    None => run_job(&self.shared, &*self.backend, job),
                }
            }
            _ => self.shared.error(cid, HidError::InvalidCmd),
        }
    }
}

impl CtapHid {
    /// The host went away: a request waiting for the user is cancelled.
    pub fn shutdown(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.assembling = None;
    }
}

impl Drop for CtapHid {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl HidReportDevice for CtapHid {
    fn on_out_report(&mut self, report: &[u8; REPORT_LEN]) {
        self.on_out_report_at(report, Instant::now());
    }

    fn poll(&mut self) {
        self.poll_at(Instant::now());
    }
}
