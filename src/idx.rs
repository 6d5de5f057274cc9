//! IDX parsing as pure functions over bytes.
//!
//! Layout (all integers big-endian): a u32 magic `0x0000_08NN` where `0x08` is the u8 data type
//! and `NN` the number of dimensions, then one u32 per dimension, then the data, exactly
//! `product(dims)` bytes. Images are 3-D (`2051`: count, rows, cols); labels are 1-D (`2049`).
//!
//! Everything is checked against the byte slice before anything sized from the header is
//! allocated: a header claiming 2^40 images fails on length, it never allocates.

use std::path::Path;

use crate::error::{Error, Result};

/// Magic number of a u8 image file with three dimensions.
pub const IMAGES_MAGIC: u32 = 0x0803;
/// Magic number of a u8 label file with one dimension.
pub const LABELS_MAGIC: u32 = 0x0801;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The header of a validated IDX image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagesHeader {
    /// Number of images.
    pub count: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// Byte offset of the first pixel.
    pub offset: usize,
}

impl ImagesHeader {
    /// Pixels per image (`rows * cols`).
    pub fn features(&self) -> usize {
        self.rows * self.cols
    }
}

/// The header of a validated IDX label file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelsHeader {
    /// Number of labels.
    pub count: usize,
    /// Byte offset of the first label.
    pub offset: usize,
}

/// Validates a u8 image file (magic 2051, three dimensions, exact length).
///
/// `path` only names the file in errors.
///
/// # Errors
/// [`Error::Gzipped`], [`Error::BadMagic`], [`Error::Truncated`], [`Error::BadDimensions`] or
/// [`Error::TrailingBytes`], naming `path`.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<ImagesHeader> {
    let (dims, offset) = parse_header(bytes, path, IMAGES_MAGIC, "u8 images, 3 dimensions")?;
    Ok(ImagesHeader {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        offset,
    })
}

/// Validates a u8 label file (magic 2049, one dimension, exact length).
///
/// # Errors
/// As [`parse_images`].
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<LabelsHeader> {
    let (dims, offset) = parse_header(bytes, path, LABELS_MAGIC, "u8 labels, 1 dimension")?;
    Ok(LabelsHeader {
        count: dims[0],
        offset,
    })
}

/// True when `bytes` start like a gzip stream.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn parse_header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    what: &'static str,
) -> Result<(Vec<usize>, usize)> {
    if is_gzip(bytes) {
        return Err(Error::Gzipped { path: path.into() });
    }
    let truncated = |part, expected: usize| Error::Truncated {
        path: path.into(),
        part,
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated("header", 4));
    }
    let found = read_u32(bytes, 0);
    if found != magic {
        return Err(Error::BadMagic {
            path: path.into(),
            expected: magic,
            what,
            found,
        });
    }
    let ndim = (magic & 0xff) as usize;
    let offset = 4 + 4 * ndim;
    if bytes.len() < offset {
        return Err(truncated("header", offset));
    }
    let raw: Vec<u32> = (0..ndim).map(|d| read_u32(bytes, 4 + 4 * d)).collect();
    let bad = |reason| Error::BadDimensions {
        path: path.into(),
        dims: raw.clone(),
        reason,
    };
    if raw.contains(&0) {
        return Err(bad("a dimension is zero"));
    }
    let body = raw
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .and_then(|n| n.checked_add(offset))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| bad("their product overflows"))?;
    let expected = body;
    if bytes.len() < expected {
        return Err(truncated("body", expected));
    }
    if bytes.len() > expected {
        return Err(Error::TrailingBytes {
            path: path.into(),
            expected: expected as u64,
            extra: (bytes.len() - expected) as u64,
        });
    }
    Ok((raw.into_iter().map(|d| d as usize).collect(), offset))
}

/// Encodes u8 images as an IDX file (used to write test fixtures and custom datasets).
///
/// # Panics
/// If `pixels.len() != count * rows * cols` or a dimension exceeds `u32::MAX`.
pub fn encode_images(pixels: &[u8], count: usize, rows: usize, cols: usize) -> Vec<u8> {
    assert_eq!(pixels.len(), count * rows * cols, "pixel count mismatch");
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in [count, rows, cols] {
        out.extend_from_slice(&u32::try_from(d).expect("dimension fits u32").to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes u8 labels as an IDX file.
///
/// # Panics
/// If there are more than `u32::MAX` labels.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    let n = u32::try_from(labels.len()).expect("label count fits u32");
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("f")
    }

    #[test]
    fn round_trip() {
        let px: Vec<u8> = (0..24).collect();
        let bytes = encode_images(&px, 2, 3, 4);
        let h = parse_images(&bytes, p()).unwrap();
        assert_eq!((h.count, h.rows, h.cols, h.offset), (2, 3, 4, 16));
        assert_eq!(&bytes[h.offset..], &px[..]);
        let lb = encode_labels(&[1, 2, 3]);
        assert_eq!(
            parse_labels(&lb, p()).unwrap(),
            LabelsHeader {
                count: 3,
                offset: 8
            }
        );
    }

    #[test]
    fn huge_header_fails_on_length_without_allocating() {
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [1u32 << 20, 1 << 10, 1 << 10] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        assert!(matches!(
            parse_images(&bytes, p()),
            Err(Error::Truncated { part: "body", .. })
        ));
    }
}
