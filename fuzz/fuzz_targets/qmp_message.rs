//! Whatever QEMU (or anything pretending to be it) sends, parsing a line never panics; and a
//! reply that parses keeps its value when written out and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgashot_qmp::message::{Incoming, parse};

fuzz_target!(|line: &[u8]| {
    if let Ok(Incoming::Return { value, .. }) = parse(line) {
        let again = format!("{{\"return\": {value}, \"id\": 1}}");
        match parse(again.as_bytes()) {
            Ok(Incoming::Return { value: reparsed, .. }) => assert_eq!(reparsed, value),
            other => panic!("a reply did not survive a round trip: {other:?}"),
        }
    }
});
