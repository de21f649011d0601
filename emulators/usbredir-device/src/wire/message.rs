//! Typed usbredir messages and their little-endian packed bodies (the bytes after the header).

use super::error::WireError;
use super::types::{Cap, Caps, Status, packet_type as pt};

/// Length of the version string field in a hello.
pub const VERSION_LEN: usize = 64;
/// Number of entries in the ep_info and interface_info arrays.
pub const MAX_ENDPOINTS: usize = 32;

/// Who sent a message: it decides which data packets may carry data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The usb-guest side (QEMU's `usb-redir` device): sends requests.
    Host,
    /// The usb-host side (this crate): owns the device and answers.
    Device,
}

/// `usb_redir_hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Free-form version string (at most 63 bytes on the wire; longer strings are cut).
    pub version: String,
    /// The sender's capabilities (first capability word).
    pub caps: Caps,
}

/// `usb_redir_device_connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConnect {
    /// One of [`super::speed`].
    pub speed: u8,
    /// bDeviceClass.
    pub device_class: u8,
    /// bDeviceSubClass.
    pub device_subclass: u8,
    /// bDeviceProtocol.
    pub device_protocol: u8,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice; on the wire only when both sides have `connect_device_version`.
    pub device_version_bcd: u16,
}

/// `usb_redir_interface_info`: the interfaces of the active configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Number of valid entries (at most 32).
    pub interface_count: u32,
    /// bInterfaceNumber per entry.
    pub interface: [u8; MAX_ENDPOINTS],
    /// bInterfaceClass per entry.
    pub interface_class: [u8; MAX_ENDPOINTS],
    /// bInterfaceSubClass per entry.
    pub interface_subclass: [u8; MAX_ENDPOINTS],
    /// bInterfaceProtocol per entry.
    pub interface_protocol: [u8; MAX_ENDPOINTS],
}

/// `usb_redir_ep_info`: per endpoint index (see [`super::ep_index`]) its type, interval,
/// interface and max packet size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpInfo {
    /// One of [`super::ep_type`] per endpoint.
    pub ep_type: [u8; MAX_ENDPOINTS],
    /// bInterval per endpoint.
    pub interval: [u8; MAX_ENDPOINTS],
    /// Interface number per endpoint.
    pub interface: [u8; MAX_ENDPOINTS],
    /// wMaxPacketSize per endpoint (on the wire with `ep_info_max_packet_size`).
    pub max_packet_size: [u16; MAX_ENDPOINTS],
    /// Max bulk streams per endpoint (on the wire with `bulk_streams`).
    pub max_streams: [u32; MAX_ENDPOINTS],
}

/// `usb_redir_control_packet`: a control transfer (request from the host, answer from the
/// device with the same id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// 0x80 for device-to-host transfers, 0x00 otherwise.
    pub endpoint: u8,
    /// bRequest.
    pub request: u8,
    /// bmRequestType.
    pub request_type: u8,
    /// Completion status (answers only).
    pub status: Status,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
    /// Requested length (requests) or transferred length (answers).
    pub length: u16,
    /// Data stage bytes: host-to-device requests and device-to-host answers only.
    pub data: Vec<u8>,
}

/// `usb_redir_interrupt_packet`: interrupt OUT data from the host (answered with a status),
/// or interrupt IN data from the device while the host is receiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptPacket {
    /// Endpoint address (bit 7 set for IN).
    pub endpoint: u8,
    /// Completion status.
    pub status: Status,
    /// Transfer length.
    pub length: u16,
    /// Data: OUT packets from the host, IN packets from the device.
    pub data: Vec<u8>,
}

/// One usbredir message (body of one packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `hello`: first message of each side.
    Hello(Hello),
    /// `device_connect`: the device is plugged.
    DeviceConnect(DeviceConnect),
    /// `device_disconnect`: the device is unplugged.
    DeviceDisconnect,
    /// `reset`: USB bus reset of the device.
    Reset,
    /// `interface_info`.
    InterfaceInfo(InterfaceInfo),
    /// `ep_info`.
    EpInfo(EpInfo),
    /// `set_configuration`.
    SetConfiguration {
        /// bConfigurationValue.
        configuration: u8,
    },
    /// `get_configuration`.
    GetConfiguration,
    /// `configuration_status`: answer to set/get_configuration.
    ConfigurationStatus {
        /// Completion status.
        status: Status,
        /// Active configuration.
        configuration: u8,
    },
    /// `set_alt_setting`.
    SetAltSetting {
        /// bInterfaceNumber.
        interface: u8,
        /// bAlternateSetting.
        alt: u8,
    },
    /// `get_alt_setting`.
    GetAltSetting {
        /// bInterfaceNumber.
        interface: u8,
    },
    /// `alt_setting_status`: answer to set/get_alt_setting.
    AltSettingStatus {
        /// Completion status.
        status: Status,
        /// bInterfaceNumber.
        interface: u8,
        /// Active alternate setting.
        alt: u8,
    },
    /// `start_interrupt_receiving`: the host polls this IN endpoint from now on.
    StartInterruptReceiving {
        /// Endpoint address.
        endpoint: u8,
    },
    /// `stop_interrupt_receiving`: the host no longer polls this IN endpoint.
    StopInterruptReceiving {
        /// Endpoint address.
        endpoint: u8,
    },
    /// `interrupt_receiving_status`.
    InterruptReceivingStatus {
        /// Status.
        status: Status,
        /// Endpoint address.
        endpoint: u8,
    },
    /// `cancel_data_packet`: cancel the data packet with this packet's id.
    CancelDataPacket,
    /// `filter_reject`: the host's filter rejected the device.
    FilterReject,
    /// `filter_filter`: filter rules (a NUL-terminated string, kept raw without the NUL).
    FilterFilter(Vec<u8>),
    /// `device_disconnect_ack`.
    DeviceDisconnectAck,
    /// `control_packet`.
    ControlPacket(ControlPacket),
    /// `interrupt_packet`.
    InterruptPacket(InterruptPacket),
    /// A valid packet type this crate does not implement (iso, bulk, streams); body skipped.
    Unsupported {
        /// The packet type.
        packet_type: u32,
    },
}

/// Length of the fixed type header of `device_connect` under `caps`.
fn device_connect_len(caps: Caps) -> usize {
    if caps.has(Cap::ConnectDeviceVersion) {
        10
    } else {
        8
    }
}

/// Length of the ep_info body under `caps`.
fn ep_info_len(caps: Caps) -> usize {
    let mut len = 3 * MAX_ENDPOINTS;
    if caps.has(Cap::EpInfoMaxPacketSize) {
        len += 2 * MAX_ENDPOINTS;
        if caps.has(Cap::BulkStreams) {
            len += 4 * MAX_ENDPOINTS;
        }
    }
    len
}

const INTERFACE_INFO_LEN: usize = 4 + 4 * MAX_ENDPOINTS;
const CONTROL_HEADER_LEN: usize = 10;
const INTERRUPT_HEADER_LEN: usize = 4;

impl Message {
    /// The packet type number of this message.
    pub fn packet_type(&self) -> u32 {
        match self {
            Message::Hello(_) => pt::HELLO,
            Message::DeviceConnect(_) => pt::DEVICE_CONNECT,
            Message::DeviceDisconnect => pt::DEVICE_DISCONNECT,
            Message::Reset => pt::RESET,
            Message::InterfaceInfo(_) => pt::INTERFACE_INFO,
            Message::EpInfo(_) => pt::EP_INFO,
            Message::SetConfiguration { .. } => pt::SET_CONFIGURATION,
            Message::GetConfiguration => pt::GET_CONFIGURATION,
            Message::ConfigurationStatus { .. } => pt::CONFIGURATION_STATUS,
            Message::SetAltSetting { .. } => pt::SET_ALT_SETTING,
            Message::GetAltSetting { .. } => pt::GET_ALT_SETTING,
            Message::AltSettingStatus { .. } => pt::ALT_SETTING_STATUS,
            Message::StartInterruptReceiving { .. } => pt::START_INTERRUPT_RECEIVING,
            Message::StopInterruptReceiving { .. } => pt::STOP_INTERRUPT_RECEIVING,
            Message::InterruptReceivingStatus { .. } => pt::INTERRUPT_RECEIVING_STATUS,
            Message::CancelDataPacket => pt::CANCEL_DATA_PACKET,
            Message::FilterReject => pt::FILTER_REJECT,
            Message::FilterFilter(_) => pt::FILTER_FILTER,
            Message::DeviceDisconnectAck => pt::DEVICE_DISCONNECT_ACK,
            Message::ControlPacket(_) => pt::CONTROL_PACKET,
            Message::InterruptPacket(_) => pt::INTERRUPT_PACKET,
            Message::Unsupported { packet_type } => *packet_type,
        }
    }

    /// Appends the body of this message to `out`, laid out for the negotiated `caps`.
    ///
    /// Fails for messages that cannot be represented (data longer than the 16-bit length
    /// field, a data length that disagrees with the length field, unsupported types).
    pub fn encode_body(&self, caps: Caps, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Message::Hello(hello) => {
                let mut version = [0u8; VERSION_LEN];
                let bytes = hello.version.as_bytes();
                let n = bytes.len().min(VERSION_LEN - 1);
                version[..n].copy_from_slice(&bytes[..n]);
                out.extend_from_slice(&version);
                out.extend_from_slice(&hello.caps.0.to_le_bytes());
            }
            Message::DeviceConnect(dc) => {
                out.extend_from_slice(&[
                    dc.speed,
                    dc.device_class,
                    dc.device_subclass,
                    dc.device_protocol,
                ]);
                out.extend_from_slice(&dc.vendor_id.to_le_bytes());
                out.extend_from_slice(&dc.product_id.to_le_bytes());
                if caps.has(Cap::ConnectDeviceVersion) {
                    out.extend_from_slice(&dc.device_version_bcd.to_le_bytes());
                }
            }
            Message::DeviceDisconnect
            | Message::Reset
            | Message::GetConfiguration
            | Message::CancelDataPacket
            | Message::FilterReject
            | Message::DeviceDisconnectAck => {}
            Message::InterfaceInfo(info) => {
                out.extend_from_slice(&info.interface_count.to_le_bytes());
                out.extend_from_slice(&info.interface);
                out.extend_from_slice(&info.interface_class);
                out.extend_from_slice(&info.interface_subclass);
                out.extend_from_slice(&info.interface_protocol);
            }
            Message::EpInfo(info) => {
                out.extend_from_slice(&info.ep_type);
                out.extend_from_slice(&info.interval);
                out.extend_from_slice(&info.interface);
                if caps.has(Cap::EpInfoMaxPacketSize) {
                    for mps in info.max_packet_size {
                        out.extend_from_slice(&mps.to_le_bytes());
                    }
                    if caps.has(Cap::BulkStreams) {
                        for streams in info.max_streams {
                            out.extend_from_slice(&streams.to_le_bytes());
                        }
                    }
                }
            }
            Message::SetConfiguration { configuration } => out.push(*configuration),
            Message::ConfigurationStatus {
                status,
                configuration,
            } => out.extend_from_slice(&[u8::from(*status), *configuration]),
            Message::SetAltSetting { interface, alt } => out.extend_from_slice(&[*interface, *alt]),
            Message::GetAltSetting { interface } => out.push(*interface),
            Message::AltSettingStatus {
                status,
                interface,
                alt,
            } => out.extend_from_slice(&[u8::from(*status), *interface, *alt]),
            Message::StartInterruptReceiving { endpoint }
            | Message::StopInterruptReceiving { endpoint } => out.push(*endpoint),
            Message::InterruptReceivingStatus { status, endpoint } => {
                out.extend_from_slice(&[u8::from(*status), *endpoint]);
            }
            Message::FilterFilter(rules) => {
                out.extend_from_slice(rules);
                out.push(0);
            }
            Message::ControlPacket(cp) => {
                check_data_len(pt::CONTROL_PACKET, cp.length, &cp.data)?;
                out.extend_from_slice(&[
                    cp.endpoint,
                    cp.request,
                    cp.request_type,
                    u8::from(cp.status),
                ]);
                out.extend_from_slice(&cp.value.to_le_bytes());
                out.extend_from_slice(&cp.index.to_le_bytes());
                out.extend_from_slice(&cp.length.to_le_bytes());
                out.extend_from_slice(&cp.data);
            }
            Message::InterruptPacket(ip) => {
                check_data_len(pt::INTERRUPT_PACKET, ip.length, &ip.data)?;
                out.extend_from_slice(&[ip.endpoint, u8::from(ip.status)]);
                out.extend_from_slice(&ip.length.to_le_bytes());
                out.extend_from_slice(&ip.data);
            }
            Message::Unsupported { packet_type } => {
                return Err(WireError::UnsupportedEncode {
                    packet_type: *packet_type,
                });
            }
        }
        Ok(())
    }

    /// Decodes the body of a packet of type `packet_type` sent by `sender`, laid out for the
    /// negotiated `caps`. Never panics; every inconsistency is an error.
    pub fn decode_body(
        packet_type: u32,
        body: &[u8],
        caps: Caps,
        sender: Sender,
    ) -> Result<Message, WireError> {
        let fixed = |len: usize| -> Result<&[u8], WireError> {
            if body.len() == len {
                Ok(body)
            } else {
                Err(WireError::BadLength {
                    packet_type,
                    expected: len,
                    got: body.len(),
                })
            }
        };
        let msg = match packet_type {
            pt::HELLO => {
                if body.len() < VERSION_LEN {
                    return Err(WireError::BadLength {
                        packet_type,
                        expected: VERSION_LEN,
                        got: body.len(),
                    });
                }
                let (version, caps_bytes) = body.split_at(VERSION_LEN);
                let end = version.iter().position(|&b| b == 0).unwrap_or(VERSION_LEN);
                let version = String::from_utf8_lossy(&version[..end]).into_owned();
                // Only the first capability word is meaningful today; a missing word means
                // no capabilities, extra words and trailing bytes are ignored (as
                // usbredirparser does).
                let caps = match caps_bytes.first_chunk::<4>() {
                    Some(word) => Caps(u32::from_le_bytes(*word)),
                    None => Caps(0),
                };
                Message::Hello(Hello { version, caps })
            }
            pt::DEVICE_CONNECT => {
                let b = fixed(device_connect_len(caps))?;
                Message::DeviceConnect(DeviceConnect {
                    speed: b[0],
                    device_class: b[1],
                    device_subclass: b[2],
                    device_protocol: b[3],
                    vendor_id: le16(b, 4),
                    product_id: le16(b, 6),
                    device_version_bcd: if b.len() >= 10 { le16(b, 8) } else { 0 },
                })
            }
            pt::DEVICE_DISCONNECT => fixed(0).map(|_| Message::DeviceDisconnect)?,
            pt::RESET => fixed(0).map(|_| Message::Reset)?,
            pt::INTERFACE_INFO => {
                let b = fixed(INTERFACE_INFO_LEN)?;
                let interface_count = le32(b, 0);
                if interface_count as usize > MAX_ENDPOINTS {
                    return Err(WireError::BadInterfaceCount(interface_count));
                }
                Message::InterfaceInfo(InterfaceInfo {
                    interface_count,
                    interface: array32(b, 4),
                    interface_class: array32(b, 4 + MAX_ENDPOINTS),
                    interface_subclass: array32(b, 4 + 2 * MAX_ENDPOINTS),
                    interface_protocol: array32(b, 4 + 3 * MAX_ENDPOINTS),
                })
            }
            pt::EP_INFO => {
                let b = fixed(ep_info_len(caps))?;
                let mut info = EpInfo {
                    ep_type: array32(b, 0),
                    interval: array32(b, MAX_ENDPOINTS),
                    interface: array32(b, 2 * MAX_ENDPOINTS),
                    max_packet_size: [0; MAX_ENDPOINTS],
                    max_streams: [0; MAX_ENDPOINTS],
                };
                if caps.has(Cap::EpInfoMaxPacketSize) {
                    let base = 3 * MAX_ENDPOINTS;
                    for (i, mps) in info.max_packet_size.iter_mut().enumerate() {
                        *mps = le16(b, base + 2 * i);
                    }
                    if caps.has(Cap::BulkStreams) {
                        let base = 5 * MAX_ENDPOINTS;
                        for (i, streams) in info.max_streams.iter_mut().enumerate() {
                            *streams = le32(b, base + 4 * i);
                        }
                    }
                }
                Message::EpInfo(info)
            }
            pt::SET_CONFIGURATION => Message::SetConfiguration {
                configuration: fixed(1)?[0],
            },
            pt::GET_CONFIGURATION => fixed(0).map(|_| Message::GetConfiguration)?,
            pt::CONFIGURATION_STATUS => {
                let b = fixed(2)?;
                Message::ConfigurationStatus {
                    status: Status::from(b[0]),
                    configuration: b[1],
                }
            }
            pt::SET_ALT_SETTING => {
                let b = fixed(2)?;
                Message::SetAltSetting {
                    interface: b[0],
                    alt: b[1],
                }
            }
            pt::GET_ALT_SETTING => Message::GetAltSetting {
                interface: fixed(1)?[0],
            },
            pt::ALT_SETTING_STATUS => {
                let b = fixed(3)?;
                Message::AltSettingStatus {
                    status: Status::from(b[0]),
                    interface: b[1],
                    alt: b[2],
                }
            }
            pt::START_INTERRUPT_RECEIVING => Message::StartInterruptReceiving {
                endpoint: fixed(1)?[0],
            },
            pt::STOP_INTERRUPT_RECEIVING => Message::StopInterruptReceiving {
                endpoint: fixed(1)?[0],
            },
            pt::INTERRUPT_RECEIVING_STATUS => {
                let b = fixed(2)?;
                Message::InterruptReceivingStatus {
                    status: Status::from(b[0]),
                    endpoint: b[1],
                }
            }
            pt::CANCEL_DATA_PACKET => fixed(0).map(|_| Message::CancelDataPacket)?,
            pt::FILTER_REJECT => fixed(0).map(|_| Message::FilterReject)?,
            pt::FILTER_FILTER => match body.split_last() {
                Some((0, rules)) => Message::FilterFilter(rules.to_vec()),
                _ => return Err(WireError::UnterminatedFilter),
            },
            pt::DEVICE_DISCONNECT_ACK => fixed(0).map(|_| Message::DeviceDisconnectAck)?,
            pt::CONTROL_PACKET => {
                let (h, data) = split_header(packet_type, body, CONTROL_HEADER_LEN)?;
                let endpoint = h[0];
                let length = le16(h, 8);
                // Data flows host-to-device for OUT requests and device-to-host in IN answers.
                let carries_data = (endpoint & 0x80 != 0) == (sender == Sender::Device);
                check_direction(packet_type, endpoint, length, data, carries_data)?;
                Message::ControlPacket(ControlPacket {
                    endpoint,
                    request: h[1],
                    request_type: h[2],
                    status: Status::from(h[3]),
                    value: le16(h, 4),
                    index: le16(h, 6),
                    length,
                    data: data.to_vec(),
                })
            }
            pt::INTERRUPT_PACKET => {
                let (h, data) = split_header(packet_type, body, INTERRUPT_HEADER_LEN)?;
                let endpoint = h[0];
                let length = le16(h, 2);
                let is_in = endpoint & 0x80 != 0;
                if sender == Sender::Host && is_in {
                    // The host reads IN endpoints with start_interrupt_receiving only.
                    return Err(WireError::WrongDirection {
                        packet_type,
                        endpoint,
                    });
                }
                check_direction(
                    packet_type,
                    endpoint,
                    length,
                    data,
                    is_in == (sender == Sender::Device),
                )?;
                Message::InterruptPacket(InterruptPacket {
                    endpoint,
                    status: Status::from(h[1]),
                    length,
                    data: data.to_vec(),
                })
            }
            pt::START_ISO_STREAM..=pt::BULK_RECEIVING_STATUS
            | pt::BULK_PACKET
            | pt::ISO_PACKET
            | pt::BUFFERED_BULK_PACKET => Message::Unsupported { packet_type },
            other => return Err(WireError::UnknownType(other)),
        };
        Ok(msg)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn array32(b: &[u8], at: usize) -> [u8; MAX_ENDPOINTS] {
    let mut out = [0u8; MAX_ENDPOINTS];
    out.copy_from_slice(&b[at..at + MAX_ENDPOINTS]);
    out
}

fn split_header(packet_type: u32, body: &[u8], len: usize) -> Result<(&[u8], &[u8]), WireError> {
    if body.len() < len {
        return Err(WireError::BadLength {
            packet_type,
            expected: len,
            got: body.len(),
        });
    }
    Ok(body.split_at(len))
}

fn check_direction(
    packet_type: u32,
    endpoint: u8,
    length: u16,
    data: &[u8],
    carries_data: bool,
) -> Result<(), WireError> {
    if carries_data {
        if data.len() != usize::from(length) {
            return Err(WireError::DataLengthMismatch {
                packet_type,
                header: length,
                data: data.len(),
            });
        }
    } else if !data.is_empty() {
        return Err(WireError::UnexpectedData {
            packet_type,
            endpoint,
            data: data.len(),
        });
    }
    Ok(())
}

fn check_data_len(packet_type: u32, length: u16, data: &[u8]) -> Result<(), WireError> {
    if !data.is_empty() && data.len() != usize::from(length) {
        return Err(WireError::DataLengthMismatch {
            packet_type,
            header: length,
            data: data.len(),
        });
    }
    Ok(())
}
