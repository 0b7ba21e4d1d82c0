//! Arbitrary bytes as a control document, in both encodings: decoding returns a value or an
//! error, never panics; a decoded document re-encodes to an equal one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::wire::{CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON, Control, WireLimits};

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits::default();
    for content_type in [CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON] {
        if let Ok(control) = Control::decode(content_type, data, &limits) {
            let bytes = control.to_binary().expect("encodes");
            let again = Control::decode(CONTENT_TYPE_CONTROL, &bytes, &limits).expect("re-decodes");
            assert_eq!(again, control);
        }
    }
});
