//! Datasets: IDX folders (raw or gzipped, checksummed, memory-mapped) and in-memory arrays, the
//! seeded train/validation holdout, and the mini-batch gatherer.
//!
//! Pixels stay as the mapped `u8` bytes; a batch is gathered on demand into one reused
//! row-major `(batch, features)` `f32` buffer scaled to `[0, 1]` as `x / 255`. Nothing here
//! knows about models.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::idx;
use crate::kernels;
use crate::mmap::{self, Bytes};
use crate::model::check_labels;
use crate::rng::{self, Stream};

/// The four standard IDX file names a dataset folder holds (each raw or with `.gz`).
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The environment variable that points [`Dataset::bundled`] at a folder holding MNIST's
/// four files (raw or `.gz`).
pub const MNIST_ENV: &str = "RELUMAX_MNIST";

/// The name of the checksum list in a dataset folder (`sha256sum` format, digests of the
/// decompressed files).
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Decompressed files larger than this are refused (a gzip bomb must not exhaust memory).
const MAX_DECOMPRESSED: u64 = 1 << 32;

/// Batches of at least this many rows are gathered in two halves on two threads: the scattered
/// rows' cache misses then overlap, and the second thread already holds half of the batch
/// when the forward product starts (`docs/performance.md`, "Split gather").
const GATHER_SPLIT_MIN_ROWS: usize = 16;

/// How a file's checksum was checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChecksumStatus {
    /// The SHA-256 of the decompressed bytes matches `SHA256SUMS`.
    Verified,
    /// `SHA256SUMS` exists but does not list this file.
    NotListed,
    /// The folder has no `SHA256SUMS`.
    NoSumsFile,
    /// Verification was turned off ([`LoadOptions::verify`]).
    Skipped,
}

/// Where a file's bytes came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileSource {
    /// A raw IDX file, memory-mapped.
    Raw,
    /// Decompressed from `.gz` now and cached beside it as a raw file, then mapped.
    DecompressedCached,
    /// Decompressed from `.gz` into memory, since the folder could not be written.
    DecompressedInMemory,
}

/// What loading found out about one of the four files.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileReport {
    /// The standard name (without `.gz`).
    pub name: String,
    /// Where the bytes came from.
    pub source: FileSource,
    /// The checksum outcome.
    pub checksum: ChecksumStatus,
}

/// Options for [`Dataset::open_with`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Number of classes. Default `None`: the largest training label plus one.
    pub classes: Option<usize>,
    /// Verify SHA-256 digests against `SHA256SUMS` when the folder has one. Default `true`.
    pub verify: bool,
    /// Cache decompressed `.gz` files as raw files beside them. Default `true`.
    pub write_cache: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            classes: None,
            verify: true,
            write_cache: true,
        }
    }
}

#[derive(Debug)]
enum Pixels {
    /// u8 pixels in an IDX file, starting at `offset`.
    Idx { bytes: Bytes, offset: usize },
    /// f32 features supplied by the caller.
    Array(Array2<f32>),
}

/// One split of a dataset (training, test or validation): samples with their labels.
#[derive(Debug)]
pub struct Split {
    pixels: Pixels,
    labels: Vec<u32>,
    features: usize,
}

impl Split {
    /// A split of in-memory features and labels, checked: as many labels as rows, each below
    /// `classes`, every feature finite. `what` names the split in errors.
    fn from_array(x: Array2<f32>, y: Vec<u32>, classes: usize, what: &str) -> Result<Split> {
        if x.nrows() != y.len() {
            return Err(Error::Shape {
                what: format!("{what} labels vs {what} rows"),
                expected: x.nrows(),
                found: y.len(),
            });
        }
        check_labels(&y, classes, &format!("{what}_y"))?;
        if let Some(((row, column), &value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("{what} features"),
                row,
                column,
                value,
            });
        }
        let features = x.ncols();
        Ok(Split {
            pixels: Pixels::Array(x.as_standard_layout().into_owned()),
            labels: y,
            features,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per sample (784 for MNIST).
    pub fn features(&self) -> usize {
        self.features
    }

    /// All labels, in file order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Samples per class, for `classes` classes.
    ///
    /// # Panics
    /// If a label is `>= classes` (loading guarantees labels below the dataset's class count).
    pub fn class_histogram(&self, classes: usize) -> Vec<usize> {
        let mut h = vec![0; classes];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }

    /// Copies the samples at `indices` into the rows of `x` (scaled to `[0, 1]` for IDX data)
    /// and their labels into `y`.
    ///
    /// # Panics
    /// If `x` is not `(indices.len(), features)` in standard layout, `y` is not
    /// `indices.len()` long, or an index is out of range.
    pub fn gather(&self, indices: &[usize], mut x: ArrayViewMut2<'_, f32>, y: &mut [u32]) {
        let f = self.features;
        assert_eq!(x.dim(), (indices.len(), f), "gather: destination shape");
        assert_eq!(y.len(), indices.len(), "gather: label buffer length");
        let dst = x
            .as_slice_mut()
            .expect("gather: destination must be in standard layout");
        for ((row, &i), label) in dst.chunks_exact_mut(f).zip(indices).zip(y.iter_mut()) {
            *label = self.labels[i];
            match &self.pixels {
                Pixels::Idx { bytes, offset } => {
                    kernels::pixels_to_features(&bytes[offset + i * f..offset + (i + 1) * f], row);
                }
                Pixels::Array(a) => row.copy_from_slice(
                    a.row(i)
                        .to_slice()
                        .expect("in-memory features are standard layout"),
                ),
            }
        }
    }

    /// Hints the CPU to fetch the features of the samples at `indices` into cache (for the next
    /// batch, while the current one trains). Out-of-range indices are ignored.
    pub(crate) fn prefetch(&self, indices: &[usize]) {
        let f = self.features;
        for &i in indices.iter().filter(|&&i| i < self.labels.len()) {
            match &self.pixels {
                Pixels::Idx { bytes, offset } => {
                    kernels::prefetch(&bytes[offset + i * f..offset + (i + 1) * f]);
                }
                Pixels::Array(a) => kernels::prefetch(a.row(i).as_slice().unwrap_or(&[])),
            }
        }
    }

    /// The samples at `indices` as a new `(indices.len(), features)` matrix, with their labels.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn rows(&self, indices: &[usize]) -> (Array2<f32>, Vec<u32>) {
        let mut x = crate::aligned::zeros(indices.len(), self.features);
        let mut y = vec![0; indices.len()];
        self.gather(indices, x.view_mut(), &mut y);
        (x, y)
    }
}

/// A dataset: a training split (from which the holdout is drawn), an optional test split and
/// an optional validation split of the user's.
#[derive(Debug)]
pub struct Dataset {
    /// The training split (`train-*` files).
    pub train: Split,
    /// The test split (`t10k-*` files; for in-memory data, the one given with
    /// [`Dataset::with_test`], if any). Without it, [`crate::TrainResult::test`] is `None`.
    pub test: Option<Split>,
    /// A validation split of the user's ([`Dataset::with_validation`]), which training uses
    /// instead of holding out part of `train`.
    validation: Option<Split>,
    classes: usize,
    image_shape: Option<(usize, usize)>,
    files: Vec<FileReport>,
    notes: Vec<String>,
}

impl Dataset {
    /// The MNIST folder [`Dataset::bundled`] opens: the one [`MNIST_ENV`] names if it is set,
    /// else this source tree's `data/mnist` (shipped in the repository, not in the crates.io
    /// package).
    pub fn bundled_dir() -> PathBuf {
        match std::env::var_os(MNIST_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data")
                .join("mnist"),
        }
    }

    /// Opens MNIST from [`Dataset::bundled_dir`] with default options.
    ///
    /// # Errors
    /// [`Error::NoMnist`] when that folder does not exist (a relumax from crates.io ships no
    /// data: download MNIST and use [`Dataset::open`], or set [`MNIST_ENV`]); otherwise as
    /// [`Dataset::open_with`].
    pub fn bundled() -> Result<Dataset> {
        let dir = Dataset::bundled_dir();
        if !dir.exists() {
            return Err(Error::NoMnist { dir });
        }
        Dataset::open(dir)
    }

    /// Opens an IDX dataset folder with default options.
    ///
    /// # Errors
    /// As [`Dataset::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        Dataset::open_with(dir, &LoadOptions::default())
    }

    /// Opens a folder holding the four standard IDX files ([`FILE_NAMES`]), each raw or gzipped.
    ///
    /// Gzipped files are decompressed, checked against `SHA256SUMS` when present, and cached
    /// raw beside the `.gz` (atomically: temp file, sync, rename), then memory-mapped. Where the
    /// folder is read-only they are kept in memory and [`Dataset::notes`] says so.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::MissingFile`] for a missing folder or file; [`Error::Gzip`]
    /// or [`Error::Checksum`] for corrupt data (no cache is written then); any IDX error from
    /// [`crate::idx::parse_images`]; [`Error::CountMismatch`], [`Error::Shape`] (train and test feature
    /// counts differ) or [`Error::LabelOutOfRange`].
    pub fn open_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Dataset> {
        let dir = dir.as_ref();
        let meta = std::fs::metadata(dir).map_err(|source| Error::Read {
            path: dir.into(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(Error::Read {
                path: dir.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
            });
        }
        let sums = read_sums(dir)?;
        let mut files = Vec::with_capacity(4);
        let mut in_memory = false;
        let mut load = |name: &str| -> Result<(Bytes, PathBuf)> {
            let (bytes, report, path) = load_file(dir, name, sums.as_ref(), opts)?;
            in_memory |= report.source == FileSource::DecompressedInMemory;
            files.push(report);
            Ok((bytes, path))
        };
        let train = load_split(load(FILE_NAMES[0])?, load(FILE_NAMES[1])?)?;
        let test = load_split(load(FILE_NAMES[2])?, load(FILE_NAMES[3])?)?;
        let mut notes = Vec::new();
        if in_memory {
            notes.push(format!(
                "{} is not writable: decompressed the data into memory instead of caching it",
                dir.display()
            ));
        }
        if train.1 != test.1 {
            return Err(Error::ImageSize {
                train: train.3,
                train_shape: train.1,
                test: test.3,
                test_shape: test.1,
            });
        }
        let classes = match opts.classes {
            Some(c) => c,
            None => train.0.labels.iter().max().map_or(0, |&m| m as usize + 1),
        };
        let mut seen = vec![false; classes];
        for &label in &train.0.labels {
            if let Some(s) = seen.get_mut(label as usize) {
                *s = true;
            }
        }
        let missing = seen.iter().filter(|&&s| !s).count();
        if missing > 0 {
            notes.push(format!(
                "{}: {missing} of the {classes} classes (labels 0..{}) have no training image, \
                 and the network gets an output for each",
                train.2.display(),
                classes - 1
            ));
        }
        for (split, path) in [(&train.0, &train.2), (&test.0, &test.2)] {
            check_labels(&split.labels, classes, &path.display().to_string())?;
        }
        Ok(Dataset {
            image_shape: Some(train.1),
            train: train.0,
            test: Some(test.0),
            validation: None,
            classes,
            files,
            notes,
        })
    }

    /// Builds a dataset from in-memory training features (`(samples, features)`, finite) and
    /// labels (below `classes`); add a test split with [`Dataset::with_test`] and a validation
    /// split with [`Dataset::with_validation`].
    ///
    /// # Errors
    /// [`Error::Shape`] when the label vector's length differs from the matrix's rows;
    /// [`Error::LabelOutOfRange`] for a label `>= classes`; [`Error::NonFinite`] for a NaN or
    /// infinite feature, naming its row and column.
    pub fn from_arrays(x: Array2<f32>, y: Vec<u32>, classes: usize) -> Result<Dataset> {
        Ok(Dataset {
            train: Split::from_array(x, y, classes, "train")?,
            test: None,
            validation: None,
            classes,
            image_shape: None,
            files: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// This dataset with a test split of your own (`(samples, features)` and labels), on which
    /// training evaluates the final model; it replaces any test split there was.
    ///
    /// # Errors
    /// As [`Dataset::from_arrays`], and [`Error::Shape`] when the feature count differs from
    /// the training split's.
    pub fn with_test(mut self, x: Array2<f32>, y: Vec<u32>) -> Result<Dataset> {
        self.test = Some(self.matching_split(x, y, "test")?);
        Ok(self)
    }

    /// This dataset with a validation split of your own (`(samples, features)` and labels):
    /// training then uses the whole training split and evaluates this one after every epoch,
    /// instead of holding out `val_fraction` of the training split.
    ///
    /// # Errors
    /// As [`Dataset::from_arrays`]: the shapes must agree with the training split's features,
    /// labels lie below the class count, features be finite.
    pub fn with_validation(mut self, x: Array2<f32>, y: Vec<u32>) -> Result<Dataset> {
        self.validation = Some(self.matching_split(x, y, "validation")?);
        Ok(self)
    }

    /// A split named `name` from arrays whose features match the training split's.
    fn matching_split(&self, x: Array2<f32>, y: Vec<u32>, name: &str) -> Result<Split> {
        let split = Split::from_array(x, y, self.classes, name)?;
        if split.features != self.train.features {
            return Err(Error::Shape {
                what: format!("{name} features vs training features"),
                expected: self.train.features,
                found: split.features,
            });
        }
        Ok(split)
    }

    /// The validation split given with [`Dataset::with_validation`], if any.
    pub fn validation(&self) -> Option<&Split> {
        self.validation.as_ref()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        self.train.features
    }

    /// `(rows, cols)` of each image for IDX data; `None` for in-memory data.
    pub fn image_shape(&self) -> Option<(usize, usize)> {
        self.image_shape
    }

    /// What loading found out about each file (empty for in-memory data).
    pub fn files(&self) -> &[FileReport] {
        &self.files
    }

    /// Things worth telling the user about how the data was loaded (the library never prints).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// A split, its images' `(rows, cols)`, and the paths of its label and image files.
type LoadedSplit = (Split, (usize, usize), PathBuf, PathBuf);

fn load_split(images: (Bytes, PathBuf), labels: (Bytes, PathBuf)) -> Result<LoadedSplit> {
    let images_path = images.1.clone();
    let ih = idx::parse_images(&images.0, &images.1)?;
    let lh = idx::parse_labels(&labels.0, &labels.1)?;
    if ih.count != lh.count {
        return Err(Error::CountMismatch {
            images_path: images.1,
            images: ih.count,
            labels_path: labels.1,
            labels: lh.count,
        });
    }
    let label_values = labels.0[lh.offset..]
        .iter()
        .map(|&b| u32::from(b))
        .collect();
    let split = Split {
        pixels: Pixels::Idx {
            bytes: images.0,
            offset: ih.offset,
        },
        labels: label_values,
        features: ih.features(),
    };
    Ok((split, (ih.rows, ih.cols), labels.1, images_path))
}

fn read_sums(dir: &Path) -> Result<Option<HashMap<String, String>>> {
    let path = dir.join(SUMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let mut sums = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // `sha256sum`'s format: 64 hex digits, white space, the name (`*` marks binary mode).
        let entry = line
            .split_once(char::is_whitespace)
            .and_then(|(digest, name)| {
                let name = name.trim_start().trim_start_matches('*');
                let hex = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
                (hex && !name.is_empty()).then(|| (name.to_string(), digest.to_ascii_lowercase()))
            });
        let Some((name, digest)) = entry else {
            return Err(Error::SumsFile {
                path,
                line: n + 1,
                reason: "expected a SHA-256 digest (64 hex digits), white space and a file name"
                    .into(),
            });
        };
        sums.insert(name, digest);
    }
    Ok(Some(sums))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn verify(
    bytes: &[u8],
    name: &str,
    path: &Path,
    sums: Option<&HashMap<String, String>>,
    opts: &LoadOptions,
) -> Result<ChecksumStatus> {
    if !opts.verify {
        return Ok(ChecksumStatus::Skipped);
    }
    let Some(sums) = sums else {
        return Ok(ChecksumStatus::NoSumsFile);
    };
    let Some(expected) = sums.get(name) else {
        return Ok(ChecksumStatus::NotListed);
    };
    let found = sha256_hex(bytes);
    if &found != expected {
        return Err(Error::Checksum {
            path: path.into(),
            expected: expected.clone(),
            found,
        });
    }
    Ok(ChecksumStatus::Verified)
}

fn load_file(
    dir: &Path,
    name: &str,
    sums: Option<&HashMap<String, String>>,
    opts: &LoadOptions,
) -> Result<(Bytes, FileReport, PathBuf)> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Read { path, source }
    };
    let report = |source, checksum| FileReport {
        name: name.into(),
        source,
        checksum,
    };
    if raw.is_file() && !Cache::new(dir, name).is_stale(&gz) {
        let file = File::open(&raw).map_err(read_err(&raw))?;
        let bytes = mmap::map(&file).map_err(read_err(&raw))?;
        let checksum = verify(&bytes, name, &raw, sums, opts)?;
        return Ok((bytes, report(FileSource::Raw, checksum), raw));
    }
    if !gz.is_file() {
        return Err(Error::MissingFile {
            dir: dir.into(),
            name: name.into(),
        });
    }
    let data = decompress(&gz)?;
    let checksum = verify(&data, name, &gz, sums, opts)?;
    // Only data that passed every check is cached.
    if name.contains("images") {
        idx::parse_images(&data, &gz)?;
    } else {
        idx::parse_labels(&data, &gz)?;
    }
    if opts.write_cache
        && let Some(bytes) = Cache::new(dir, name).write(&raw, &gz, &data)
    {
        return Ok((bytes, report(FileSource::DecompressedCached, checksum), raw));
    }
    Ok((
        Bytes::Owned(data),
        report(FileSource::DecompressedInMemory, checksum),
        gz,
    ))
}

/// The record beside a decompressed cache of the `.gz` it came from (`.NAME.source`: the
/// `.gz`'s length and modification time), so that a replaced `.gz` is decompressed again
/// instead of its stale cache being read. A raw file without a record is the user's own.
struct Cache {
    record: PathBuf,
}

impl Cache {
    fn new(dir: &Path, name: &str) -> Cache {
        Cache {
            record: dir.join(format!(".{name}.source")),
        }
    }

    /// The identity of `gz`: its length and modification time in nanoseconds.
    fn identity(gz: &Path) -> Option<String> {
        let meta = std::fs::metadata(gz).ok()?;
        let modified = meta.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(format!("{} {}", meta.len(), since.as_nanos()))
    }

    /// Whether the raw file is a cache of another `.gz` than the one now beside it.
    fn is_stale(&self, gz: &Path) -> bool {
        match std::fs::read_to_string(&self.record) {
            Ok(recorded) => gz.is_file() && Cache::identity(gz).as_deref() != Some(recorded.trim()),
            Err(_) => false,
        }
    }

    /// Writes `data` to `raw` atomically, with its record, and maps it; `None` when the
    /// folder cannot be written. The old cache goes first and the record before the data, so
    /// that no interruption leaves a record that vouches for other bytes.
    fn write(&self, raw: &Path, gz: &Path, data: &[u8]) -> Option<Bytes> {
        let dir = raw.parent()?;
        let identity = Cache::identity(gz)?;
        if raw.is_file() {
            std::fs::remove_file(raw).ok()?;
        }
        crate::fs::write_atomic(&self.record, identity.as_bytes()).ok()?;
        let mut tmp = crate::fs::temp_file_in(dir, ".relumax-cache-").ok()?;
        tmp.write_all(data).ok()?;
        tmp.as_file().sync_all().ok()?;
        let file = tmp.persist(raw).ok()?;
        mmap::map(&file).ok()
    }
}

/// Decompresses `gz` (every member of a multi-member file, as `zcat` does), reading no more
/// than the IDX header at its start says follows: a gzip bomb is refused after that many
/// bytes, never held whole in memory.
fn decompress(gz: &Path) -> Result<Vec<u8>> {
    let file = File::open(gz).map_err(|source| Error::Read {
        path: gz.into(),
        source,
    })?;
    let mut reader = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    let mut out = Vec::new();
    let mut read = |out: &mut Vec<u8>, n: u64| {
        (&mut reader)
            .take(n)
            .read_to_end(out)
            .map_err(|source| Error::Gzip {
                path: gz.into(),
                source,
            })
    };
    read(&mut out, 4)?;
    // A u8 IDX file starts 0, 0, 8, dimensions; anything else is left to the IDX parser to
    // name (from these first bytes).
    let ndim = match out[..] {
        [0, 0, 8, ndim] if ndim > 0 => ndim,
        _ => return Ok(out),
    };
    let header = 4 + 4 * u64::from(ndim);
    read(&mut out, header - 4)?;
    let total = out[4..]
        .chunks_exact(4)
        .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
        .try_fold(1u64, u64::checked_mul)
        .and_then(|body| body.checked_add(header))
        .filter(|&total| total <= MAX_DECOMPRESSED);
    let Some(total) = total else {
        return Err(Error::Oversized {
            path: gz.into(),
            reason: format!(
                "its IDX header describes more than the {MAX_DECOMPRESSED} bytes relumax reads"
            ),
        });
    };
    // One byte past the header's length tells a file that holds more.
    let rest = total + 1 - out.len() as u64;
    read(&mut out, rest)?;
    if out.len() as u64 > total {
        return Err(Error::Oversized {
            path: gz.into(),
            reason: format!("decompresses to more than the {total} bytes its IDX header describes"),
        });
    }
    Ok(out)
}

/// The seeded train/validation holdout: disjoint, sorted index lists into the training split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holdout {
    /// Indices used for training.
    pub train: Vec<usize>,
    /// Indices held out for validation.
    pub val: Vec<usize>,
}

impl Holdout {
    /// Shuffles `0..n` with the split stream of `seed` and holds out `round(n * val_fraction)`
    /// samples for validation (12,000 of MNIST's 60,000 at the default 0.2). A fraction of 0
    /// holds out nothing.
    ///
    /// # Panics
    /// If `val_fraction` is not in `[0, 1)`.
    pub fn new(n: usize, val_fraction: f64, seed: u64) -> Holdout {
        assert!(
            (0.0..1.0).contains(&val_fraction),
            "val_fraction must be in [0, 1)"
        );
        let n_val = Holdout::val_len(n, val_fraction);
        let mut all: Vec<usize> = (0..n).collect();
        shuffle(&mut all, &mut rng::stream(seed, Stream::Split, &[]));
        let mut val = all.split_off(n - n_val);
        all.sort_unstable();
        val.sort_unstable();
        Holdout { train: all, val }
    }

    /// How many of `n` samples [`Holdout::new`] holds out: `round(n * val_fraction)`.
    pub fn val_len(n: usize, val_fraction: f64) -> usize {
        ((n as f64) * val_fraction).round() as usize
    }
}

/// A uniform integer in `0..bound` (Lemire's multiply-shift with rejection; unbiased).
fn below(rng: &mut impl RngCore, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher-Yates shuffle with a pinned algorithm, so results do not move with `rand` versions.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut impl RngCore) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Gathers shuffled mini-batches into one reused buffer.
///
/// Each epoch's order is a fresh shuffle of the training indices drawn from the stream
/// `(seed, Shuffle, epoch)`, so any epoch can be reproduced without replaying earlier ones.
/// The last batch of an epoch is shorter when the batch size does not divide the number of
/// samples; it is kept, not dropped (1,500 full batches of 32 for MNIST's 48,000).
#[derive(Debug)]
pub struct Batcher {
    base: Vec<usize>,
    order: Vec<usize>,
    batch_size: usize,
    seed: u64,
    x: Array2<f32>,
    y: Vec<u32>,
}

impl Batcher {
    /// A batcher over `indices` of a split with `features` features.
    ///
    /// # Panics
    /// If `batch_size` is zero.
    pub fn new(indices: Vec<usize>, batch_size: usize, features: usize, seed: u64) -> Batcher {
        assert!(batch_size > 0, "batch size must be positive");
        Batcher {
            order: indices.clone(),
            base: indices,
            batch_size,
            seed,
            x: crate::aligned::zeros(batch_size, features),
            y: vec![0; batch_size],
        }
    }

    /// Reorders the indices for `epoch` (0-based).
    pub fn shuffle(&mut self, epoch: usize) {
        self.order.copy_from_slice(&self.base);
        shuffle(
            &mut self.order,
            &mut rng::stream(self.seed, Stream::Shuffle, &[epoch as u64]),
        );
    }

    /// Batches per epoch, counting the short last one.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Number of samples per epoch.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The sample indices of batch `b` in the current order.
    pub fn indices(&self, b: usize) -> &[usize] {
        let start = b * self.batch_size;
        &self.order[start..(start + self.batch_size).min(self.order.len())]
    }

    /// Gathers batch `b` of the current epoch from `split`: a `(rows, features)` view into the
    /// reused buffer and the rows' labels. Batches of 16 rows or more are gathered in two halves
    /// on the current threads (the trainer's [`kernels::Team`], inside [`crate::Trainer::run`]).
    ///
    /// # Panics
    /// If `b >= num_batches()` or `split` has a different feature count.
    pub fn batch(&mut self, split: &Split, b: usize) -> (ArrayView2<'_, f32>, &[u32]) {
        let start = b * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        assert!(start < end, "batch index out of range");
        let rows = end - start;
        let indices = &self.order[start..end];
        let (x, y) = (self.x.slice_mut(s![..rows, ..]), &mut self.y[..rows]);
        if rows >= GATHER_SPLIT_MIN_ROWS && kernels::current_threads() > 1 {
            let half = rows / 2;
            let (x0, x1) = x.split_at(ndarray::Axis(0), half);
            let (y0, y1) = y.split_at_mut(half);
            let (i0, i1) = indices.split_at(half);
            kernels::join(|| split.gather(i0, x0, y0), || split.gather(i1, x1, y1));
        } else {
            split.gather(indices, x, y);
        }
        // The rows are scattered over the dataset: start loading the next batch's now, so that
        // they arrive during this step instead of stalling the next gather.
        if end < self.order.len() {
            split.prefetch(self.indices(b + 1));
        }
        (self.x.slice(s![..rows, ..]), &self.y[..rows])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fingerprint;

    /// MNIST's holdout at seed 0 and the first epochs' orders, committed (integer arithmetic
    /// only: the same on every CPU). A change here changes every result.
    #[test]
    fn the_holdout_and_the_shuffles_are_the_committed_goldens() {
        let h = Holdout::new(60_000, 0.2, 0);
        assert_eq!((h.train.len(), h.val.len()), (48_000, 12_000));
        let mut b = Batcher::new(h.train.clone(), 32, 1, 0);
        let mut got = vec![fingerprint(&h.val)];
        for epoch in 0..3 {
            b.shuffle(epoch);
            got.push(fingerprint(&b.order));
        }
        let small = Holdout::new(10, 0.3, 5);
        assert_eq!(got, GOLDEN_ORDERS, "{got:#x?}");
        assert_eq!(small.val, [1, 2, 6]);
    }

    const GOLDEN_ORDERS: [u64; 4] = [
        0x4b08_8020_2102_8ddd,
        0x430c_fc91_c124_c461,
        0xf357_f2a9_6c16_80e7,
        0xc702_e411_da4e_1273,
    ];

    #[test]
    fn below_is_in_range() {
        let mut r = rng::stream(1, Stream::Shuffle, &[]);
        for bound in [1u64, 2, 3, 7, 1000] {
            for _ in 0..200 {
                assert!(below(&mut r, bound) < bound);
            }
        }
    }
}
