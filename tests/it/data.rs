//! Loading: the bundled MNIST, every malformed IDX case, gzip and checksum handling, the
//! holdout split and the batcher.

use std::path::Path;

use crate::common::{files, gzip, listing, small_dataset, synthetic, write_dataset};
use ndarray::Array2;
use relumax::{
    Dataset, Error, LoadOptions, data::Batcher, data::ChecksumStatus, data::FileSource,
    data::Holdout, idx::encode_images, idx::encode_labels, idx::parse_images, idx::parse_labels,
};

#[test]
fn bundled_mnist_loads_with_known_counts_and_checksums() {
    let data = Dataset::bundled().unwrap();
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.as_ref().unwrap().len(), 10_000);
    assert_eq!(data.features(), 784);
    assert_eq!(data.image_shape(), Some((28, 28)));
    assert_eq!(data.classes(), 10);
    assert_eq!(
        data.train.class_histogram(10),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        data.test.as_ref().unwrap().class_histogram(10),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(data.files().len(), 4);
    for f in data.files() {
        assert_eq!(f.checksum, ChecksumStatus::Verified, "{}", f.name);
    }
    // The first training image is a 5; its centre pixel row holds ink.
    assert_eq!(data.train.labels()[0], 5);
    let (x, y) = data.train.rows(&[0]);
    assert_eq!(y, [5]);
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(x.iter().any(|&v| v == 1.0));
}

fn p() -> &'static Path {
    Path::new("bad-file")
}

#[test]
fn wrong_magic_is_rejected() {
    let lb = encode_labels(&[1, 2]);
    let err = parse_images(&lb, p()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadMagic {
                expected: 2051,
                found: 2049,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bad-file"), "{err}");
    let im = encode_images(&[0; 4], 1, 2, 2);
    assert!(matches!(
        parse_labels(&im, p()),
        Err(Error::BadMagic {
            expected: 2049,
            found: 2051,
            ..
        })
    ));
}

#[test]
fn gzip_given_as_raw_is_named() {
    let err = parse_images(&gzip(&encode_images(&[0; 4], 1, 2, 2)), p()).unwrap_err();
    assert!(matches!(err, Error::Gzipped { .. }), "{err}");
    assert!(err.to_string().contains("gzip"), "{err}");
}

#[test]
fn truncated_header_and_body_are_rejected() {
    let im = encode_images(&[7; 12], 3, 2, 2);
    for cut in [0, 3, 4, 10, 15] {
        let err = parse_images(&im[..cut], p()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated { part: "header", .. } | Error::BadMagic { .. }
            ),
            "cut {cut}: {err}"
        );
    }
    let err = parse_images(&im[..im.len() - 1], p()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                part: "body",
                expected: 28,
                found: 27,
                ..
            }
        ),
        "{err}"
    );
    let lb = encode_labels(&[1, 2, 3]);
    assert!(matches!(
        parse_labels(&lb[..6], p()),
        Err(Error::Truncated { part: "header", .. })
    ));
    assert!(matches!(
        parse_labels(&lb[..9], p()),
        Err(Error::Truncated { part: "body", .. })
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut im = encode_images(&[7; 12], 3, 2, 2);
    im.push(0);
    assert!(matches!(
        parse_images(&im, p()),
        Err(Error::TrailingBytes {
            expected: 28,
            extra: 1,
            ..
        })
    ));
}

#[test]
fn overflowing_or_zero_dimensions_are_rejected_without_allocating() {
    let header = |dims: [u32; 3]| {
        let mut b = relumax::idx::IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    };
    let err = parse_images(&header([u32::MAX, u32::MAX, u32::MAX]), p()).unwrap_err();
    assert!(matches!(err, Error::BadDimensions { .. }), "{err}");
    assert!(err.to_string().contains("overflow"), "{err}");
    let err = parse_images(&header([0, 28, 28]), p()).unwrap_err();
    assert!(matches!(err, Error::BadDimensions { .. }), "{err}");
    // 2^40 images of one pixel: fails on length, never allocates 1 TiB.
    let err = parse_images(&header([1 << 20, 1 << 10, 1 << 10]), p()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { part: "body", .. }),
        "{err}"
    );
}

fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn count_mismatch_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let s = synthetic(20, 10, 4, 4, 3);
    let mut f = files(&s).to_vec();
    f[1].1 = encode_labels(&s.train_labels[..19]);
    write_files(tmp.path(), &f);
    let err = Dataset::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::CountMismatch {
                images: 20,
                labels: 19,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn label_at_or_above_class_count_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let s = synthetic(20, 10, 4, 4, 3);
    let mut f = files(&s).to_vec();
    // The training labels define 3 classes; a test label of 3 is out of range.
    let mut test_labels = s.test_labels.clone();
    test_labels[4] = 3;
    f[3].1 = encode_labels(&test_labels);
    write_files(tmp.path(), &f);
    let err = Dataset::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                index: 4,
                label: 3,
                classes: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
    // An explicit class count applies to the training labels too.
    let opts = LoadOptions {
        classes: Some(2),
        ..Default::default()
    };
    let err = Dataset::open_with(tmp.path(), &opts).unwrap_err();
    assert!(
        matches!(err, Error::LabelOutOfRange { classes: 2, .. }),
        "{err}"
    );
}

#[test]
fn train_and_test_image_sizes_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let s = synthetic(20, 10, 4, 4, 3);
    let mut f = files(&s).to_vec();
    f[2].1 = encode_images(&[0; 10 * 20], 10, 4, 5);
    write_files(tmp.path(), &f);
    let err = Dataset::open(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::ImageSize { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("t10k-images-idx3-ubyte: images of 4x5 pixels")
            && text.contains("train-images-idx3-ubyte holds 4x4"),
        "{text}"
    );
    // The same pixel count in another shape (8x8 against 4x16) is another size too.
    let s = synthetic(20, 10, 8, 8, 3);
    let mut f = files(&s).to_vec();
    f[2].1 = encode_images(&[0; 10 * 64], 10, 4, 16);
    write_files(tmp.path(), &f);
    let text = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(text.contains("4x16") && text.contains("8x8"), "{text}");
}

#[test]
fn missing_folder_and_missing_file_are_named() {
    let err = Dataset::open("/nonexistent/relumax-data").unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/relumax-data"),
        "{err}"
    );
    let (_tmp, dir) = small_dataset(false);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = Dataset::open(&dir).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
}

#[test]
fn gzipped_folder_is_verified_cached_and_then_mapped() {
    let (_tmp, dir) = small_dataset(true);
    let first = Dataset::open(&dir).unwrap();
    for f in first.files() {
        assert_eq!(f.source, FileSource::DecompressedCached);
        assert_eq!(f.checksum, ChecksumStatus::Verified);
    }
    assert!(dir.join("train-images-idx3-ubyte").is_file());
    let second = Dataset::open(&dir).unwrap();
    for f in second.files() {
        assert_eq!(f.source, FileSource::Raw);
    }
    let all: Vec<usize> = (0..first.train.len()).collect();
    assert_eq!(first.train.rows(&all), second.train.rows(&all));
    // No temporary files are left behind: the hidden files are the caches' records.
    let hidden: Vec<String> = listing(&dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    let records: Vec<String> = files(&synthetic(1, 1, 1, 1, 1))
        .iter()
        .map(|(name, _)| format!(".{name}.source"))
        .collect();
    assert_eq!(hidden.len(), 4, "{hidden:?}");
    assert!(hidden.iter().all(|n| records.contains(n)), "{hidden:?}");
}

/// Opens `dir` without checksums (the tests below replace files without updating them).
fn open_unverified(dir: &Path) -> relumax::Result<Dataset> {
    Dataset::open_with(
        dir,
        &LoadOptions {
            verify: false,
            ..LoadOptions::default()
        },
    )
}

#[test]
fn multi_member_gzip_is_read_whole_as_zcat_reads_it() {
    let (_tmp, dir) = small_dataset(true);
    let (name, bytes) = files(&synthetic(1000, 300, 8, 8, 4))[0].clone();
    let mut members = gzip(&bytes[..bytes.len() / 3]);
    members.extend(gzip(&bytes[bytes.len() / 3..]));
    std::fs::write(dir.join(format!("{name}.gz")), members).unwrap();
    let data = Dataset::open(&dir).unwrap();
    assert_eq!(data.train.len(), 1000);
    assert_eq!(
        std::fs::read(dir.join(name)).unwrap(),
        bytes,
        "the cache holds every member"
    );
}

#[test]
fn a_replaced_gzip_is_read_again_instead_of_its_stale_cache() {
    let (_tmp, dir) = small_dataset(true);
    let old = open_unverified(&dir).unwrap();
    assert_eq!(old.train.len(), 1000);
    // The same folder with other data: the caches of the old `.gz` files must not be read.
    let other = synthetic(600, 200, 8, 8, 4);
    for (name, bytes) in files(&other) {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
    }
    let new = open_unverified(&dir).unwrap();
    assert_eq!(
        (new.train.len(), new.test.as_ref().unwrap().len()),
        (600, 200)
    );
    assert!(
        new.files()
            .iter()
            .all(|f| f.source == FileSource::DecompressedCached)
    );
    assert_eq!(
        std::fs::read(dir.join(files(&other)[0].0)).unwrap(),
        files(&other)[0].1
    );
    // A raw file the user made (no record) is still preferred to the `.gz`.
    let (_tmp2, raw_dir) = small_dataset(false);
    let (name, bytes) = files(&synthetic(1000, 300, 8, 8, 4))[1].clone();
    std::fs::write(raw_dir.join(format!("{name}.gz")), gzip(&bytes[..20])).unwrap();
    assert!(Dataset::open(&raw_dir).is_ok());
}

#[test]
fn a_gzip_that_fails_any_check_leaves_no_cache_and_its_fix_is_read() {
    let (_tmp, dir) = small_dataset(true);
    let (name, bytes) = files(&synthetic(1000, 300, 8, 8, 4))[1].clone();
    let gz = dir.join(format!("{name}.gz"));
    // Valid gzip, but IDX with two bytes more than its header describes.
    let mut long = bytes.clone();
    long.extend([1, 2]);
    std::fs::write(&gz, gzip(&long)).unwrap();
    let err = open_unverified(&dir).unwrap_err();
    assert!(err.to_string().contains(&format!("{name}.gz")), "{err}");
    assert!(!dir.join(name).exists(), "cached a file that failed");
    std::fs::write(&gz, gzip(&bytes)).unwrap();
    assert_eq!(open_unverified(&dir).unwrap().train.len(), 1000);
}

#[test]
fn a_gzip_bomb_is_refused_after_the_bytes_its_header_describes() {
    let (_tmp, dir) = small_dataset(true);
    let (name, bytes) = files(&synthetic(1000, 300, 8, 8, 4))[1].clone();
    let gz = dir.join(format!("{name}.gz"));
    // A label file's header for 1,000 labels, then 64 MiB of zeros: a few hundred KiB of
    // gzip that must not be decompressed whole.
    let mut bomb = bytes.clone();
    bomb.resize(64 << 20, 0);
    std::fs::write(&gz, gzip(&bomb)).unwrap();
    let err = open_unverified(&dir).unwrap_err();
    assert!(matches!(err, Error::Oversized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{name}.gz"))
            && text.contains("more than the 1008 bytes its IDX header describes"),
        "{text}"
    );
    // A header that describes more than relumax reads at all: refused before reading on.
    let huge = [0u8, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 1, 0];
    let images = dir.join(format!("{}.gz", files(&synthetic(1, 1, 1, 1, 1))[0].0));
    std::fs::write(&images, gzip(&huge)).unwrap();
    let err = open_unverified(&dir).unwrap_err();
    assert!(matches!(err, Error::Oversized { .. }), "{err}");
    assert!(!dir.join(name).exists());
}

#[test]
fn corrupt_gzip_is_reported_and_leaves_no_cache() {
    let (_tmp, dir) = small_dataset(true);
    let gz = dir.join("train-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&gz).unwrap();
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    std::fs::write(&gz, bytes).unwrap();
    let err = Dataset::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. }), "{err}");
    assert!(
        err.to_string().contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );
    assert!(!dir.join("train-images-idx3-ubyte").exists());
    assert!(listing(&dir).iter().all(|n| !n.starts_with('.')));
}

#[test]
fn checksum_mismatch_is_reported_and_leaves_no_cache() {
    let (_tmp, dir) = small_dataset(true);
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let bad = sums.replacen(|c: char| c.is_ascii_hexdigit(), "0", 1);
    let bad = if bad == sums {
        sums.replacen('0', "1", 1)
    } else {
        bad
    };
    std::fs::write(dir.join("SHA256SUMS"), bad).unwrap();
    let err = Dataset::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!dir.join("train-images-idx3-ubyte").exists());
    // Verification can be turned off.
    let opts = LoadOptions {
        verify: false,
        ..Default::default()
    };
    let data = Dataset::open_with(&dir, &opts).unwrap();
    assert!(
        data.files()
            .iter()
            .all(|f| f.checksum == ChecksumStatus::Skipped)
    );
}

#[test]
fn raw_folder_without_sums_loads() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), &synthetic(50, 20, 3, 5, 7), false, false);
    let data = Dataset::open(tmp.path()).unwrap();
    assert_eq!(
        (
            data.train.len(),
            data.test.as_ref().unwrap().len(),
            data.features()
        ),
        (50, 20, 15)
    );
    assert_eq!(data.image_shape(), Some((3, 5)));
    assert!(
        data.files()
            .iter()
            .all(|f| f.checksum == ChecksumStatus::NoSumsFile)
    );
    assert!(data.files().iter().all(|f| f.source == FileSource::Raw));
}

#[test]
fn unwritable_cache_falls_back_to_memory_and_says_so_once() {
    let (_tmp, dir) = small_dataset(true);
    // A folder where the cache file would go makes the rename fail, as a read-only folder
    // would (permissions do not stop root, who runs CI).
    for name in relumax::data::FILE_NAMES {
        std::fs::create_dir(dir.join(name)).unwrap();
    }
    let data = Dataset::open(&dir).unwrap();
    assert!(
        data.files()
            .iter()
            .all(|f| f.source == FileSource::DecompressedInMemory)
    );
    assert_eq!(data.notes().len(), 1, "{:?}", data.notes());
    assert!(data.notes()[0].contains("into memory"));
    assert_eq!(data.train.len(), 1000);
    let opts = LoadOptions {
        write_cache: false,
        ..Default::default()
    };
    let (_tmp2, dir2) = small_dataset(true);
    let data = Dataset::open_with(&dir2, &opts).unwrap();
    assert!(
        data.files()
            .iter()
            .all(|f| f.source == FileSource::DecompressedInMemory)
    );
    assert!(!dir2.join("train-images-idx3-ubyte").exists());
}

#[test]
fn holdout_is_a_deterministic_partition() {
    let h = Holdout::new(60_000, 0.2, 0);
    assert_eq!((h.train.len(), h.val.len()), (48_000, 12_000));
    let mut all: Vec<usize> = h.train.iter().chain(&h.val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..60_000).collect::<Vec<_>>());
    assert_eq!(h, Holdout::new(60_000, 0.2, 0));
    assert_ne!(h, Holdout::new(60_000, 0.2, 1));
    let h = Holdout::new(1000, 0.25, 3);
    assert_eq!(h.val.len(), 250);
    // The validation part is not simply the tail.
    assert!(h.val.iter().any(|&i| i < 750));
}

#[test]
fn batches_cover_every_index_once_per_epoch_and_keep_the_short_last_batch() {
    let (_tmp, dir) = small_dataset(false);
    let data = Dataset::open(&dir).unwrap();
    let h = Holdout::new(data.train.len(), 0.2, 5);
    let mut b = Batcher::new(h.train.clone(), 32, data.features(), 5);
    assert_eq!(b.num_batches(), 25); // 800 / 32 = 25 exactly
    let mut b7 = Batcher::new(h.train.clone(), 7, data.features(), 5);
    assert_eq!(b7.num_batches(), 115); // 114 full batches of 7 and one of 2
    let mut orders = Vec::new();
    for epoch in 0..2 {
        b7.shuffle(epoch);
        let mut seen = Vec::new();
        for i in 0..b7.num_batches() {
            let idx = b7.indices(i).to_vec();
            let (x, y) = b7.batch(&data.train, i);
            assert_eq!(x.nrows(), idx.len());
            assert!(x.is_standard_layout());
            let (want_x, want_y) = data.train.rows(&idx);
            assert_eq!(x, want_x);
            assert_eq!(y, &want_y[..]);
            seen.extend(idx);
        }
        assert_eq!(b7.indices(b7.num_batches() - 1).len(), 2);
        orders.push(seen.clone());
        seen.sort_unstable();
        assert_eq!(seen, h.train);
    }
    assert_ne!(orders[0], orders[1], "each epoch reshuffles");
    b.shuffle(1);
    let again: Vec<usize> = (0..b.num_batches())
        .flat_map(|i| b.indices(i).to_vec())
        .collect();
    let mut b2 = Batcher::new(h.train.clone(), 32, data.features(), 5);
    b2.shuffle(1);
    let twice: Vec<usize> = (0..b2.num_batches())
        .flat_map(|i| b2.indices(i).to_vec())
        .collect();
    assert_eq!(
        again, twice,
        "an epoch's order depends only on (seed, epoch)"
    );
}

#[test]
fn large_batches_gathered_in_two_halves_hold_the_same_rows_on_any_thread_count() {
    // Batches of 16 rows or more are gathered in two halves on two threads when there are two.
    let (_tmp, dir) = small_dataset(false);
    let data = Dataset::open(&dir).unwrap();
    let h = Holdout::new(data.train.len(), 0.2, 5);
    for threads in [1, 2] {
        crate::common::pool(threads).install(|| {
            for size in [16, 32, 33] {
                let mut b = Batcher::new(h.train.clone(), size, data.features(), 5);
                b.shuffle(3);
                for i in 0..b.num_batches() {
                    let idx = b.indices(i).to_vec();
                    let (x, y) = b.batch(&data.train, i);
                    let (want_x, want_y) = data.train.rows(&idx);
                    assert_eq!(x, want_x, "{threads} threads, batch size {size}, batch {i}");
                    assert_eq!(y, &want_y[..]);
                }
            }
        });
    }
}

#[test]
fn gathered_pixels_are_scaled_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = synthetic(10, 5, 2, 3, 2);
    write_dataset(tmp.path(), &s, false, false);
    let data = Dataset::open(tmp.path()).unwrap();
    let (x, y) = data.train.rows(&[3, 1]);
    for (r, &i) in [3usize, 1].iter().enumerate() {
        assert_eq!(y[r], u32::from(s.train_labels[i]));
        for j in 0..6 {
            assert_eq!(x[[r, j]], f32::from(s.train_images[i * 6 + j]) / 255.0);
        }
    }
}

#[test]
fn in_memory_datasets_take_any_shape() {
    let x = Array2::from_shape_fn((30, 5), |(i, j)| (i * j) as f32);
    let y: Vec<u32> = (0..30).map(|i| i % 3).collect();
    let data = Dataset::from_arrays(x.clone(), y.clone(), 3)
        .unwrap()
        .with_test(x.clone(), y.clone())
        .unwrap();
    assert_eq!(
        (data.features(), data.classes(), data.image_shape()),
        (5, 3, None)
    );
    assert_eq!(data.train.rows(&[7]).0.row(0), x.row(7));
    let err = Dataset::from_arrays(x.clone(), y[..29].to_vec(), 3)
        .and_then(|d| d.with_test(x.clone(), y.clone()));
    assert!(matches!(err, Err(Error::Shape { .. })));
    let err = Dataset::from_arrays(x.clone(), y.clone(), 2)
        .and_then(|d| d.with_test(x, y))
        .unwrap_err();
    assert!(
        matches!(err, Error::LabelOutOfRange { classes: 2, .. }),
        "{err}"
    );
}

#[test]
fn a_malformed_checksum_list_is_an_error_naming_its_line() {
    let (_tmp, dir) = small_dataset(false);
    let sums = dir.join("SHA256SUMS");
    let good = std::fs::read_to_string(&sums).unwrap();
    for bad in [
        format!("{good}not a checksum line\n"),
        good.replacen(|c: char| c.is_ascii_hexdigit(), "", 1),
        format!("{}  \n", "a".repeat(64)),
    ] {
        std::fs::write(&sums, &bad).unwrap();
        let err = Dataset::open(&dir).unwrap_err();
        assert!(matches!(err, Error::SumsFile { .. }), "{err}");
        assert!(err.to_string().contains("SHA256SUMS: line "), "{err}");
    }
    // Blank lines and binary-mode names (`*name`) are the format's own.
    std::fs::write(&sums, format!("\n{}", good.replace("  ", " *"))).unwrap();
    assert!(Dataset::open(&dir).is_ok());
}

#[test]
fn labels_that_skip_classes_are_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = synthetic(40, 10, 4, 4, 3);
    s.train_labels[7] = 255;
    write_dataset(tmp.path(), &s, false, false);
    let data = Dataset::open(tmp.path()).unwrap();
    assert_eq!(data.classes(), 256);
    let notes = data.notes().join("\n");
    assert!(
        notes.contains("252 of the 256 classes (labels 0..255) have no training image, and"),
        "{notes}"
    );
    // Labels 0..3 all present: nothing to say.
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path(), &synthetic(40, 10, 4, 4, 3), false, false);
    assert!(Dataset::open(tmp.path()).unwrap().notes().is_empty());
}
