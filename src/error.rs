//! The crate's one error type.
//!
//! Every failure a user can cause (a bad file, a bad flag, a model that does not fit the data)
//! is a variant here, with the file or field it concerns and what was expected. Programmer
//! mistakes (a kernel called with mismatched shapes) panic instead; see [`crate::kernels`].

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when loading data, training, or reading and writing models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written (read-only folder, full disk, a file where a folder should be).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// [`crate::Dataset::bundled`] found no MNIST folder.
    #[error(
        "no MNIST at {}: a relumax from crates.io ships no data; download the four MNIST files \
         into a folder and open it with Dataset::open, or set RELUMAX_MNIST to it",
        dir.display()
    )]
    NoMnist {
        /// Where it looked.
        dir: PathBuf,
    },

    /// A dataset folder lacks one of the four standard IDX files.
    #[error("{}: missing {name} (raw or .gz)", dir.display())]
    MissingFile {
        /// The dataset folder.
        dir: PathBuf,
        /// The standard file name that was looked for.
        name: String,
    },

    /// An IDX file starts with the wrong magic number.
    #[error("{}: wrong magic number: expected {expected} ({what}), found {found}", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number for this kind of file (2051 for u8 images, 2049 for u8 labels).
        expected: u32,
        /// What the file kind is, in words.
        what: &'static str,
        /// The big-endian u32 the file starts with.
        found: u32,
    },

    /// A gzip stream was given where raw IDX bytes were expected.
    #[error("{}: is gzip-compressed, expected raw IDX bytes (name it with a .gz suffix)", path.display())]
    Gzipped {
        /// The file.
        path: PathBuf,
    },

    /// An IDX file is shorter than its header says.
    #[error("{}: truncated {part}: expected {expected} bytes, found {found}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// `"header"` or `"body"`.
        part: &'static str,
        /// Bytes required.
        expected: u64,
        /// Bytes present.
        found: u64,
    },

    /// An IDX file is longer than its header says.
    #[error("{}: {extra} trailing bytes after the {expected} the header describes", path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header describes.
        expected: u64,
        /// Bytes beyond that.
        extra: u64,
    },

    /// The dimensions in an IDX header multiply past what can be addressed, or one is zero.
    #[error("{}: bad dimensions {dims:?}: {reason}", path.display())]
    BadDimensions {
        /// The file.
        path: PathBuf,
        /// The dimensions as read.
        dims: Vec<u32>,
        /// Why they are unusable.
        reason: &'static str,
    },

    /// An image file and its label file disagree on the number of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not below the number of classes.
    #[error("{labels}: label {label} at index {index} is not below the class count {classes}")]
    LabelOutOfRange {
        /// The labels: a file's path, or the array's name (`train_y`, `test_y`, `y`).
        labels: String,
        /// Sample index.
        index: usize,
        /// The offending label.
        label: u32,
        /// The number of classes.
        classes: usize,
    },

    /// A decompressed file's SHA-256 differs from the one in `SHA256SUMS`.
    #[error("{}: checksum mismatch: expected sha256 {expected}, found {found}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Digest listed in `SHA256SUMS`.
        expected: String,
        /// Digest of the bytes read.
        found: String,
    },

    /// A `.gz` file is not a valid gzip stream.
    #[error("{}: corrupt gzip data", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// A valid `.gz` file holds more than an IDX file can: more than its own IDX header
    /// describes (nothing past that is read), or more than relumax reads at all.
    #[error("{}: {reason}", path.display())]
    Oversized {
        /// The file.
        path: PathBuf,
        /// How much it holds against what was expected.
        reason: String,
    },

    /// A training state (from a checkpoint) does not fit the configuration and data it is
    /// resumed with.
    #[error("the training state does not fit this configuration and data: {reason}")]
    Position {
        /// What is inconsistent.
        reason: String,
    },

    /// An input array holds NaN or an infinity.
    #[error("{what}: row {row}, column {column} is {value}; every value must be finite")]
    NonFinite {
        /// Which array (`"train features"`).
        what: String,
        /// The row of the first such value.
        row: usize,
        /// Its column.
        column: usize,
        /// The value.
        value: f32,
    },

    /// A dataset's `SHA256SUMS` is not in `sha256sum`'s format.
    #[error("{}: line {line}: {reason}", path.display())]
    SumsFile {
        /// The checksum list.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// The test images are not the size of the training images.
    #[error(
        "{}: images of {}x{} pixels, but {} holds {}x{}",
        test.display(), test_shape.0, test_shape.1, train.display(), train_shape.0, train_shape.1
    )]
    ImageSize {
        /// The training image file.
        train: PathBuf,
        /// Its images' `(rows, cols)`.
        train_shape: (usize, usize),
        /// The test image file.
        test: PathBuf,
        /// Its images' `(rows, cols)`.
        test_shape: (usize, usize),
    },

    /// Two parts of the data (or the data and a model) do not fit together.
    #[error("shape mismatch: {what}: expected {expected}, found {found}")]
    Shape {
        /// What was compared.
        what: String,
        /// The expected size.
        expected: usize,
        /// The size found.
        found: usize,
    },

    /// A run would allocate more memory than the machine has available.
    #[error("not enough memory: {what} needs about {needed}, but {available} is available")]
    Memory {
        /// What would allocate it, with the estimate's parts.
        what: String,
        /// The estimate, for a person (`"16.0 GiB"`).
        needed: String,
        /// The memory available when it was checked, for a person.
        available: String,
    },

    /// A configuration value is out of range.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The configuration field, as the library names it (`val_fraction`).
        field: &'static str,
        /// What is wrong with it, including the value given.
        reason: String,
    },

    /// An image given for classification holds no digit: it has no pixels or no ink.
    #[error("no digit in the image: {reason}")]
    NoDigit {
        /// What the image lacks.
        reason: String,
    },

    /// A linear-algebra routine (LAPACK) failed on a model's weights.
    #[error("{what} failed: {reason}")]
    Linalg {
        /// The computation (`"the pseudo-inverse of layer 1"`).
        what: String,
        /// LAPACK's error.
        reason: String,
    },

    /// A model file is not a relumax safetensors model.
    #[error("{}: not a valid relumax model: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Training produced a non-finite loss.
    #[error(
        "training diverged: loss is {loss} at epoch {epoch}, step {step}; try a lower learning rate (lr)"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite loss value.
        loss: f32,
    },
}
