//! The QMP wire format: what QEMU sends, parsed into [`Incoming`], and how commands are framed.
//!
//! QMP is newline-delimited JSON. QEMU sends three kinds of object: one greeting
//! (`{"QMP": {...}}`) right after the connection opens, replies (`{"return": ...}` or
//! `{"error": {...}}`, echoing the command's `id`), and events (`{"event": ..., "data": ...,
//! "timestamp": ...}`) at any time. Parsing never panics: everything that is not one of the three is
//! a [`ProtocolError`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ProtocolError, QmpError};

/// QEMU's version triple, as in the greeting and in `query-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro (patch) version.
    pub micro: u32,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// QEMU's version information (`VersionInfo` in the QAPI schema).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VersionInfo {
    /// The upstream version.
    pub qemu: QemuVersion,
    /// The distribution's package string, e.g. `Debian 1:7.2+dfsg-7`.
    pub package: String,
}

/// The greeting QEMU sends when a client connects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Greeting {
    /// QEMU's version.
    pub version: VersionInfo,
    /// Capabilities QEMU offers (e.g. `oob`); this client enables none of them.
    pub capabilities: Vec<String>,
}

/// When QEMU emitted an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// An asynchronous event from QEMU, such as `SHUTDOWN`, `STOP` or `RESUME`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event name, e.g. `SHUTDOWN`.
    pub name: String,
    /// The event's data; `Null` when QEMU sent none.
    pub data: Value,
    /// When QEMU emitted it.
    pub timestamp: Timestamp,
}

/// One parsed message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The greeting.
    Greeting(Greeting),
    /// A successful reply.
    Return {
        /// The echoed command id, if any.
        id: Option<Value>,
        /// The command's result.
        value: Value,
    },
    /// A failed reply.
    Error {
        /// The echoed command id, if any.
        id: Option<Value>,
        /// QEMU's error.
        error: QmpError,
    },
    /// An event.
    Event(Event),
}

/// Every key QMP may put in a top-level object; deserialised in one pass.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "QMP")]
    greeting: Option<Greeting>,
    #[serde(rename = "return")]
    value: Option<Value>,
    error: Option<QmpError>,
    id: Option<Value>,
    event: Option<String>,
    data: Option<Value>,
    timestamp: Option<Timestamp>,
}

/// How much of an offending message goes into an error, so a 1 MiB line does not.
const SNIPPET_BYTES: usize = 120;

/// The start of `line` as text, for error messages.
pub(crate) fn snippet(line: &[u8]) -> String {
    let end = line.len().min(SNIPPET_BYTES);
    let mut text = String::from_utf8_lossy(&line[..end]).into_owned();
    if line.len() > end {
        text.push('…');
    }
    text
}

/// Parses one line from QEMU (without its line terminator).
///
/// # Examples
/// ```
/// use vgashot_qmp::message::{parse, Incoming};
/// let reply = parse(br#"{"return": {}, "id": 7}"#).unwrap();
/// assert!(matches!(reply, Incoming::Return { .. }));
/// assert!(parse(b"garbage").is_err());
/// ```
pub fn parse(line: &[u8]) -> Result<Incoming, ProtocolError> {
    let envelope: Envelope = serde_json::from_slice(line).map_err(ProtocolError::Json)?;
    let unrecognized = || ProtocolError::Unrecognized {
        snippet: snippet(line),
    };
    match envelope {
        Envelope {
            greeting: Some(greeting),
            value: None,
            error: None,
            event: None,
            ..
        } => Ok(Incoming::Greeting(greeting)),
        Envelope {
            greeting: None,
            value: Some(value),
            error: None,
            event: None,
            id,
            ..
        } => Ok(Incoming::Return { id, value }),
        Envelope {
            greeting: None,
            value: None,
            error: Some(error),
            event: None,
            id,
            ..
        } => Ok(Incoming::Error { id, error }),
        Envelope {
            greeting: None,
            value: None,
            error: None,
            event: Some(name),
            data,
            timestamp: Some(timestamp),
            ..
        } => Ok(Incoming::Event(Event {
            name,
            data: data.unwrap_or(Value::Null),
            timestamp,
        })),
        _ => Err(unrecognized()),
    }
}

/// A command as it goes on the wire.
#[derive(Serialize)]
struct Command<'a, A: Serialize + ?Sized> {
    execute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a A>,
    id: u64,
}

/// Frames one command as a JSON line: `{"execute": ..., "arguments": ..., "id": N}\n`.
pub(crate) fn encode_command<A: Serialize + ?Sized>(
    execute: &str,
    arguments: Option<&A>,
    id: u64,
) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&Command {
        execute,
        arguments,
        id,
    })?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use serde_json::json;

    #[test]
    fn parses_the_greeting_of_qemu_7_2() {
        let line = br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}"#;
        let Incoming::Greeting(greeting) = parse(line).unwrap() else {
            panic!("not a greeting");
        };
        assert_eq!(
            greeting.version.qemu,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
        assert_eq!(greeting.version.package, "Debian 1:7.2+dfsg-7+deb12u18");
        assert_eq!(greeting.capabilities, ["oob"]);
    }

    #[test]
    fn parses_replies_errors_and_events() {
        assert_eq!(
            parse(br#"{"return": {"running": true}, "id": 3}"#).unwrap(),
            Incoming::Return {
                id: Some(json!(3)),
                value: json!({"running": true})
            }
        );
        assert_eq!(
            parse(br#"{"id": 4, "error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}}"#)
                .unwrap(),
            Incoming::Error {
                id: Some(json!(4)),
                error: QmpError {
                    class: ErrorClass::DeviceNotFound,
                    desc: "Device 'x' not found".into()
                }
            }
        );
        assert_eq!(
            parse(br#"{"error": {"class": "NewClass", "desc": "d"}}"#).unwrap(),
            Incoming::Error {
                id: None,
                error: QmpError {
                    class: ErrorClass::Other("NewClass".into()),
                    desc: "d".into()
                }
            }
        );
        let event = parse(
            br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}}"#,
        )
        .unwrap();
        assert_eq!(
            event,
            Incoming::Event(Event {
                name: "SHUTDOWN".into(),
                data: json!({"guest": false, "reason": "host-signal"}),
                timestamp: Timestamp {
                    seconds: 1,
                    microseconds: 2
                }
            })
        );
        let Incoming::Event(event) =
            parse(br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(event.data, Value::Null);
    }

    #[test]
    fn rejects_what_is_not_qmp() {
        for line in [
            &b"garbage"[..],
            b"",
            b"[1,2]",
            b"{}",
            b"{\"return\": {}, \"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}",
            b"{\"event\": \"STOP\"}",
            b"{\"error\": {\"class\": 5}}",
            b"\xff\xfe",
            b"{\"return\": {}",
        ] {
            assert!(parse(line).is_err(), "{:?} was accepted", snippet(line));
        }
    }

    #[test]
    fn snippets_are_bounded() {
        let long = vec![b'x'; 1 << 20];
        assert!(snippet(&long).len() <= SNIPPET_BYTES + '…'.len_utf8());
    }

    #[test]
    fn commands_are_single_lines_with_ids() {
        let line = encode_command("screendump", Some(&json!({"filename": "/x\ny"})), 9).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(*line.last().unwrap(), b'\n');
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            json!({"execute": "screendump", "arguments": {"filename": "/x\ny"}, "id": 9})
        );
        let bare = encode_command::<Value>("stop", None, 1).unwrap();
        assert_eq!(bare, b"{\"execute\":\"stop\",\"id\":1}\n");
    }
}
