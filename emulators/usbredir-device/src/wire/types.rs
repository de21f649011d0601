//! Protocol constants: packet types, capabilities, status codes, speeds and endpoint types.

/// Numeric packet type values from usbredirproto.h (only the ones this crate names).
pub mod packet_type {
    /// `usb_redir_hello`.
    pub const HELLO: u32 = 0;
    /// `usb_redir_device_connect`.
    pub const DEVICE_CONNECT: u32 = 1;
    /// `usb_redir_device_disconnect`.
    pub const DEVICE_DISCONNECT: u32 = 2;
    /// `usb_redir_reset`.
    pub const RESET: u32 = 3;
    /// `usb_redir_interface_info`.
    pub const INTERFACE_INFO: u32 = 4;
    /// `usb_redir_ep_info`.
    pub const EP_INFO: u32 = 5;
    /// `usb_redir_set_configuration`.
    pub const SET_CONFIGURATION: u32 = 6;
    /// `usb_redir_get_configuration`.
    pub const GET_CONFIGURATION: u32 = 7;
    /// `usb_redir_configuration_status`.
    pub const CONFIGURATION_STATUS: u32 = 8;
    /// `usb_redir_set_alt_setting`.
    pub const SET_ALT_SETTING: u32 = 9;
    /// `usb_redir_get_alt_setting`.
    pub const GET_ALT_SETTING: u32 = 10;
    /// `usb_redir_alt_setting_status`.
    pub const ALT_SETTING_STATUS: u32 = 11;
    /// `usb_redir_start_iso_stream` (first of the types this crate does not implement).
    pub const START_ISO_STREAM: u32 = 12;
    /// `usb_redir_iso_stream_status`.
    pub const ISO_STREAM_STATUS: u32 = 14;
    /// `usb_redir_start_interrupt_receiving`.
    pub const START_INTERRUPT_RECEIVING: u32 = 15;
    /// `usb_redir_stop_interrupt_receiving`.
    pub const STOP_INTERRUPT_RECEIVING: u32 = 16;
    /// `usb_redir_interrupt_receiving_status`.
    pub const INTERRUPT_RECEIVING_STATUS: u32 = 17;
    /// `usb_redir_alloc_bulk_streams`.
    pub const ALLOC_BULK_STREAMS: u32 = 18;
    /// `usb_redir_bulk_streams_status`.
    pub const BULK_STREAMS_STATUS: u32 = 20;
    /// `usb_redir_cancel_data_packet`.
    pub const CANCEL_DATA_PACKET: u32 = 21;
    /// `usb_redir_filter_reject`.
    pub const FILTER_REJECT: u32 = 22;
    /// `usb_redir_filter_filter`.
    pub const FILTER_FILTER: u32 = 23;
    /// `usb_redir_device_disconnect_ack`.
    pub const DEVICE_DISCONNECT_ACK: u32 = 24;
    /// `usb_redir_start_bulk_receiving`.
    pub const START_BULK_RECEIVING: u32 = 25;
    /// `usb_redir_bulk_receiving_status` (last control-type value).
    pub const BULK_RECEIVING_STATUS: u32 = 27;
    /// `usb_redir_control_packet`.
    pub const CONTROL_PACKET: u32 = 100;
    /// `usb_redir_bulk_packet`.
    pub const BULK_PACKET: u32 = 101;
    /// `usb_redir_iso_packet`.
    pub const ISO_PACKET: u32 = 102;
    /// `usb_redir_interrupt_packet`.
    pub const INTERRUPT_PACKET: u32 = 103;
    /// `usb_redir_buffered_bulk_packet`.
    pub const BUFFERED_BULK_PACKET: u32 = 104;
}

/// One usbredir capability (a bit number in the hello's capability words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Cap {
    /// `usb_redir_cap_bulk_streams`.
    BulkStreams = 0,
    /// `usb_redir_cap_connect_device_version`: device_connect carries bcdDevice.
    ConnectDeviceVersion = 1,
    /// `usb_redir_cap_filter`: filter_reject / filter_filter.
    Filter = 2,
    /// `usb_redir_cap_device_disconnect_ack`.
    DeviceDisconnectAck = 3,
    /// `usb_redir_cap_ep_info_max_packet_size`: ep_info carries max packet sizes.
    EpInfoMaxPacketSize = 4,
    /// `usb_redir_cap_64bits_ids`: packet ids are 64 bits wide after the hellos.
    Ids64 = 5,
    /// `usb_redir_cap_32bits_bulk_length`.
    BulkLength32 = 6,
    /// `usb_redir_cap_bulk_receiving`.
    BulkReceiving = 7,
}

/// A set of capabilities (the first capability word of a hello).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u32);

impl Caps {
    /// The capabilities this device side advertises.
    pub const DEVICE: Caps = Caps(
        1 << Cap::ConnectDeviceVersion as u32
            | 1 << Cap::Filter as u32
            | 1 << Cap::DeviceDisconnectAck as u32
            | 1 << Cap::EpInfoMaxPacketSize as u32
            | 1 << Cap::Ids64 as u32
            | 1 << Cap::BulkLength32 as u32,
    );

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1 << cap as u32) != 0
    }

    /// The capabilities both sides advertise.
    pub fn intersect(self, other: Caps) -> Caps {
        Caps(self.0 & other.0)
    }
}

/// A transfer status (`usb_redir_success` ...), carried as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: success.
    Success,
    /// 1: cancelled.
    Cancelled,
    /// 2: invalid parameters.
    Inval,
    /// 3: I/O error.
    IoError,
    /// 4: stall.
    Stall,
    /// 5: timeout.
    Timeout,
    /// 6: babble.
    Babble,
    /// Any other value, kept as received.
    Other(u8),
}

impl From<u8> for Status {
    fn from(value: u8) -> Self {
        match value {
            0 => Status::Success,
            1 => Status::Cancelled,
            2 => Status::Inval,
            3 => Status::IoError,
            4 => Status::Stall,
            5 => Status::Timeout,
            6 => Status::Babble,
            other => Status::Other(other),
        }
    }
}

impl From<Status> for u8 {
    fn from(status: Status) -> u8 {
        match status {
            Status::Success => 0,
            Status::Cancelled => 1,
            Status::Inval => 2,
            Status::IoError => 3,
            Status::Stall => 4,
            Status::Timeout => 5,
            Status::Babble => 6,
            Status::Other(other) => other,
        }
    }
}

/// Device speed in device_connect.
pub mod speed {
    /// `usb_redir_speed_low`.
    pub const LOW: u8 = 0;
    /// `usb_redir_speed_full`.
    pub const FULL: u8 = 1;
    /// `usb_redir_speed_high`.
    pub const HIGH: u8 = 2;
    /// `usb_redir_speed_super`.
    pub const SUPER: u8 = 3;
}

/// Endpoint transfer types in ep_info.
pub mod ep_type {
    /// `usb_redir_type_control`.
    pub const CONTROL: u8 = 0;
    /// `usb_redir_type_iso`.
    pub const ISO: u8 = 1;
    /// `usb_redir_type_bulk`.
    pub const BULK: u8 = 2;
    /// `usb_redir_type_interrupt`.
    pub const INTERRUPT: u8 = 3;
    /// `usb_redir_type_invalid`: no such endpoint.
    pub const INVALID: u8 = 255;
}

/// Index of an endpoint address in the 32-entry ep_info arrays: OUT endpoints 0–15, IN 16–31.
pub fn ep_index(address: u8) -> usize {
    usize::from(((address & 0x80) >> 3) | (address & 0x0f))
}
