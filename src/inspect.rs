//! "Feed backward": what each class looks like to a network.
//!
//! The paper pushes each class's one-hot vector back through the network to the input space
//! with the transposed weight matrices: `x_c = e_c W_L^T ... W_1^T`, a `(inputs,)` vector per
//! class. The alternative uses each layer's Moore-Penrose pseudo-inverse,
//! `x_c = e_c pinv(W_L) ... pinv(W_1)`: for every layer, the minimum-norm input whose product
//! with `W` best matches the output (biases and ReLUs are ignored in both, as in the paper).

use ndarray::{Array2, Axis};
use ndarray_linalg::{JobSvd, SVDDC};

use crate::error::{Error, Result};
use crate::model::Mlp;

/// How to map an output back to the input space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preimage {
    /// Through the transposed weights (the paper's method).
    #[default]
    Transpose,
    /// Through each layer's pseudo-inverse (minimum-norm preimage).
    Pinv,
}

impl std::str::FromStr for Preimage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "transpose" => Ok(Preimage::Transpose),
            "pinv" => Ok(Preimage::Pinv),
            _ => Err(format!("unknown method {s:?} (expected transpose or pinv)")),
        }
    }
}

/// Relative singular-value cut-off below which a direction counts as null in [`Preimage::Pinv`]
/// (NumPy's `pinv` default `rcond`).
const RCOND: f64 = 1e-15;

/// One row per class: the input-space image of that class's one-hot vector,
/// `(classes, inputs)`.
///
/// # Errors
/// [`Error::Linalg`] when a pseudo-inverse's SVD fails to converge.
pub fn class_images(model: &Mlp, method: Preimage) -> Result<Array2<f32>> {
    let classes = model.classes();
    // Work in f64: products of several pseudo-inverses lose f32 precision quickly.
    let mut v = Array2::<f64>::eye(classes);
    for layer in model.layers().iter().rev() {
        let w = layer.weight.mapv(f64::from);
        v = match method {
            Preimage::Transpose => v.dot(&w.t()),
            Preimage::Pinv => v.dot(&pinv(&w)?),
        };
    }
    Ok(v.mapv(|x| x as f32))
}

/// The pseudo-inverse of `w` (`(m, n)` -> `(n, m)`) from its thin SVD.
fn pinv(w: &Array2<f64>) -> Result<Array2<f64>> {
    let (u, s, vt) = w.svddc(JobSvd::Some).map_err(|e| Error::Linalg {
        what: format!(
            "the pseudo-inverse of a {} x {} layer",
            w.ncols(),
            w.nrows()
        ),
        reason: e.to_string(),
    })?;
    let (u, vt) = (u.expect("requested U"), vt.expect("requested V^T"));
    let cutoff = s.iter().copied().fold(0.0, f64::max) * RCOND * w.nrows().max(w.ncols()) as f64;
    let inv: Vec<f64> = s
        .iter()
        .map(|&x| if x > cutoff { 1.0 / x } else { 0.0 })
        .collect();
    // pinv = V diag(1/s) U^T
    let mut v = vt.t().to_owned();
    for (mut col, &d) in v.axis_iter_mut(Axis(1)).zip(&inv) {
        col *= d;
    }
    Ok(v.dot(&u.t()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;

    #[test]
    fn pinv_is_a_pseudo_inverse() {
        let m = Mlp::new(&[7, 4], Init::He, 2).unwrap();
        let w = m.layers()[0].weight.mapv(f64::from);
        let p = pinv(&w).unwrap();
        assert_eq!(p.dim(), (4, 7));
        // w p w = w, and (p w) is the identity on the 4-dim output space of a full-rank w.
        let wpw = w.dot(&p).dot(&w);
        assert!((&wpw - &w).iter().all(|d| d.abs() < 1e-10));
        let pw = p.dot(&w);
        assert!(
            (&pw - &Array2::<f64>::eye(4))
                .iter()
                .all(|d| d.abs() < 1e-10)
        );
    }

    #[test]
    fn transpose_images_are_products_of_transposed_weights() {
        let m = Mlp::new(&[5, 3, 2], Init::He, 4).unwrap();
        let imgs = class_images(&m, Preimage::Transpose).unwrap();
        let w0 = &m.layers()[0].weight;
        let w1 = &m.layers()[1].weight;
        let want = w0.dot(w1).reversed_axes(); // (classes, inputs)
        assert!((&imgs - &want).iter().all(|d| d.abs() < 1e-6));
        // The pinv images map forward onto the one-hot vectors (a full-row-rank chain).
        let p = class_images(&m, Preimage::Pinv).unwrap();
        let back = p.dot(w0).dot(w1);
        assert!(
            (&back - &Array2::<f32>::eye(2))
                .iter()
                .all(|d| d.abs() < 1e-4),
            "{back}"
        );
    }
}
