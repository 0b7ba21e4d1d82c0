//! Arbitrary bytes as a report body, in both encodings: decoding returns a value or an error,
//! never panics; a decoded report re-encodes to an equal report. (Control documents have
//! their own target, `wire_control`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::wire::{CONTENT_TYPE_JSON, CONTENT_TYPE_REPORT, Report, WireLimits};

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits::default();
    for content_type in [CONTENT_TYPE_REPORT, CONTENT_TYPE_JSON] {
        if let Ok(report) = Report::decode(content_type, data, &limits) {
            let again = Report::decode(CONTENT_TYPE_REPORT, &report.to_binary().expect("encodes"), &limits).expect("re-decodes");
            assert_eq!(again.report_id, report.report_id);
        }
    }
});
