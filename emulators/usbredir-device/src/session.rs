//! The device side of one usbredir connection, as a sans-I/O state machine.
//!
//! Feed it the bytes the host (QEMU) sends with [`Session::receive`], take the bytes to send
//! back with [`Session::take_outgoing`], and the application-level [`Event`]s with
//! [`Session::poll_event`]. Input reports go in with [`Session::send_input_report`]. Nothing
//! here does I/O or blocks, so tests drive it byte for byte.
//!
//! Life of a connection: the session queues its hello at once; when the host's hello arrives
//! it negotiates the header layout and plugs the device (ep_info, interface_info,
//! device_connect, in that order). [`Session::unplug`] sends device_disconnect;
//! [`Session::plug`] plugs it again on the same connection once the host acknowledged.

use std::collections::VecDeque;

use crate::control::{self, HidClassState, Outcome, Setup};
use crate::descriptors::{
    CLASS_HID, CONFIGURATION_VALUE, Descriptors, EP_IN, EP_OUT, INTERFACE_NUMBER, INTERVAL,
    MAX_PACKET,
};
use crate::wire::{
    Cap, Caps, ControlPacket, DeviceConnect, EpInfo, Frame, FrameReader, Hello, InterfaceInfo,
    InterruptPacket, MAX_ENDPOINTS, Message, Negotiated, Sender, Status, WireError, encode_frame,
    ep_index, ep_type, speed,
};

/// Version string this side sends in its hello.
pub const VERSION: &str = concat!("keybound usbredir-device ", env!("CARGO_PKG_VERSION"));

/// Input reports kept while the host is not receiving; beyond this the oldest are dropped.
pub const MAX_QUEUED_INPUT_REPORTS: usize = 256;

/// Something the application must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The device is plugged: the host received device_connect.
    Plugged {
        /// The host's hello version string.
        host_version: String,
    },
    /// An output report from the host (interrupt OUT or SET_REPORT).
    OutputReport(Vec<u8>),
    /// The host reset the device (USB bus reset); queued input reports were dropped.
    Reset,
    /// The host's device filter rejected the device: it is not plugged.
    Rejected,
}

/// Why the session could not go on; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The host sent a malformed packet.
    #[error("malformed packet from the host: {0}")]
    Wire(#[from] WireError),
    /// The host's first packet was not a hello.
    #[error("expected the host's hello, got packet type {packet_type}")]
    ExpectedHello {
        /// What came instead.
        packet_type: u32,
    },
    /// The host sent a message only a device side may send, or one this device never asked for.
    #[error("unexpected packet type {packet_type} from the host")]
    UnexpectedMessage {
        /// The packet type.
        packet_type: u32,
    },
    /// An input report longer than the interrupt IN endpoint's max packet size.
    #[error("input report of {len} bytes exceeds the {MAX_PACKET}-byte maximum")]
    ReportTooLong {
        /// Its length.
        len: usize,
    },
    /// An input report while the device is not plugged.
    #[error("the device is not plugged")]
    NotPlugged,
}

/// Plug state of the device on this connection.
#[derive(Debug)]
enum State {
    /// Our hello is out; waiting for the host's.
    AwaitingHello,
    /// device_connect sent: the device is on the host's bus.
    Plugged(Usb),
    /// device_disconnect sent; until the host acknowledges, its packets still concern the old
    /// device and are dropped. `replug` plugs again on acknowledgement.
    Unplugging {
        /// Plug again once acknowledged.
        replug: bool,
    },
    /// Unplugged (acknowledged, or the host lacks the ack capability), or rejected.
    Unplugged,
}

/// USB-level state of a plugged device.
#[derive(Debug, Default)]
struct Usb {
    configuration: u8,
    hid: HidClassState,
    /// The host polls the IN endpoint (between start and stop_interrupt_receiving).
    receiving: bool,
    /// Input reports waiting for the host to receive.
    queue: VecDeque<Vec<u8>>,
}

/// The device side of one usbredir connection.
#[derive(Debug)]
pub struct Session {
    descriptors: Descriptors,
    negotiated: Negotiated,
    host_version: String,
    reader: FrameReader,
    out: Vec<u8>,
    events: VecDeque<Event>,
    state: State,
    next_id: u64,
    dropped_input_reports: u64,
}

impl Session {
    /// A new session for a fresh connection; its hello is queued for sending.
    pub fn new(descriptors: Descriptors) -> Session {
        let mut session = Session {
            descriptors,
            negotiated: Negotiated::INITIAL,
            host_version: String::new(),
            reader: FrameReader::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            state: State::AwaitingHello,
            next_id: 1,
            dropped_input_reports: 0,
        };
        let hello = Message::Hello(Hello {
            version: VERSION.to_owned(),
            caps: Caps::DEVICE,
        });
        session.send(0, &hello);
        session
    }

    /// Processes bytes received from the host. On error the stream is unusable: close it.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.reader.push(bytes);
        while let Some(frame) = self.reader.next_frame(self.negotiated, Sender::Host)? {
            self.handle(frame)?;
        }
        Ok(())
    }

    /// Takes the bytes to send to the host.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether bytes wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the device is plugged (device_connect sent, not unplugged or rejected).
    pub fn is_plugged(&self) -> bool {
        matches!(self.state, State::Plugged(_))
    }

    /// Whether the host currently polls the interrupt IN endpoint.
    pub fn is_receiving(&self) -> bool {
        matches!(&self.state, State::Plugged(usb) if usb.receiving)
    }

    /// Input reports queued until the host receives.
    pub fn queued_input_reports(&self) -> usize {
        match &self.state {
            State::Plugged(usb) => usb.queue.len(),
            _ => 0,
        }
    }

    /// Input reports dropped because the queue was full.
    pub fn dropped_input_reports(&self) -> u64 {
        self.dropped_input_reports
    }

    /// What the hellos negotiated (initial layout until the host's hello arrived).
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// Sends an input report on the interrupt IN endpoint, or queues it while the host is not
    /// receiving (QEMU drops IN packets it did not ask for).
    pub fn send_input_report(&mut self, report: &[u8]) -> Result<(), SessionError> {
        if report.len() > usize::from(MAX_PACKET) {
            return Err(SessionError::ReportTooLong { len: report.len() });
        }
        let State::Plugged(usb) = &mut self.state else {
            return Err(SessionError::NotPlugged);
        };
        if usb.receiving {
            self.send_in_packet(report.to_vec());
        } else {
            if usb.queue.len() >= MAX_QUEUED_INPUT_REPORTS {
                usb.queue.pop_front();
                self.dropped_input_reports += 1;
                tracing::warn!("input report queue full, dropped the oldest report");
            }
            usb.queue.push_back(report.to_vec());
        }
        Ok(())
    }

    /// Unplugs the device (device_disconnect). The connection stays open.
    pub fn unplug(&mut self) {
        if matches!(self.state, State::Plugged(_)) {
            self.send(0, &Message::DeviceDisconnect);
            self.state = if self.negotiated.caps.has(Cap::DeviceDisconnectAck) {
                State::Unplugging { replug: false }
            } else {
                State::Unplugged
            };
        }
    }

    /// Plugs the device again after [`Session::unplug`] (at once, or when the host has
    /// acknowledged the disconnect). No effect while plugged or before the hellos.
    pub fn plug(&mut self) {
        match &mut self.state {
            State::Unplugged => self.attach(),
            State::Unplugging { replug } => *replug = true,
            State::AwaitingHello | State::Plugged(_) => {}
        }
    }

    fn handle(&mut self, frame: Frame) -> Result<(), SessionError> {
        let Frame { id, message } = frame;
        tracing::trace!(id, ?message, "from host");
        match (&mut self.state, message) {
            (State::AwaitingHello, Message::Hello(hello)) => {
                self.negotiated = Negotiated::from_hellos(Caps::DEVICE, hello.caps);
                tracing::debug!(host = %hello.version, caps = hello.caps.0, "host hello");
                self.host_version = hello.version;
                self.attach();
            }
            (State::AwaitingHello, other) => {
                return Err(SessionError::ExpectedHello {
                    packet_type: other.packet_type(),
                });
            }
            (State::Unplugging { replug }, Message::DeviceDisconnectAck) => {
                let replug = *replug;
                self.state = State::Unplugged;
                if replug {
                    self.attach();
                }
            }
            // Packets for the unplugged device, or ones we cannot act on while unplugged.
            (State::Unplugging { .. } | State::Unplugged, message) => {
                Self::check_host_message(&message)?;
                tracing::debug!(
                    packet_type = message.packet_type(),
                    "dropped: device unplugged"
                );
            }
            (State::Plugged(_), message) => {
                Self::check_host_message(&message)?;
                self.handle_plugged(id, message);
            }
        }
        Ok(())
    }

    /// Rejects messages a host never sends to a device.
    fn check_host_message(message: &Message) -> Result<(), SessionError> {
        match message {
            Message::Reset
            | Message::SetConfiguration { .. }
            | Message::GetConfiguration
            | Message::SetAltSetting { .. }
            | Message::GetAltSetting { .. }
            | Message::StartInterruptReceiving { .. }
            | Message::StopInterruptReceiving { .. }
            | Message::CancelDataPacket
            | Message::FilterReject
            | Message::FilterFilter(_)
            | Message::DeviceDisconnectAck
            | Message::ControlPacket(_)
            | Message::InterruptPacket(_) => Ok(()),
            other => Err(SessionError::UnexpectedMessage {
                packet_type: other.packet_type(),
            }),
        }
    }

    fn handle_plugged(&mut self, id: u64, message: Message) {
        let State::Plugged(usb) = &mut self.state else {
            return;
        };
        match message {
            Message::Reset => {
                usb.configuration = 0;
                usb.hid = HidClassState::default();
                usb.queue.clear();
                self.events.push_back(Event::Reset);
            }
            Message::SetConfiguration { configuration } => {
                let status = if configuration == 0 || configuration == CONFIGURATION_VALUE {
                    usb.configuration = configuration;
                    usb.queue.clear();
                    Status::Success
                } else {
                    Status::Stall
                };
                let configuration = usb.configuration;
                self.send(
                    id,
                    &Message::ConfigurationStatus {
                        status,
                        configuration,
                    },
                );
            }
            Message::GetConfiguration => {
                let configuration = usb.configuration;
                self.send(
                    id,
                    &Message::ConfigurationStatus {
                        status: Status::Success,
                        configuration,
                    },
                );
            }
            Message::SetAltSetting { interface, alt } => {
                let ok = usb.configuration != 0 && interface == INTERFACE_NUMBER && alt == 0;
                let status = if ok { Status::Success } else { Status::Stall };
                self.send(
                    id,
                    &Message::AltSettingStatus {
                        status,
                        interface,
                        alt: 0,
                    },
                );
            }
            Message::GetAltSetting { interface } => {
                let ok = usb.configuration != 0 && interface == INTERFACE_NUMBER;
                let (status, alt) = if ok {
                    (Status::Success, 0)
                } else {
                    (Status::Stall, 0xff)
                };
                self.send(
                    id,
                    &Message::AltSettingStatus {
                        status,
                        interface,
                        alt,
                    },
                );
            }
            Message::StartInterruptReceiving { endpoint } => {
                let status = if endpoint == EP_IN {
                    usb.receiving = true;
                    Status::Success
                } else {
                    Status::Inval
                };
                let queued: Vec<Vec<u8>> = if endpoint == EP_IN {
                    usb.queue.drain(..).collect()
                } else {
                    Vec::new()
                };
                self.send(id, &Message::InterruptReceivingStatus { status, endpoint });
                for report in queued {
                    self.send_in_packet(report);
                }
            }
            Message::StopInterruptReceiving { endpoint } => {
                let status = if endpoint == EP_IN {
                    usb.receiving = false;
                    Status::Success
                } else {
                    Status::Inval
                };
                self.send(id, &Message::InterruptReceivingStatus { status, endpoint });
            }
            Message::CancelDataPacket => {
                // Every data packet is answered as soon as it arrives: nothing to cancel.
                tracing::debug!(id, "cancel for an already completed packet");
            }
            Message::FilterReject => {
                tracing::warn!("the host's usb-redir filter rejected the device");
                self.state = State::Unplugged;
                self.events.push_back(Event::Rejected);
            }
            Message::FilterFilter(_) | Message::DeviceDisconnectAck => {}
            Message::ControlPacket(cp) => self.handle_control(id, cp),
            Message::InterruptPacket(ip) => self.handle_interrupt_out(id, ip),
            // Filtered out by check_host_message.
            _ => {}
        }
    }

    fn handle_control(&mut self, id: u64, cp: ControlPacket) {
        let State::Plugged(usb) = &mut self.state else {
            return;
        };
        let dir_in = cp.request_type & 0x80 != 0;
        let setup = Setup {
            request_type: cp.request_type,
            request: cp.request,
            value: cp.value,
            index: cp.index,
            length: cp.length,
        };
        // The endpoint field must agree with the direction bit and name ep0.
        let outcome = if cp.endpoint != (cp.request_type & 0x80) {
            Outcome::Stall
        } else {
            control::handle(setup, &cp.data, &self.descriptors, &mut usb.hid)
        };
        let mut report = None;
        let (status, length, data) = match outcome {
            // Descriptor data is at most 64 KiB - 1: cut to wLength.
            Outcome::Data(data) if dir_in => (Status::Success, data.len() as u16, data),
            Outcome::Ack if !dir_in => (Status::Success, cp.length, Vec::new()),
            Outcome::OutputReport(bytes) if !dir_in => {
                report = Some(bytes);
                (Status::Success, cp.length, Vec::new())
            }
            _ => (Status::Stall, 0, Vec::new()),
        };
        if let Some(report) = report {
            self.events.push_back(Event::OutputReport(report));
        }
        let answer = ControlPacket {
            endpoint: cp.endpoint,
            request: cp.request,
            request_type: cp.request_type,
            status,
            value: cp.value,
            index: cp.index,
            length,
            data,
        };
        self.send(id, &Message::ControlPacket(answer));
    }

    fn handle_interrupt_out(&mut self, id: u64, ip: InterruptPacket) {
        let State::Plugged(usb) = &self.state else {
            return;
        };
        let status = if ip.endpoint != EP_OUT || usb.configuration == 0 {
            Status::Stall
        } else if ip.data.len() > usize::from(MAX_PACKET) {
            Status::Babble
        } else {
            Status::Success
        };
        let answer = InterruptPacket {
            endpoint: ip.endpoint,
            status,
            length: if status == Status::Success {
                ip.length
            } else {
                0
            },
            data: Vec::new(),
        };
        self.send(id, &Message::InterruptPacket(answer));
        if status == Status::Success {
            self.events.push_back(Event::OutputReport(ip.data));
        } else {
            tracing::warn!(
                endpoint = ip.endpoint,
                len = ip.data.len(),
                "interrupt OUT refused"
            );
        }
    }

    /// ep_info, interface_info, then device_connect: QEMU needs them in this order.
    fn attach(&mut self) {
        let mut ep = EpInfo {
            ep_type: [ep_type::INVALID; MAX_ENDPOINTS],
            interval: [0; MAX_ENDPOINTS],
            interface: [0; MAX_ENDPOINTS],
            max_packet_size: [0; MAX_ENDPOINTS],
            max_streams: [0; MAX_ENDPOINTS],
        };
        for (address, kind, interval) in [
            (0x00, ep_type::CONTROL, 0),
            (0x80, ep_type::CONTROL, 0),
            (EP_OUT, ep_type::INTERRUPT, INTERVAL),
            (EP_IN, ep_type::INTERRUPT, INTERVAL),
        ] {
            let i = ep_index(address);
            ep.ep_type[i] = kind;
            ep.interval[i] = interval;
            ep.interface[i] = INTERFACE_NUMBER;
            ep.max_packet_size[i] = MAX_PACKET;
        }
        let mut interfaces = InterfaceInfo {
            interface_count: 1,
            interface: [0; MAX_ENDPOINTS],
            interface_class: [0; MAX_ENDPOINTS],
            interface_subclass: [0; MAX_ENDPOINTS],
            interface_protocol: [0; MAX_ENDPOINTS],
        };
        interfaces.interface[0] = INTERFACE_NUMBER;
        interfaces.interface_class[0] = CLASS_HID;
        let identity = self.descriptors.identity();
        let connect = DeviceConnect {
            speed: speed::FULL,
            device_class: 0,
            device_subclass: 0,
            device_protocol: 0,
            vendor_id: identity.vendor_id,
            product_id: identity.product_id,
            device_version_bcd: identity.device_release,
        };
        self.send(0, &Message::EpInfo(ep));
        self.send(0, &Message::InterfaceInfo(interfaces));
        self.send(0, &Message::DeviceConnect(connect));
        self.state = State::Plugged(Usb::default());
        self.events.push_back(Event::Plugged {
            host_version: self.host_version.clone(),
        });
    }

    fn send_in_packet(&mut self, report: Vec<u8>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let packet = InterruptPacket {
            endpoint: EP_IN,
            status: Status::Success,
            // Reports are at most MAX_PACKET bytes (checked by send_input_report).
            length: report.len() as u16,
            data: report,
        };
        self.send(id, &Message::InterruptPacket(packet));
    }

    fn send(&mut self, id: u64, message: &Message) {
        tracing::trace!(id, ?message, "to host");
        // Every message this session builds is representable: lengths come from bounded
        // descriptors and reports, and packet types are the implemented ones.
        if let Err(err) = encode_frame(self.negotiated, id, message, &mut self.out) {
            tracing::error!(%err, "could not encode a message");
        }
    }
}
