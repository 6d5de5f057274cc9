//! Any bytes through the IDX parsers: a header or an error, never a panic, and a header that
//! is returned must describe exactly the bytes given.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = relumax::parse_images(data, Path::new("fuzz")) {
        assert_eq!(h.offset + h.count * h.rows * h.cols, data.len());
    }
    if let Ok(h) = relumax::parse_labels(data, Path::new("fuzz")) {
        assert_eq!(h.offset + h.count, data.len());
    }
});
