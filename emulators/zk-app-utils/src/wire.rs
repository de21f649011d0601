//! The guest wire protocol between `libzk_app_utils.so` (host software, in the guest) and the
//! module (`zymkey-emu`, on the host side of a virtio-serial port).
//!
//! Framing: every frame is a 4-byte big-endian body length, then the body (1 ..= [`MAX_FRAME`]
//! bytes). The first body byte is the message kind. Integers are big-endian; byte strings are a
//! `u32` length and the bytes; booleans are one byte, 0 or 1; anything else is malformed.
//!
//! Session: the caller opens the port and sends [`Hello`] (magic, version range, a fresh nonce);
//! the module answers [`FromModule::HelloReply`] with the chosen version and the same nonce. Then
//! each [`FromModule::Response`] answers one [`ToModule::Request`] with the same id. A caller
//! discards frames that do not carry its nonce or id (left over from a caller that died), so a
//! port shared by successive processes never mixes answers. The module resynchronises on a
//! Hello after a framing error (see [`FrameDecoder`]).

use zeroize::Zeroizing;

use crate::codes;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest frame body accepted, in bytes.
pub const MAX_FRAME: usize = 64 * 1024;
/// The largest plaintext `zkLockData*` accepts, in bytes (ours; Zymbit documents none).
pub const MAX_LOCK_PLAINTEXT: usize = 8192;
/// The largest number of random bytes one request returns (the library splits larger asks).
pub const MAX_RANDOM_CHUNK: usize = 8192;
/// The magic that opens every Hello body after the kind byte.
pub const HELLO_MAGIC: [u8; 4] = *b"KBZK";
/// Body length of a Hello: kind, magic, min and max version, nonce.
pub const HELLO_BODY_LEN: usize = 1 + 4 + 2 + 2 + 8;
/// Number of ECDSA key slots on a ZYMKEY4.
pub const ECDSA_SLOTS: i32 = 3;

const KIND_HELLO: u8 = 0x01;
const KIND_REQUEST: u8 = 0x02;
const KIND_HELLO_REPLY: u8 = 0x81;
const KIND_RESPONSE: u8 = 0x82;

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body ended inside a field.
    #[error("message truncated")]
    Truncated,
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// An empty body.
    #[error("empty message")]
    Empty,
    /// An unknown message kind.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// An unknown operation code.
    #[error("unknown operation {0:#04x}")]
    UnknownOp(u8),
    /// An unknown reply tag.
    #[error("unknown reply tag {0:#04x}")]
    UnknownReply(u8),
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean byte {0:#04x}")]
    BadBool(u8),
    /// A length field over its limit.
    #[error("length {len} exceeds the limit {max}")]
    TooLong {
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A Hello without the protocol magic.
    #[error("hello without the protocol magic")]
    BadMagic,
    /// A text field that is not UTF-8.
    #[error("text is not UTF-8")]
    BadUtf8,
    /// A response status that is positive.
    #[error("invalid status {0}")]
    BadStatus(i32),
}

/// A cursor over a message body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A big-endian `i32`.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A boolean byte (0 or 1).
    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(WireError::BadBool(b)),
        }
    }
    /// A `u32`-length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<Vec<u8>, WireError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(WireError::TooLong { len, max });
        }
        Ok(self.take(len)?.to_vec())
    }
    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Builds a message body.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A boolean byte.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    /// The body built so far.
    pub fn into_body(self) -> Vec<u8> {
        self.buf
    }
}

/// Wraps a body into a frame (length prefix).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The opening message of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the caller speaks.
    pub min_version: u16,
    /// Highest protocol version the caller speaks.
    pub max_version: u16,
    /// A fresh random number the module echoes.
    pub nonce: u64,
}

/// One operation of the module, one per exported C function family.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `zkGetRandBytes`, `zkCreateRandDataFile`: `len` random bytes (≤ [`MAX_RANDOM_CHUNK`]).
    GetRandom {
        /// How many bytes.
        len: u32,
    },
    /// `zkLockData*`: encrypt and sign `data`.
    Lock {
        /// `use_shared_key`.
        shared: bool,
        /// The plaintext.
        data: Zeroizing<Vec<u8>>,
    },
    /// `zkUnlockData*`: verify and decrypt `blob`.
    Unlock {
        /// `use_shared_key`.
        shared: bool,
        /// The locked blob.
        blob: Vec<u8>,
    },
    /// `zkGenECDSASigFromDigest`.
    Sign {
        /// Key slot (0–2 on a ZYMKEY4).
        slot: i32,
        /// SHA-256 digest.
        digest: [u8; 32],
    },
    /// `zkVerifyECDSASigFromDigest`.
    Verify {
        /// Key slot.
        slot: i32,
        /// SHA-256 digest.
        digest: [u8; 32],
        /// Raw `r || s` signature.
        sig: Vec<u8>,
    },
    /// `zkExportPubKey`, `zkGetECDSAPubKey`.
    ExportPubKey {
        /// Key slot.
        slot: i32,
        /// `slot_is_foreign` (HSM6 only).
        foreign: bool,
    },
    /// `zkSetPerimeterEventAction`.
    SetPerimeterAction {
        /// Channel 0 or 1.
        channel: i32,
        /// `ZK_PERIMETER_EVENT_ACTION_*` flags.
        flags: u32,
    },
    /// `zkGetPerimeterDetectInfo`.
    GetPerimeterInfo,
    /// `zkClearPerimeterDetectEvents`.
    ClearPerimeter,
    /// `zkWaitForPerimeterEvent`.
    WaitPerimeter {
        /// Timeout in milliseconds.
        timeout_ms: u32,
    },
    /// `zkSetTapSensitivity`.
    SetTapSensitivity {
        /// `ZK_ACCEL_AXIS_TYPE`.
        axis: i32,
        /// Percent, as `f32` bits.
        pct_bits: u32,
    },
    /// `zkWaitForTap`.
    WaitTap {
        /// Timeout in milliseconds.
        timeout_ms: u32,
    },
    /// `zkGetAccelerometerData`.
    GetAccel,
    /// `zkGetTime`.
    GetTime {
        /// Wait for the next second boundary.
        precise: bool,
    },
    /// `zkLEDOff`.
    LedOff,
    /// `zkLEDOn`.
    LedOn,
    /// `zkLEDFlash`.
    LedFlash {
        /// On time, ms.
        on_ms: u32,
        /// Off time, ms.
        off_ms: u32,
        /// Cycles, 0 = forever.
        count: u32,
    },
    /// `zkSetI2CAddr`.
    SetI2cAddr {
        /// The address.
        addr: i32,
    },
    /// `zkLockBinding`.
    LockBinding,
    /// `zkGetCurrentBindingInfo`.
    GetBindingInfo,
    /// `zkGetModelNumberString`.
    GetModel,
    /// `zkGetFirmwareVersionString`.
    GetFirmware,
    /// `zkGetSerialNumberString`.
    GetSerial,
}

impl Op {
    /// A short name for traces and logs (never carries data).
    pub fn name(&self) -> &'static str {
        match self {
            Op::GetRandom { .. } => "get-random",
            Op::Lock { .. } => "lock",
            Op::Unlock { .. } => "unlock",
            Op::Sign { .. } => "sign",
            Op::Verify { .. } => "verify",
            Op::ExportPubKey { .. } => "export-pubkey",
            Op::SetPerimeterAction { .. } => "set-perimeter-action",
            Op::GetPerimeterInfo => "get-perimeter-info",
            Op::ClearPerimeter => "clear-perimeter",
            Op::WaitPerimeter { .. } => "wait-perimeter",
            Op::SetTapSensitivity { .. } => "set-tap-sensitivity",
            Op::WaitTap { .. } => "wait-tap",
            Op::GetAccel => "get-accel",
            Op::GetTime { .. } => "get-time",
            Op::LedOff => "led-off",
            Op::LedOn => "led-on",
            Op::LedFlash { .. } => "led-flash",
            Op::SetI2cAddr { .. } => "set-i2c-addr",
            Op::LockBinding => "lock-binding",
            Op::GetBindingInfo => "get-binding-info",
            Op::GetModel => "get-model",
            Op::GetFirmware => "get-firmware",
            Op::GetSerial => "get-serial",
        }
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            Op::GetRandom { len } => w.u8(0x01).u32(*len),
            Op::Lock { shared, data } => w.u8(0x10).bool(*shared).bytes(data),
            Op::Unlock { shared, blob } => w.u8(0x11).bool(*shared).bytes(blob),
            Op::Sign { slot, digest } => w.u8(0x20).i32(*slot).bytes(digest),
            Op::Verify { slot, digest, sig } => w.u8(0x21).i32(*slot).bytes(digest).bytes(sig),
            Op::ExportPubKey { slot, foreign } => w.u8(0x22).i32(*slot).bool(*foreign),
            Op::SetPerimeterAction { channel, flags } => w.u8(0x30).i32(*channel).u32(*flags),
            Op::GetPerimeterInfo => w.u8(0x31),
            Op::ClearPerimeter => w.u8(0x32),
            Op::WaitPerimeter { timeout_ms } => w.u8(0x33).u32(*timeout_ms),
            Op::SetTapSensitivity { axis, pct_bits } => w.u8(0x40).i32(*axis).u32(*pct_bits),
            Op::WaitTap { timeout_ms } => w.u8(0x41).u32(*timeout_ms),
            Op::GetAccel => w.u8(0x42),
            Op::GetTime { precise } => w.u8(0x50).bool(*precise),
            Op::LedOff => w.u8(0x60),
            Op::LedOn => w.u8(0x61),
            Op::LedFlash {
                on_ms,
                off_ms,
                count,
            } => w.u8(0x62).u32(*on_ms).u32(*off_ms).u32(*count),
            Op::SetI2cAddr { addr } => w.u8(0x70).i32(*addr),
            Op::LockBinding => w.u8(0x71),
            Op::GetBindingInfo => w.u8(0x72),
            Op::GetModel => w.u8(0x80),
            Op::GetFirmware => w.u8(0x81),
            Op::GetSerial => w.u8(0x82),
        };
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let digest = |r: &mut Reader<'_>| -> Result<[u8; 32], WireError> {
            let d = r.bytes(32)?;
            d.try_into().map_err(|_| WireError::Truncated)
        };
        Ok(match r.u8()? {
            0x01 => Op::GetRandom { len: r.u32()? },
            0x10 => Op::Lock {
                shared: r.bool()?,
                data: Zeroizing::new(r.bytes(MAX_LOCK_PLAINTEXT)?),
            },
            0x11 => Op::Unlock {
                shared: r.bool()?,
                blob: r.bytes(MAX_FRAME)?,
            },
            0x20 => Op::Sign {
                slot: r.i32()?,
                digest: digest(r)?,
            },
            0x21 => Op::Verify {
                slot: r.i32()?,
                digest: digest(r)?,
                sig: r.bytes(256)?,
            },
            0x22 => Op::ExportPubKey {
                slot: r.i32()?,
                foreign: r.bool()?,
            },
            0x30 => Op::SetPerimeterAction {
                channel: r.i32()?,
                flags: r.u32()?,
            },
            0x31 => Op::GetPerimeterInfo,
            0x32 => Op::ClearPerimeter,
            0x33 => Op::WaitPerimeter {
                timeout_ms: r.u32()?,
            },
            0x40 => Op::SetTapSensitivity {
                axis: r.i32()?,
                pct_bits: r.u32()?,
            },
            0x41 => Op::WaitTap {
                timeout_ms: r.u32()?,
            },
            0x42 => Op::GetAccel,
            0x50 => Op::GetTime { precise: r.bool()? },
            0x60 => Op::LedOff,
            0x61 => Op::LedOn,
            0x62 => Op::LedFlash {
                on_ms: r.u32()?,
                off_ms: r.u32()?,
                count: r.u32()?,
            },
            0x70 => Op::SetI2cAddr { addr: r.i32()? },
            0x71 => Op::LockBinding,
            0x72 => Op::GetBindingInfo,
            0x80 => Op::GetModel,
            0x81 => Op::GetFirmware,
            0x82 => Op::GetSerial,
            op => return Err(WireError::UnknownOp(op)),
        })
    }
}

/// One accelerometer axis reading (`zkAccelAxisDataType`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisReading {
    /// Acceleration in g.
    pub g: f64,
    /// Tap direction: -1, 0 or +1.
    pub tap_direction: i32,
}

/// The data part of a successful response.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// No data.
    Done,
    /// Bytes (random bytes, a blob, a plaintext, a signature, a public key). Zeroised on drop.
    Bytes(Zeroizing<Vec<u8>>),
    /// A signature check result.
    Verified(bool),
    /// Seconds since the epoch.
    Time(u32),
    /// Per-channel first-breach times (0 = none).
    Timestamps(Vec<u32>),
    /// Accelerometer x, y, z.
    Accel([AxisReading; 3]),
    /// `zkGetCurrentBindingInfo`.
    Binding {
        /// Binding is locked (production mode).
        locked: bool,
        /// The module is bound to the host it is on.
        bound: bool,
    },
    /// A string (model, firmware, serial).
    Text(String),
}

impl Reply {
    fn encode(&self, w: &mut Writer) {
        match self {
            Reply::Done => {
                w.u8(0);
            }
            Reply::Bytes(b) => {
                w.u8(1).bytes(b);
            }
            Reply::Verified(v) => {
                w.u8(2).bool(*v);
            }
            Reply::Time(t) => {
                w.u8(3).u32(*t);
            }
            Reply::Timestamps(ts) => {
                w.u8(4).u32(ts.len() as u32);
                for t in ts {
                    w.u32(*t);
                }
            }
            Reply::Accel(axes) => {
                w.u8(5);
                for a in axes {
                    w.u64(a.g.to_bits()).i32(a.tap_direction);
                }
            }
            Reply::Binding { locked, bound } => {
                w.u8(6).bool(*locked).bool(*bound);
            }
            Reply::Text(t) => {
                w.u8(7).bytes(t.as_bytes());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            0 => Reply::Done,
            1 => Reply::Bytes(Zeroizing::new(r.bytes(MAX_FRAME)?)),
            2 => Reply::Verified(r.bool()?),
            3 => Reply::Time(r.u32()?),
            4 => {
                let n = r.u32()? as usize;
                if n > 16 {
                    return Err(WireError::TooLong { len: n, max: 16 });
                }
                let mut ts = Vec::with_capacity(n);
                for _ in 0..n {
                    ts.push(r.u32()?);
                }
                Reply::Timestamps(ts)
            }
            5 => {
                let mut axes = [AxisReading {
                    g: 0.0,
                    tap_direction: 0,
                }; 3];
                for a in &mut axes {
                    a.g = f64::from_bits(r.u64()?);
                    a.tap_direction = r.i32()?;
                }
                Reply::Accel(axes)
            }
            6 => Reply::Binding {
                locked: r.bool()?,
                bound: r.bool()?,
            },
            7 => Reply::Text(String::from_utf8(r.bytes(1024)?).map_err(|_| WireError::BadUtf8)?),
            t => return Err(WireError::UnknownReply(t)),
        })
    }
}

/// A message from the host software to the module.
#[derive(Debug, Clone, PartialEq)]
pub enum ToModule {
    /// Opens (or reopens) a session.
    Hello(Hello),
    /// One operation.
    Request {
        /// Echoed in the response.
        id: u32,
        /// The operation.
        op: Op,
    },
}

impl ToModule {
    /// Encodes the message body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            ToModule::Hello(h) => {
                w.u8(KIND_HELLO);
                HELLO_MAGIC.iter().for_each(|b| {
                    w.u8(*b);
                });
                w.u16(h.min_version).u16(h.max_version).u64(h.nonce);
            }
            ToModule::Request { id, op } => {
                w.u8(KIND_REQUEST).u32(*id);
                op.encode(&mut w);
            }
        }
        w.into_body()
    }

    /// Decodes a message body. On error, also returns the request id if it could be read, so
    /// the error reply can carry it.
    pub fn decode(body: &[u8]) -> Result<Self, (Option<u32>, WireError)> {
        let mut r = Reader::new(body);
        let kind = r.u8().map_err(|_| (None, WireError::Empty))?;
        match kind {
            KIND_HELLO => {
                let parse = |r: &mut Reader<'_>| -> Result<Hello, WireError> {
                    if r.array::<4>()? != HELLO_MAGIC {
                        return Err(WireError::BadMagic);
                    }
                    Ok(Hello {
                        min_version: r.u16()?,
                        max_version: r.u16()?,
                        nonce: r.u64()?,
                    })
                };
                let hello = parse(&mut r).map_err(|e| (None, e))?;
                r.finish().map_err(|e| (None, e))?;
                Ok(ToModule::Hello(hello))
            }
            KIND_REQUEST => {
                let id = r.u32().map_err(|e| (None, e))?;
                let op = Op::decode(&mut r).map_err(|e| (Some(id), e))?;
                r.finish().map_err(|e| (Some(id), e))?;
                Ok(ToModule::Request { id, op })
            }
            k => Err((None, WireError::UnknownKind(k))),
        }
    }
}

/// A message from the module to the host software.
#[derive(Debug, Clone, PartialEq)]
pub enum FromModule {
    /// Accepts a session.
    HelloReply {
        /// The version chosen.
        version: u16,
        /// The caller's nonce.
        nonce: u64,
    },
    /// Answers one request (id 0 for a message whose id could not be read).
    Response {
        /// The request's id.
        id: u32,
        /// The reply, or a negative code from [`crate::codes`].
        result: Result<Reply, i32>,
    },
}

impl FromModule {
    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            FromModule::HelloReply { version, nonce } => {
                w.u8(KIND_HELLO_REPLY).u16(*version).u64(*nonce);
            }
            FromModule::Response { id, result } => {
                w.u8(KIND_RESPONSE).u32(*id);
                match result {
                    Ok(reply) => {
                        w.i32(codes::ZK_OK);
                        reply.encode(&mut w);
                    }
                    Err(code) => {
                        w.i32(if *code < 0 {
                            *code
                        } else {
                            codes::ZK_ERR_GENERAL
                        });
                    }
                }
            }
        }
        w.into_body()
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let msg = match r.u8().map_err(|_| WireError::Empty)? {
            KIND_HELLO_REPLY => FromModule::HelloReply {
                version: r.u16()?,
                nonce: r.u64()?,
            },
            KIND_RESPONSE => {
                let id = r.u32()?;
                let status = r.i32()?;
                let result = match status {
                    0 => Ok(Reply::decode(&mut r)?),
                    s if s < 0 => Err(s),
                    s => return Err(WireError::BadStatus(s)),
                };
                FromModule::Response { id, result }
            }
            k => return Err(WireError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// What the module's frame decoder yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete body.
    Body(Vec<u8>),
    /// A length of 0 or over [`MAX_FRAME`]: framing is lost until the next Hello.
    BadLength(u32),
}

/// Splits a byte stream into frame bodies, resynchronising on a Hello after a framing error.
///
/// After a bad length the decoder skips bytes until it sees the exact header of a Hello frame
/// (`00 00 00 11 01 'K' 'B' 'Z' 'K'`): every new caller starts with one, so the module recovers
/// from any garbage without closing the port.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    lost: bool,
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        // Lock requests carry plaintext: wipe the whole buffer, spare capacity included.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl FrameDecoder {
    /// A decoder in sync.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether the decoder is skipping bytes until the next Hello.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    fn hello_prefix() -> [u8; 9] {
        let mut p = [0u8; 9];
        p[..4].copy_from_slice(&(HELLO_BODY_LEN as u32).to_be_bytes());
        p[4] = KIND_HELLO;
        p[5..].copy_from_slice(&HELLO_MAGIC);
        p
    }

    /// The next frame, if enough bytes arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.lost {
            let prefix = Self::hello_prefix();
            match self.buf.windows(prefix.len()).position(|w| w == prefix) {
                Some(at) => {
                    self.buf.drain(..at);
                    self.lost = false;
                }
                None => {
                    let keep = self.buf.len().min(prefix.len() - 1);
                    self.buf.drain(..self.buf.len() - keep);
                    return None;
                }
            }
        }
        if self.buf.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 || len as usize > MAX_FRAME {
            self.lost = true;
            self.buf.drain(..1);
            return Some(Frame::BadLength(len));
        }
        if self.buf.len() < 4 + len as usize {
            return None;
        }
        let body = self.buf[4..4 + len as usize].to_vec();
        self.buf.drain(..4 + len as usize);
        Some(Frame::Body(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_ops() -> Vec<Op> {
        vec![
            Op::GetRandom { len: 32 },
            Op::Lock {
                shared: true,
                data: Zeroizing::new(vec![1, 2, 3]),
            },
            Op::Unlock {
                shared: false,
                blob: vec![9; 100],
            },
            Op::Sign {
                slot: 2,
                digest: [7; 32],
            },
            Op::Verify {
                slot: 1,
                digest: [8; 32],
                sig: vec![1; 64],
            },
            Op::ExportPubKey {
                slot: 0,
                foreign: false,
            },
            Op::SetPerimeterAction {
                channel: 1,
                flags: 3,
            },
            Op::GetPerimeterInfo,
            Op::ClearPerimeter,
            Op::WaitPerimeter { timeout_ms: 5 },
            Op::SetTapSensitivity {
                axis: 3,
                pct_bits: 50f32.to_bits(),
            },
            Op::WaitTap { timeout_ms: 0 },
            Op::GetAccel,
            Op::GetTime { precise: true },
            Op::LedOff,
            Op::LedOn,
            Op::LedFlash {
                on_ms: 1,
                off_ms: 2,
                count: 3,
            },
            Op::SetI2cAddr { addr: 0x31 },
            Op::LockBinding,
            Op::GetBindingInfo,
            Op::GetModel,
            Op::GetFirmware,
            Op::GetSerial,
        ]
    }

    #[test]
    fn every_op_round_trips() {
        for (i, op) in sample_ops().into_iter().enumerate() {
            let msg = ToModule::Request { id: i as u32, op };
            assert_eq!(ToModule::decode(&msg.encode()).unwrap(), msg);
        }
        let hello = ToModule::Hello(Hello {
            min_version: 1,
            max_version: 1,
            nonce: 42,
        });
        let body = hello.encode();
        assert_eq!(body.len(), HELLO_BODY_LEN);
        assert_eq!(ToModule::decode(&body).unwrap(), hello);
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = vec![
            Reply::Done,
            Reply::Bytes(Zeroizing::new(vec![1, 2])),
            Reply::Verified(true),
            Reply::Time(77),
            Reply::Timestamps(vec![0, 5]),
            Reply::Accel(
                [AxisReading {
                    g: 1.0,
                    tap_direction: -1,
                }; 3],
            ),
            Reply::Binding {
                locked: true,
                bound: false,
            },
            Reply::Text("ZYMKEY4".into()),
        ];
        for reply in replies {
            let msg = FromModule::Response {
                id: 5,
                result: Ok(reply),
            };
            assert_eq!(FromModule::decode(&msg.encode()).unwrap(), msg);
        }
        let err = FromModule::Response {
            id: 5,
            result: Err(codes::ZK_ERR_BINDING),
        };
        assert_eq!(FromModule::decode(&err.encode()).unwrap(), err);
    }

    #[test]
    fn decoder_resynchronises_on_the_next_hello() {
        let hello = frame(
            &ToModule::Hello(Hello {
                min_version: 1,
                max_version: 1,
                nonce: 1,
            })
            .encode(),
        );
        let mut d = FrameDecoder::new();
        d.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(d.next_frame(), Some(Frame::BadLength(_))));
        assert_eq!(d.next_frame(), None);
        d.push(&hello[..5]);
        assert_eq!(d.next_frame(), None);
        d.push(&hello[5..]);
        assert_eq!(d.next_frame(), Some(Frame::Body(hello[4..].to_vec())));
        assert!(!d.is_lost());
    }

    proptest! {
        #[test]
        fn garbage_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ToModule::decode(&body);
            let _ = FromModule::decode(&body);
        }

        #[test]
        fn garbage_streams_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Some(f) = d.next_frame() {
                    if let Frame::Body(b) = f {
                        prop_assert!(!b.is_empty() && b.len() <= MAX_FRAME);
                        let _ = ToModule::decode(&b);
                    }
                }
            }
        }

        #[test]
        fn requests_round_trip_with_any_id(id in any::<u32>(), i in 0usize..23) {
            let op = sample_ops()[i].clone();
            let msg = ToModule::Request { id, op };
            prop_assert_eq!(ToModule::decode(&msg.encode()).unwrap(), msg);
        }
    }
}
