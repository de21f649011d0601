//! Resources: what hardware a rig has, read from its rig file (TOML).
//!
//! A rig file describes, per board, the power relay, the serial console, the SD mux, sshd, the
//! test-only maintenance channel, the Zymkey seated on the header and the switchable USB ports
//! holding FIDO2 keys. It says what exists and where; the drivers ([`crate::gpio`],
//! [`crate::power`], [`crate::serial`], [`crate::sdmux`], [`crate::token_port`]) say how to use
//! it. Parsing is strict: an unknown field, a wrong type, a command without its `{}` placeholder
//! or two resources on one GPIO line are errors naming the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// A whole rig: the controller's GPIO driver and its boards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RigFile {
    /// Which driver sets the controller's GPIO lines: `rppal` (the controller is a Raspberry Pi;
    /// needs the `rppal` cargo feature) or `fake` (nothing is driven: dry runs and tests).
    #[serde(default)]
    pub gpio: GpioBackend,
    /// The vendor's age recipient (`age1…`) that `provision` encrypts recovery secrets to
    /// (default: the repository's TEST-ONLY vendor identity, as on the QEMU target).
    #[serde(default)]
    pub vendor_recipient: Option<String>,
    /// The boards, by name (scenario boards are matched to them by name, then in name order).
    pub boards: BTreeMap<String, BoardResources>,
}

/// The driver behind the rig's GPIO lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpioBackend {
    /// The controller's own header through rppal.
    #[default]
    Rppal,
    /// In-memory lines (tests, dry runs): nothing is switched.
    Fake,
}

/// One board under test and the hardware around it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoardResources {
    /// Which Raspberry Pi it is.
    pub model: Model,
    /// The power relay, or `"none"` (the harness cannot switch this board).
    #[serde(deserialize_with = "none_or")]
    pub power: Option<PowerResource>,
    /// The serial console (the Pi's UART on a USB adapter).
    pub console: SerialResource,
    /// The SD mux holding the board's card, or `"none"` (absent: none).
    #[serde(default, deserialize_with = "none_or")]
    pub sd_mux: Option<SdMuxResource>,
    /// The production sshd as the controller reaches it (absent: no ssh logins).
    #[serde(default)]
    pub sshd: Option<SshdResource>,
    /// The test-only maintenance sshd (absent: no harness checks, no clean power-off request).
    #[serde(default)]
    pub maintenance: Option<MaintenanceResource>,
    /// The Zymkey seated on the header, or `"none"`. A real module cannot be moved, faulted or
    /// have its tab cut by the harness: the rig file states what is there.
    #[serde(deserialize_with = "none_or")]
    pub zymkey: Option<ZymkeyResource>,
    /// The card's id (its CID serial) as the board reports it, if known.
    #[serde(default)]
    pub card_id: Option<String>,
    /// Switchable USB ports holding FIDO2 keys, by key name, or `"none"` (absent: none).
    #[serde(default, deserialize_with = "none_or")]
    pub token_ports: Option<BTreeMap<String, TokenPortResource>>,
}

/// A Raspberry Pi model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Raspberry Pi 4 / CM4.
    Pi4,
    /// Raspberry Pi 5.
    Pi5,
}

/// The board's power relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PowerResource {
    /// The GPIO line driving the relay.
    pub relay: GpioLine,
    /// How long the relay stays off before it is switched on again (default 3s: the Pi's
    /// capacitors drain and it really resets).
    #[serde(default)]
    pub off_time: Option<DurationText>,
}

impl PowerResource {
    /// The off time, or its default.
    pub fn off_time(&self) -> Duration {
        self.off_time.map_or(Duration::from_secs(3), |d| d.0)
    }
}

/// One GPIO line of the rig controller and its polarity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpioLine {
    /// The GPIO chip (e.g. `gpiochip0`).
    pub chip: String,
    /// The line offset on the chip (on a Pi's header: the BCM GPIO number).
    pub line: u32,
    /// Which level asserts it: `high` or `low` (many relay boards are active-low).
    pub active: Active,
}

/// Which level asserts a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Active {
    /// High = asserted.
    High,
    /// Low = asserted.
    Low,
}

/// The serial console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SerialResource {
    /// The device (e.g. `/dev/serial/by-id/usb-FTDI_…-if00-port0` or `/dev/ttyUSB0`).
    pub device: PathBuf,
    /// Baud rate (default 115200, as a Pi's UART).
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

/// A USB-SD-Mux (or any mux that shows the card to the controller as a block device).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SdMuxResource {
    /// The card's block device on the controller while the mux is on the host side.
    pub device: PathBuf,
    /// What switches the mux: asserted / `{}` = `host` means the controller has the card;
    /// deasserted / `{}` = `dut` gives it back to the board.
    pub switch: Switch,
    /// How long to wait for the block device after switching to the host (default 10s).
    #[serde(default)]
    pub settle: Option<DurationText>,
}

impl SdMuxResource {
    /// The settle time, or its default.
    pub fn settle(&self) -> Duration {
        self.settle.map_or(Duration::from_secs(10), |d| d.0)
    }
}

/// How a two-state device (SD mux, hub port) is switched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Switch {
    /// A command run on the controller; `{}` in it is replaced by the state word (`host`/`dut`
    /// for an SD mux, `on`/`off` for a hub port), e.g. `["usbsdmux", "/dev/sg0", "{}"]` or
    /// `["uhubctl", "-l", "1-1", "-p", "2", "-a", "{}"]`.
    Command(CommandLine),
    /// A GPIO line: asserted = host side / port powered.
    Gpio(GpioLine),
}

/// A command line with exactly one `{}` placeholder argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

impl CommandLine {
    /// The command line with `{}` replaced by `word`.
    pub fn with(&self, word: &str) -> Vec<String> {
        self.0.iter().map(|a| a.replace("{}", word)).collect()
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let argv = Vec::<String>::deserialize(d)?;
        if argv.is_empty() {
            return Err(de::Error::custom(
                "the command is empty: give the program and its arguments",
            ));
        }
        let holes = argv.iter().filter(|a| a.contains("{}")).count();
        if holes != 1 {
            return Err(de::Error::custom(format!(
                "the command needs exactly one `{{}}` (replaced by the state word), found {holes}"
            )));
        }
        Ok(Self(argv))
    }
}

/// The production sshd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SshdResource {
    /// Where the controller reaches it (`host:port`).
    pub address: Address,
    /// Its public host key (`ssh-ed25519 AAAA…`), checked strictly.
    pub host_key: String,
}

/// The test-only maintenance sshd of a test image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MaintenanceResource {
    /// Where the controller reaches it (`host:port`, port 2222 on the test image).
    pub address: Address,
    /// The private key (relative paths are from the rig file's directory).
    pub key: PathBuf,
    /// Its host key (default: the production sshd's).
    #[serde(default)]
    pub host_key: Option<String>,
}

/// A Zymkey seated on a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ZymkeyResource {
    /// Whether its binding tab is cut (`production`) or intact (`developer`).
    pub binding: Binding,
}

/// A real Zymkey's binding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binding {
    /// Tab intact.
    Developer,
    /// Tab cut.
    Production,
}

/// A switchable USB port with a FIDO2 key in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenPortResource {
    /// What powers the port: `{}` = `on`/`off`, or a GPIO line (asserted = powered).
    pub switch: Switch,
    /// The key in it is enrolled for the technician on this board's card (enrolment needs a
    /// touch: a person does it once, the rig file records it).
    #[serde(default)]
    pub enrolled: bool,
}

/// `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Host name or address (`[…]` stripped for IPv6).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || de::Error::custom(format!("`{text}` is not host:port (e.g. 192.0.2.7:22)"));
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// A duration written `500ms`, `3s` or `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| {
            de::Error::custom(format!("`{text}` is not a duration (e.g. 500ms, 3s, 2m)"))
        })?;
        let duration = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            _ => {
                return Err(de::Error::custom(format!(
                    "`{text}`: unknown unit `{}` (use ms, s or m)",
                    unit.trim()
                )));
            }
        };
        Ok(Self(duration))
    }
}

/// `"none"` or a table read as `T`.
fn none_or<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct NoneOr<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for NoneOr<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("\"none\" or a table")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == "none" {
                Ok(None)
            } else {
                Err(E::custom(format!(
                    "`{v}`: write \"none\" or a table ({{ … }})"
                )))
            }
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(NoneOr(std::marker::PhantomData))
}

/// One problem in a rig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range in the file.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if we can tell.
    pub help: Option<String>,
}

/// Everything wrong with a rig file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.short())]
pub struct RigFileError {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub source_text: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// One problem as a miette diagnostic.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ProblemReport {
    message: String,
    src: NamedSource<String>,
    span: SourceSpan,
    help: Option<String>,
}

impl Diagnostic for ProblemReport {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".into()), self.span),
        )))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

impl RigFileError {
    /// `file:line:col: message (help)`, one line per problem.
    pub fn short(&self) -> String {
        self.problems
            .iter()
            .map(|p| {
                let (line, col) = line_col(&self.source_text, p.span.start);
                let help = p
                    .help
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!("{}:{line}:{col}: {}{help}", self.path.display(), p.message)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every problem with the file's text around it (miette's graphical report).
    pub fn render(&self, colour: bool) -> String {
        let theme = if colour {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let mut out = String::new();
        for p in &self.problems {
            let (line, col) = line_col(&self.source_text, p.span.start);
            let report = ProblemReport {
                message: format!("{}:{line}:{col}: {}", self.path.display(), p.message),
                src: NamedSource::new(self.path.display().to_string(), self.source_text.clone()),
                span: SourceSpan::from(p.span.start..p.span.end.max(p.span.start)),
                help: p.help.clone(),
            };
            let _ = handler.render_report(&mut out, &report);
        }
        out
    }
}

/// "did you mean" for serde's `unknown field`/`unknown variant` messages.
fn suggestion(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::damerau_levenshtein(word, k), k))
        .filter(|(d, k)| *d <= (k.len().max(word.len()) / 3).max(2) || k.starts_with(word))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

impl RigFile {
    /// Parses and checks rig-file text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, RigFileError> {
        let error = |problems| RigFileError {
            path: path.to_path_buf(),
            source_text: text.to_string(),
            problems,
        };
        let rig: RigFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            error(vec![Problem {
                span: e.span().unwrap_or(0..0),
                help: suggestion(&message),
                message,
            }])
        })?;
        let problems = rig.check(text);
        if problems.is_empty() {
            Ok(rig)
        } else {
            Err(error(problems))
        }
    }

    /// Reads and checks a rig file.
    pub fn load(path: &Path) -> Result<Self, RigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| RigFileError {
            path: path.to_path_buf(),
            source_text: String::new(),
            problems: vec![Problem {
                span: 0..0,
                message: format!("cannot read: {e}"),
                help: None,
            }],
        })?;
        Self::parse(path, &text)
    }

    /// Where `rig:NAME`'s file is: `rigs/NAME.toml` under the repository.
    pub fn default_path(repo: &Path, name: &str) -> PathBuf {
        repo.join("rigs").join(format!("{name}.toml"))
    }

    /// Every GPIO line the rig drives, with the field that names it.
    pub fn gpio_lines(&self) -> Vec<(String, &GpioLine)> {
        let mut out = Vec::new();
        for (name, board) in &self.boards {
            if let Some(power) = &board.power {
                out.push((format!("boards.{name}.power.relay"), &power.relay));
            }
            if let Some(Switch::Gpio(line)) = board.sd_mux.as_ref().map(|m| &m.switch) {
                out.push((format!("boards.{name}.sd-mux.switch.gpio"), line));
            }
            for (key, port) in board.token_ports.iter().flatten() {
                if let Switch::Gpio(line) = &port.switch {
                    out.push((format!("boards.{name}.token-ports.{key}.switch.gpio"), line));
                }
            }
        }
        out
    }

    /// The checks serde cannot make: at least one board, each GPIO line driven by one resource,
    /// a host key for every maintenance channel.
    fn check(&self, text: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.boards.is_empty() {
            problems.push(Problem {
                span: 0..0,
                message: "the rig has no board".into(),
                help: Some("add a [boards.NAME] table".into()),
            });
        }
        let lines = self.gpio_lines();
        for (i, (field, line)) in lines.iter().enumerate() {
            if let Some((first, _)) = lines[..i]
                .iter()
                .find(|(_, l)| l.chip == line.chip && l.line == line.line)
            {
                problems.push(Problem {
                    span: nth_span(text, &format!("line = {}", line.line), 1),
                    message: format!(
                        "{field} drives {} line {}, which {first} drives already",
                        line.chip, line.line
                    ),
                    help: Some("each resource needs its own GPIO line".into()),
                });
            }
        }
        for (name, board) in &self.boards {
            if let Some(m) = &board.maintenance
                && m.host_key.is_none()
                && board.sshd.is_none()
            {
                problems.push(Problem {
                    span: nth_span(text, "maintenance", 0),
                    message: format!(
                        "boards.{name}.maintenance has no host-key and the board has no sshd to take it from"
                    ),
                    help: Some("add host-key = \"ssh-ed25519 AAAA…\"".into()),
                });
            }
        }
        problems
    }
}

/// The span of the `n`-th (0-based) occurrence of `needle` in `text` (the start if absent).
fn nth_span(text: &str, needle: &str, n: usize) -> Range<usize> {
    text.match_indices(needle)
        .nth(n)
        .map_or(0..0, |(at, s)| at..at + s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
gpio = "fake"

[boards.pi]
model = "pi4"
power = { relay = { chip = "gpiochip0", line = 17, active = "low" }, off-time = "2s" }
console = { device = "/dev/ttyUSB0" }
sd-mux = { device = "/dev/sda", switch = { command = ["usbsdmux", "/dev/sg0", "{}"] } }
sshd = { address = "192.0.2.7:22", host-key = "ssh-ed25519 AAAA" }
maintenance = { address = "192.0.2.7:2222", key = "keys/maintenance" }
zymkey = { binding = "developer" }

[boards.pi.token-ports.key]
switch = { command = ["uhubctl", "-l", "1-1", "-p", "2", "-a", "{}"] }
enrolled = true

[boards.spare]
model = "pi5"
power = "none"
console = { device = "/dev/ttyUSB1", baud = 921600 }
zymkey = "none"
"#;

    #[test]
    fn a_full_rig_file_reads() {
        let rig = RigFile::parse(Path::new("rigs/lab.toml"), FULL).unwrap();
        assert_eq!(rig.gpio, GpioBackend::Fake);
        let pi = &rig.boards["pi"];
        let power = pi.power.as_ref().unwrap();
        assert_eq!(power.relay.active, Active::Low);
        assert_eq!(power.off_time(), Duration::from_secs(2));
        assert_eq!(pi.console.baud, 115_200);
        let mux = pi.sd_mux.as_ref().unwrap();
        match &mux.switch {
            Switch::Command(c) => assert_eq!(c.with("host"), ["usbsdmux", "/dev/sg0", "host"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(pi.sshd.as_ref().unwrap().address.port, 22);
        assert!(pi.token_ports.as_ref().unwrap()["key"].enrolled);
        let spare = &rig.boards["spare"];
        assert!(spare.power.is_none() && spare.zymkey.is_none() && spare.sd_mux.is_none());
        assert_eq!(spare.console.baud, 921_600);
    }
}
