//! Arbitrary bytes as an encoded KLL sketch, categorical profile and feature profile:
//! decoding returns a value or an error, never panics; a decoded value re-encodes to bytes
//! that decode to an equal value, and its queries, updates and merges do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::sketch::{CategoricalProfile, FeatureProfile, KllSketch};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the decoder, so that one input can reach each type's header.
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let bytes = if which & 1 == 0 { data } else { rest };
    if let Ok(s) = KllSketch::from_bytes(bytes) {
        let again = KllSketch::from_bytes(&s.to_bytes()).expect("re-encoding decodes");
        assert_eq!(again, s);
        assert_eq!(s.to_bytes().len(), s.size_bytes());
        let view = s.sorted_view();
        assert_eq!(view.total_weight(), s.count());
        for q in [0.0, 0.01, 0.5, 0.99, 1.0] {
            if let Some(v) = s.quantile(q) {
                let r = s.rank(v);
                assert!((0.0..=1.0).contains(&r));
            }
        }
        let mut t = s.clone();
        t.update(0.5);
        t.merge(&s);
        assert!(t.count() >= s.count());
        assert!(t.retained() > 0);
    }
    if let Ok(p) = CategoricalProfile::from_bytes(bytes) {
        let again = CategoricalProfile::from_bytes(&p.to_bytes()).expect("re-encoding decodes");
        assert_eq!(again, p);
        let _ = (p.frequencies(), p.max_error(), p.top(5));
        let mut q = p.clone();
        q.update("x");
        q.merge(&p);
    }
    if let Ok(p) = FeatureProfile::from_bytes(bytes) {
        let again = FeatureProfile::from_bytes(&p.to_bytes()).expect("re-encoding decodes");
        assert_eq!(again, p);
        assert_eq!(p.to_bytes().len(), p.size_bytes());
        let mut q = p.clone();
        q.update_number(1.0);
        q.update_category("y");
        let _ = q.merge(&p);
    }
});
