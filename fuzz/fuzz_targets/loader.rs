//! Any bytes as one file of a dataset folder (the training labels, gzipped or raw as the first
//! byte says), the three others valid, through the real loader: a dataset or an error, never a
//! panic, and never more memory than the IDX header describes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relumax::{Dataset, LoadOptions, encode_images, encode_labels};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = encode_images(&[7; 4 * 2 * 2], 4, 2, 2);
    let labels = encode_labels(&[0, 1, 0, 1]);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let name = if mode % 2 == 0 {
        "train-labels-idx1-ubyte.gz"
    } else {
        "train-labels-idx1-ubyte"
    };
    std::fs::write(dir.path().join(name), file).unwrap();
    let options = LoadOptions {
        verify: false,
        write_cache: mode % 4 < 2,
        ..LoadOptions::default()
    };
    if let Ok(data) = Dataset::open_with(dir.path(), &options) {
        assert_eq!(data.train.len(), 4);
        // A cache written from a `.gz` is read back to the same dataset.
        let again = Dataset::open_with(dir.path(), &options).expect("a loaded folder loads again");
        assert_eq!(again.classes(), data.classes());
    }
});
