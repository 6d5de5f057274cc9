//! Saving and loading models as safetensors.
//!
//! Tensors `layers.{l}.weight` (`(inputs, outputs)`, f32, so `logits = x @ W + b` in numpy or
//! `x @ W + b` in PyTorch) and `layers.{l}.bias`. The header metadata holds `format`
//! (`relumax-mlp`), `version`, `sizes` (comma-separated) and, when given, the training
//! `config` as JSON. Files are written atomically: temp file, sync, rename.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use ndarray::Array1;
use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::layer::Dense;
use crate::model::{self, Mlp};

const FORMAT: &str = "relumax-mlp";
const VERSION: &str = "1";
/// How the tensors compute, for readers in other frameworks (the file's `layout` metadata).
const LAYOUT: &str = "layers.{l}.weight is (inputs, outputs) and layers.{l}.bias \
(outputs), f32: h = relu(h @ weight + bias) for every layer but the last, logits = h @ weight + \
bias for the last, softmax over the logits; in torch.nn.Linear(inputs, outputs), weight.T is \
the Linear's weight";

/// Largest model file read (1 GiB holds a 16k x 16k network).
const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Serialises `model` (with optional extra metadata such as the training config) to bytes.
///
/// The header is written here rather than by `safetensors::serialize`, whose metadata map is a
/// `HashMap`: its key order, and so the file's bytes, would change from run to run. Here keys
/// are sorted, so the same model and metadata always give the same bytes. The layout is the
/// safetensors format: a little-endian u64 header length, the JSON header padded with spaces to
/// a multiple of 8 bytes, then the tensors' little-endian data in header order.
pub(crate) fn to_bytes(model: &Mlp, metadata: &[(&str, String)]) -> Vec<u8> {
    let mut meta: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone().into()))
        .collect();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("version".into(), VERSION.into());
    meta.insert("layout".into(), LAYOUT.into());
    let sizes: Vec<String> = model.sizes().iter().map(usize::to_string).collect();
    meta.insert("sizes".into(), sizes.join(",").into());
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), meta.into());
    let mut data: Vec<u8> = Vec::with_capacity(model.parameters() * 4);
    for (l, layer) in model.layers().iter().enumerate() {
        let weight = layer.weight.as_standard_layout();
        let tensors = [
            (
                "weight",
                vec![layer.inputs(), layer.outputs()],
                weight.as_slice(),
            ),
            ("bias", vec![layer.outputs()], layer.bias.as_slice()),
        ];
        for (name, shape, values) in tensors {
            let start = data.len();
            for v in values.expect("contiguous parameters") {
                data.extend_from_slice(&v.to_le_bytes());
            }
            header.insert(
                format!("layers.{l}.{name}"),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
    }
    let mut json = serde_json::to_vec(&header).expect("JSON values always serialise");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    out
}

/// Writes `model` to `path` atomically, with extra `metadata`.
///
/// # Errors
/// [`Error::Model`] when a parameter is NaN or infinite (nothing is written: such a file could
/// not be loaded); [`Error::Write`] when the folder cannot be written or the disk fills; no
/// partial file is left behind.
pub(crate) fn save(model: &Mlp, path: &Path, metadata: &[(&str, String)]) -> Result<()> {
    // A model with NaN or infinite parameters could not be loaded again.
    for (l, layer) in model.layers().iter().enumerate() {
        let weights = layer.weight.iter().chain(&layer.bias);
        if let Some(&value) = weights.into_iter().find(|v| !v.is_finite()) {
            return Err(Error::Model {
                path: path.into(),
                reason: format!(
                    "not saved: layer {l} holds {value}, and a model file's parameters must be finite"
                ),
            });
        }
    }
    write_atomic(path, &to_bytes(model, metadata))
}

/// Saving and loading: the one API for model files.
impl Mlp {
    /// Saves the network to `path` as safetensors, atomically (a reader sees the old file or
    /// the whole new one). The file's `layout` metadata says how to load it into
    /// `torch.nn.Linear` or numpy.
    ///
    /// # Errors
    /// [`Error::Model`] when a parameter is NaN or infinite (nothing is written: such a file
    /// could not be loaded); [`Error::Write`] when the folder cannot be written or the disk
    /// fills; no partial file is left behind.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save(self, path.as_ref(), &[])
    }

    /// [`Mlp::save`] with extra header metadata, such as the training configuration as JSON
    /// (the keys `format`, `version`, `layout` and `sizes` are the file's own).
    ///
    /// # Errors
    /// As [`Mlp::save`].
    pub fn save_with_metadata(
        &self,
        path: impl AsRef<Path>,
        metadata: &[(&str, String)],
    ) -> Result<()> {
        save(self, path.as_ref(), metadata)
    }

    /// Loads a network saved by [`Mlp::save`].
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read; [`Error::Model`] when it is not
    /// safetensors, is truncated, lies about sizes, has a dtype other than f32, lacks a
    /// tensor, its shapes do not chain, or a parameter is NaN or infinite.
    pub fn load(path: impl AsRef<Path>) -> Result<Mlp> {
        Ok(load(path.as_ref())?.model)
    }

    /// [`Mlp::load`], with the file's header metadata.
    ///
    /// # Errors
    /// As [`Mlp::load`].
    pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Mlp, HashMap<String, String>)> {
        let loaded = load(path.as_ref())?;
        Ok((loaded.model, loaded.metadata))
    }

    /// The bytes [`Mlp::save_with_metadata`] writes: the same model and metadata always give
    /// the same bytes.
    pub fn to_safetensors(&self, metadata: &[(&str, String)]) -> Vec<u8> {
        to_bytes(self, metadata)
    }

    /// Parses a model file held in memory, with its metadata.
    ///
    /// # Errors
    /// [`Error::Model`] (with the path `(memory)`) for anything [`Mlp::load`] rejects.
    pub fn from_safetensors(bytes: &[u8]) -> Result<(Mlp, HashMap<String, String>)> {
        let loaded = from_bytes(bytes).map_err(|reason| Error::Model {
            path: "(memory)".into(),
            reason,
        })?;
        Ok((loaded.model, loaded.metadata))
    }
}

/// A loaded model and its header metadata.
#[derive(Debug)]
pub(crate) struct LoadedModel {
    pub(crate) model: Mlp,
    pub(crate) metadata: HashMap<String, String>,
}

/// Reads a model written by [`save`] (errors as [`Mlp::load`]).
///
/// # Errors
/// [`Error::Read`] when the file cannot be read; [`Error::Model`] when it is not safetensors,
/// is truncated, lies about sizes, has a dtype other than f32, lacks a tensor, its shapes do
/// not chain, or a parameter is NaN or infinite.
pub(crate) fn load(path: &Path) -> Result<LoadedModel> {
    let read_err = |source| Error::Read {
        path: path.into(),
        source,
    };
    let bad = |reason: String| Error::Model {
        path: path.into(),
        reason,
    };
    // Bounded by the bytes actually read, not by the size the file system reports (0 for a
    // device such as /dev/zero, which never ends).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MODEL_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(bad(format!("larger than the {MAX_MODEL_BYTES}-byte limit")));
    }
    from_bytes(&bytes).map_err(bad)
}

/// Parses model bytes; the error is a reason to attach to a file name.
fn from_bytes(bytes: &[u8]) -> std::result::Result<LoadedModel, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not safetensors ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let metadata = header.metadata().clone().unwrap_or_default();
    match metadata.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(format!("format is {other:?}, expected {FORMAT:?}")),
        None => return Err(format!("no \"format\" metadata (expected {FORMAT:?})")),
    }
    let sizes: Vec<usize> = metadata
        .get("sizes")
        .ok_or("no \"sizes\" metadata")?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("bad \"sizes\" metadata: {e}"))?;
    model::validate_sizes(&sizes).map_err(|e| e.to_string())?;
    let tensor = |name: String, shape: &[usize]| -> std::result::Result<Vec<f32>, String> {
        let t = st
            .tensor(&name)
            .map_err(|_| format!("missing tensor {name}"))?;
        if t.dtype() != Dtype::F32 {
            return Err(format!("{name} has dtype {:?}, expected F32", t.dtype()));
        }
        if t.shape() != shape {
            return Err(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.shape()
            ));
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{name} holds a non-finite value ({}) at index {i}",
                values[i]
            ));
        }
        Ok(values)
    };
    let layers = sizes
        .windows(2)
        .enumerate()
        .map(|(l, w)| {
            let weight = tensor(format!("layers.{l}.weight"), &[w[0], w[1]])?;
            let bias = tensor(format!("layers.{l}.bias"), &[w[1]])?;
            Ok(Dense {
                weight: crate::aligned::copy(
                    ndarray::ArrayView2::from_shape((w[0], w[1]), &weight)
                        .map_err(|e| e.to_string())?,
                ),
                bias: Array1::from(bias),
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    if st.len() != layers.len() * 2 {
        return Err(format!(
            "holds {} tensors, expected {} for sizes {sizes:?}",
            st.len(),
            layers.len() * 2
        ));
    }
    let model = Mlp::from_layers(layers).map_err(|e| e.to_string())?;
    Ok(LoadedModel { model, metadata })
}
