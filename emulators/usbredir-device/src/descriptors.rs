//! USB descriptors of a full-speed HID device with one interface and interrupt IN and OUT
//! endpoints (64-byte packets, bInterval 1), built from the application's [`HidIdentity`].

/// Address of the interrupt IN endpoint (device to host).
pub const EP_IN: u8 = 0x81;
/// Address of the interrupt OUT endpoint (host to device).
pub const EP_OUT: u8 = 0x01;
/// Max packet size of ep0 and of both interrupt endpoints; also the largest report.
pub const MAX_PACKET: u16 = 64;
/// bInterval of both interrupt endpoints (1 ms at full speed).
pub const INTERVAL: u8 = 1;
/// bConfigurationValue of the only configuration.
pub const CONFIGURATION_VALUE: u8 = 1;
/// bInterfaceNumber of the only interface.
pub const INTERFACE_NUMBER: u8 = 0;
/// USB interface class: HID.
pub const CLASS_HID: u8 = 3;

/// Descriptor type: device.
pub const DT_DEVICE: u8 = 1;
/// Descriptor type: configuration.
pub const DT_CONFIG: u8 = 2;
/// Descriptor type: string.
pub const DT_STRING: u8 = 3;
/// Descriptor type: interface.
pub const DT_INTERFACE: u8 = 4;
/// Descriptor type: endpoint.
pub const DT_ENDPOINT: u8 = 5;
/// Descriptor type: HID.
pub const DT_HID: u8 = 0x21;
/// Descriptor type: HID report.
pub const DT_REPORT: u8 = 0x22;

/// Longest string (UTF-16 code units) a string descriptor can hold.
pub const MAX_STRING_UNITS: usize = 126;

/// What the application decides about its USB identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidIdentity {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice (device release number in BCD, e.g. 0x0100).
    pub device_release: u16,
    /// Manufacturer string (string index 1).
    pub manufacturer: String,
    /// Product string (string index 2).
    pub product: String,
    /// Serial number string (string index 3), if any.
    pub serial_number: Option<String>,
    /// The HID report descriptor.
    pub report_descriptor: Vec<u8>,
}

/// An identity that cannot be turned into valid descriptors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// A string too long for a string descriptor.
    #[error("{which} string is {units} UTF-16 units long, at most {MAX_STRING_UNITS} fit")]
    StringTooLong {
        /// Which string.
        which: &'static str,
        /// Its length in UTF-16 code units.
        units: usize,
    },
    /// An empty report descriptor.
    #[error("the HID report descriptor is empty")]
    EmptyReportDescriptor,
    /// A report descriptor longer than wDescriptorLength can say.
    #[error("the HID report descriptor is {0} bytes, at most 65535")]
    ReportDescriptorTooLong(usize),
}

/// The validated descriptor set; only [`Descriptors::build`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptors {
    identity: HidIdentity,
    device: [u8; 18],
    hid: [u8; 9],
    config: Vec<u8>,
    strings: Vec<Vec<u8>>,
}

/// String descriptor index of the manufacturer.
pub const STRING_MANUFACTURER: u8 = 1;
/// String descriptor index of the product.
pub const STRING_PRODUCT: u8 = 2;
/// String descriptor index of the serial number.
pub const STRING_SERIAL: u8 = 3;
/// The only language: US English.
pub const LANG_ID_EN_US: u16 = 0x0409;

impl Descriptors {
    /// Validates `identity` and builds every descriptor.
    pub fn build(identity: &HidIdentity) -> Result<Descriptors, DescriptorError> {
        let report_len = identity.report_descriptor.len();
        if report_len == 0 {
            return Err(DescriptorError::EmptyReportDescriptor);
        }
        let report_len = u16::try_from(report_len)
            .map_err(|_| DescriptorError::ReportDescriptorTooLong(report_len))?;

        let lang = LANG_ID_EN_US.to_le_bytes();
        let mut strings = vec![vec![4, DT_STRING, lang[0], lang[1]]];
        strings.push(string_descriptor("manufacturer", &identity.manufacturer)?);
        strings.push(string_descriptor("product", &identity.product)?);
        if let Some(serial) = &identity.serial_number {
            strings.push(string_descriptor("serial number", serial)?);
        }

        let vid = identity.vendor_id.to_le_bytes();
        let pid = identity.product_id.to_le_bytes();
        let rel = identity.device_release.to_le_bytes();
        let serial_index = if identity.serial_number.is_some() {
            STRING_SERIAL
        } else {
            0
        };
        let device = [
            18,
            DT_DEVICE,
            0x00,
            0x02, // bcdUSB 2.00
            0,
            0,
            0, // class per interface
            MAX_PACKET as u8,
            vid[0],
            vid[1],
            pid[0],
            pid[1],
            rel[0],
            rel[1],
            STRING_MANUFACTURER,
            STRING_PRODUCT,
            serial_index,
            1, // bNumConfigurations
        ];

        let rlen = report_len.to_le_bytes();
        let hid = [
            9, DT_HID, 0x11, 0x01, // bcdHID 1.11
            0,    // bCountryCode
            1,    // bNumDescriptors
            DT_REPORT, rlen[0], rlen[1],
        ];

        let mps = MAX_PACKET.to_le_bytes();
        let endpoint = |address: u8| [7, DT_ENDPOINT, address, 0x03, mps[0], mps[1], INTERVAL];
        let total: u16 = 9 + 9 + 9 + 7 + 7;
        let total_le = total.to_le_bytes();
        let mut config = vec![
            9,
            DT_CONFIG,
            total_le[0],
            total_le[1],
            1, // bNumInterfaces
            CONFIGURATION_VALUE,
            0,    // iConfiguration
            0x80, // bus powered, no remote wakeup
            50,   // 100 mA
        ];
        config.extend_from_slice(&[
            9,
            DT_INTERFACE,
            INTERFACE_NUMBER,
            0, // bAlternateSetting
            2, // bNumEndpoints
            CLASS_HID,
            0, // no boot subclass
            0, // no protocol
            0, // iInterface
        ]);
        config.extend_from_slice(&hid);
        config.extend_from_slice(&endpoint(EP_IN));
        config.extend_from_slice(&endpoint(EP_OUT));

        Ok(Descriptors {
            identity: identity.clone(),
            device,
            hid,
            config,
            strings,
        })
    }

    /// The identity these descriptors were built from.
    pub fn identity(&self) -> &HidIdentity {
        &self.identity
    }

    /// The 18-byte device descriptor.
    pub fn device(&self) -> &[u8] {
        &self.device
    }

    /// The configuration descriptor with interface, HID and endpoint descriptors.
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// The 9-byte HID class descriptor.
    pub fn hid(&self) -> &[u8] {
        &self.hid
    }

    /// The HID report descriptor.
    pub fn report(&self) -> &[u8] {
        &self.identity.report_descriptor
    }

    /// String descriptor `index` (0 is the language list), if it exists.
    pub fn string(&self, index: u8) -> Option<&[u8]> {
        self.strings.get(usize::from(index)).map(Vec::as_slice)
    }
}

fn string_descriptor(which: &'static str, text: &str) -> Result<Vec<u8>, DescriptorError> {
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.len() > MAX_STRING_UNITS {
        return Err(DescriptorError::StringTooLong {
            which,
            units: units.len(),
        });
    }
    // At most 2 + 2 * 126 = 254 bytes.
    let mut out = vec![(2 + 2 * units.len()) as u8, DT_STRING];
    for unit in units {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> HidIdentity {
        HidIdentity {
            vendor_id: 0x1234,
            product_id: 0xabcd,
            device_release: 0x0102,
            manufacturer: "Keybound".into(),
            product: "Test HID".into(),
            serial_number: Some("0001".into()),
            report_descriptor: vec![0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01, 0xc0],
        }
    }

    #[test]
    fn device_descriptor_fields() {
        let d = Descriptors::build(&identity()).unwrap();
        let dev = d.device();
        assert_eq!(dev[0], 18);
        assert_eq!(dev[7], 64);
        assert_eq!(&dev[8..12], &[0x34, 0x12, 0xcd, 0xab]);
        assert_eq!(&dev[12..14], &[0x02, 0x01]);
        assert_eq!(dev[16], STRING_SERIAL);
    }

    #[test]
    fn config_descriptor_is_consistent() {
        let d = Descriptors::build(&identity()).unwrap();
        let c = d.config();
        assert_eq!(usize::from(u16::from_le_bytes([c[2], c[3]])), c.len());
        // Walk the descriptors: every bLength is consistent and they tile the buffer.
        let mut at = 0;
        let mut types = Vec::new();
        while at < c.len() {
            types.push(c[at + 1]);
            at += usize::from(c[at]);
        }
        assert_eq!(at, c.len());
        assert_eq!(
            types,
            [DT_CONFIG, DT_INTERFACE, DT_HID, DT_ENDPOINT, DT_ENDPOINT]
        );
        // HID descriptor announces the report descriptor length.
        assert_eq!(d.hid()[7], 8);
        // Both endpoints: interrupt, 64 bytes, interval 1.
        assert_eq!(&c[27..34], &[7, 5, EP_IN, 3, 64, 0, 1]);
        assert_eq!(&c[34..41], &[7, 5, EP_OUT, 3, 64, 0, 1]);
    }

    #[test]
    fn strings_are_utf16le() {
        let d = Descriptors::build(&identity()).unwrap();
        assert_eq!(d.string(0), Some(&[4, 3, 0x09, 0x04][..]));
        assert_eq!(
            d.string(3),
            Some(&[10, 3, b'0', 0, b'0', 0, b'0', 0, b'1', 0][..])
        );
        assert_eq!(d.string(4), None);
    }

    #[test]
    fn bad_identities_are_rejected() {
        let mut id = identity();
        id.product = "x".repeat(127);
        assert!(matches!(
            Descriptors::build(&id),
            Err(DescriptorError::StringTooLong {
                which: "product",
                units: 127
            })
        ));
        let mut id = identity();
        id.report_descriptor.clear();
        assert_eq!(
            Descriptors::build(&id),
            Err(DescriptorError::EmptyReportDescriptor)
        );
        let mut id = identity();
        id.serial_number = None;
        let d = Descriptors::build(&id).unwrap();
        assert_eq!(d.device()[16], 0);
        assert_eq!(d.string(3), None);
    }
}
