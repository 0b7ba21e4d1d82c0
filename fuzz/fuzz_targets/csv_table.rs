//! Arbitrary bytes as two CSV files for `modelgate drift`: reading returns profiles or an
//! error naming the file, never a panic, whatever the line ends, quotes, encodings and read
//! boundaries; two tables that read compare without panicking, with p-values in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::drift::Thresholds;
use modelgate::drift::table::{TableOptions, compare, profile_reader};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    // The files are split at the first NUL; the control byte picks the read buffer's size
    // (to cut lines at every boundary) and exact or sketched statistics.
    let (reference, current) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let capacity = usize::from(control & 0x0f) + 1;
    let options = TableOptions {
        exact: control & 0x10 != 0,
        k: (control & 0x20 != 0).then_some(8),
        ..TableOptions::default()
    };
    let read = |bytes: &[u8], name: &str| {
        profile_reader(std::io::BufReader::with_capacity(capacity, bytes), name, &options)
    };
    let (Ok(r), Ok(c)) = (read(reference, "r.csv"), read(current, "c.csv")) else { return };
    let Ok(results) = compare(&r, &c, &Thresholds::default()) else { return };
    for result in results {
        if let Some(p) = result.missing_p_value {
            assert!((0.0..=1.0).contains(&p), "{result:?}");
        }
        if let Some(drift) = &result.drift {
            let p = drift.adjusted_p_value;
            assert!(p.is_nan() || (0.0..=1.0).contains(&p), "{result:?}");
        }
    }
});
