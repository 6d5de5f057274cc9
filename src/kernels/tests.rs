//! Every implementation of relumax's arithmetic that this CPU runs, held bit for bit to the
//! definition (`reference`, written element by element as the doc of `portable` states it);
//! and the dispatch held to what the operating system says the CPU has.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, array};
use rand::RngCore;

use super::operands::{self, Block, Isa, Nonzero, Product, rows_contiguous};
use super::*;
use crate::rng::{self, Stream};
use crate::testing::{fingerprint, noise, pool};

/// The definition, element by element (nothing shared with the implementations).
mod reference {
    use super::*;

    /// The fixed lane-reduction tree: halves, then quarters, then pairs.
    pub fn reduce(v: [f32; 16]) -> f32 {
        let s8: Vec<f32> = (0..8).map(|l| v[l] + v[l + 8]).collect();
        let s4: Vec<f32> = (0..4).map(|l| s8[l] + s8[l + 4]).collect();
        (s4[0] + s4[2]) + (s4[1] + s4[3])
    }

    /// `z = x w`: each element the fused multiply-add chain over `k` from zero.
    pub fn forward(mut z: ArrayViewMut2<'_, f32>, x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) {
        for ((i, j), out) in z.indexed_iter_mut() {
            *out = (0..x.ncols()).fold(0.0f32, |acc, k| x[[i, k]].mul_add(w[[k, j]], acc));
        }
    }

    /// `x^T dz` at `(r, c)`: chains over blocks of 64 batch rows, the blocks added in f64.
    pub fn gradient(x: ArrayView2<'_, f32>, dz: ArrayView2<'_, f32>, r: usize, c: usize) -> f32 {
        let m = dz.nrows();
        let partial = |b: usize| {
            (b * BATCH_BLOCK..(m.min((b + 1) * BATCH_BLOCK)))
                .fold(0.0f32, |acc, i| x[[i, r]].mul_add(dz[[i, c]], acc))
        };
        let blocks = m.div_ceil(BATCH_BLOCK);
        if blocks == 1 {
            partial(0)
        } else {
            (0..blocks).fold(0.0f64, |s, b| s + f64::from(partial(b))) as f32
        }
    }

    /// `dh = dz w^T` (through ReLU + dropout with a scale), then the step of `w` (and `v`).
    pub fn backward(
        dh: Option<(ArrayViewMut2<'_, f32>, Option<f32>)>,
        mut w: ArrayViewMut2<'_, f32>,
        velocity: Option<(ArrayViewMut2<'_, f32>, f32)>,
        x: ArrayView2<'_, f32>,
        dz: ArrayView2<'_, f32>,
        lr: f32,
    ) {
        let (rows, n) = w.dim();
        if let Some((mut dh, relu)) = dh {
            for i in 0..dz.nrows() {
                for r in 0..rows {
                    let mut lanes = [0.0f32; 16];
                    for c in 0..n {
                        lanes[c % 16] = dz[[i, c]].mul_add(w[[r, c]], lanes[c % 16]);
                    }
                    dh[[i, r]] = match relu {
                        None => reduce(lanes),
                        Some(s) if x[[i, r]] > 0.0 => reduce(lanes) * s,
                        Some(_) => 0.0,
                    };
                }
            }
        }
        let mut velocity = velocity;
        for r in 0..rows {
            for c in 0..n {
                let g = gradient(x, dz, r, c);
                w[[r, c]] = match &mut velocity {
                    None => (-lr).mul_add(g, w[[r, c]]),
                    Some((v, mu)) => {
                        v[[r, c]] = mu.mul_add(v[[r, c]], g);
                        (-lr).mul_add(v[[r, c]], w[[r, c]])
                    }
                };
            }
        }
    }
}

/// Every implementation this CPU runs. On x86-64 with AVX2 + FMA that includes AVX2 and the
/// portable path; `dispatch_agrees_with_the_cpu` fails if detection drops one.
fn isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|i| i.supported())
        .collect()
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn dispatch_agrees_with_the_cpu() {
    // The operating system's word on the CPU, read independently of the detection under test.
    #[cfg(not(target_os = "linux"))]
    let info = String::new();
    #[cfg(target_os = "linux")]
    let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo is readable");
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let has = |f: &str| flags.contains(&f);
    let x86 = cfg!(target_arch = "x86_64");
    assert!(Isa::Portable.supported());
    assert_eq!(Isa::Avx2.supported(), x86 && has("avx2") && has("fma"));
    assert_eq!(
        Isa::Avx512.supported(),
        x86 && has("avx2") && has("fma") && has("avx512f")
    );
    let best = [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .find(|i| i.supported());
    assert_eq!(Some(Isa::best()), best);
    // The public names resolve to what runs, and refuse what does not.
    assert_eq!(Kernels::Portable.resolve().unwrap(), Kernels::Portable);
    assert!(Kernels::Auto.resolve().unwrap().is_portable_arithmetic());
    for k in [Kernels::Avx2, Kernels::Avx512] {
        assert_eq!(k.resolve().is_ok(), k.supported(), "{k}");
    }
    if !Kernels::Avx512.supported() {
        let e = Kernels::Avx512.resolve().unwrap_err().to_string();
        assert!(e.contains("cannot run the avx512 kernels"), "{e}");
    }
}

#[test]
fn kernels_parse_from_their_names() {
    for k in Kernels::ALL {
        assert_eq!(k.name().parse::<Kernels>(), Ok(k));
        assert_eq!(k.to_string().to_uppercase().parse::<Kernels>(), Ok(k));
    }
    let e = "avx1024".parse::<Kernels>().unwrap_err();
    assert!(
        e.contains("expected auto, portable, avx2, avx512 or blas"),
        "{e}"
    );
}

/// `(w, dh)` after `backward_rows` over all of `w0`'s rows, with an input gradient (its buffer
/// starting as noise) and the update of every row.
fn whole_block(
    isa: Isa,
    w0: &Array2<f32>,
    x: &Array2<f32>,
    dz: &Array2<f32>,
    (lr, relu): (f32, Option<f32>),
) -> (Array2<f32>, Array2<f32>) {
    let (mut w, mut dh) = (w0.clone(), noise(x.nrows(), x.ncols(), 4));
    let block = Block {
        w: w.view_mut(),
        x: x.view(),
        dh: Some(dh.view_mut()),
        nonzero_rows: None,
        relu_scale: relu,
        velocity: None,
    };
    operands::backward_rows(isa, block, &dz.view(), lr);
    (w, dh)
}

#[test]
fn every_implementation_matches_the_definition_for_every_remainder() {
    // Every remainder of the tiles: batch rows mod 4 and 6, W rows mod 4, 6 and 8 (the narrow
    // layers' tiles, several of them), columns mod 8, 16 and 96 (fewer than 16 too, like the
    // output layer's 10); passes of 512 columns with a short last pass; batches of more than
    // one block of 64 rows (70, 130), and of exactly one (64); wide layers' one-pass rows over
    // groups of 8 batch rows (37, 64), and over more than one chunk of 4096 columns.
    for (m, rows, n) in [
        (33, 3, 4133),
        (64, 5, 517),
        (5, 7, 1037),
        (37, 9, 1100),
        (70, 6, 530),
        (32, 24, 96),
        (6, 15, 40),
        (2, 16, 3),
        (32, 12, 2048),
        (1, 1, 1),
        (7, 5, 10),
        (33, 13, 127),
        (15, 26, 200),
        (32, 784, 128),
        (9, 11, 113),
        (130, 5, 21),
        (130, 21, 13),
        (32, 37, 10),
        (64, 130, 16),
        (33, 17, 7),
    ] {
        // Dense inputs, and inputs three quarters zero like a hidden layer's after ReLU and
        // dropout (the update skips the batch rows where a tile's inputs are all zero).
        for x in [
            noise(m, rows, 1),
            noise(m, rows, 1).mapv(|v| (v - 0.25).max(0.0)),
        ] {
            let dz = noise(m, n, 2);
            let w0 = noise(rows, n, 3);
            let lr = 0.37;
            for relu in [None, Some(1.75)] {
                let (mut w_ref, mut dh_ref) = (w0.clone(), Array2::zeros((m, rows)));
                let dh = Some((dh_ref.view_mut(), relu));
                reference::backward(dh, w_ref.view_mut(), None, x.view(), dz.view(), lr);
                for isa in isas() {
                    let (w, dh) = whole_block(isa, &w0, &x, &dz, (lr, relu));
                    let what = format!("{isa:?}, shape {m}x{rows}x{n}, relu {relu:?}");
                    assert_eq!(bits(&dh), bits(&dh_ref), "dh, {what}");
                    assert_eq!(bits(&w), bits(&w_ref), "w, {what}");
                    assert_ne!(bits(&w), bits(&w0), "the update changed nothing, {what}");
                }
            }
        }
    }
}

#[test]
fn momentum_matches_the_definition() {
    // More than one copy of 16 rows' inputs (40 rows), and batches over one block of 64.
    for (m, rows, n) in [
        (32, 13, 40),
        (70, 9, 17),
        (1, 1, 1),
        (12, 40, 24),
        (100, 37, 10),
    ] {
        let x = noise(m, rows, 1).mapv(|v| (v - 0.25).max(0.0));
        let (dz, w0, v0) = (noise(m, n, 2), noise(rows, n, 3), noise(rows, n, 5));
        let (lr, mu) = (0.2, 0.9);
        let (mut w_ref, mut v_ref, mut dh_ref) = (w0.clone(), v0.clone(), noise(m, rows, 4));
        reference::backward(
            Some((dh_ref.view_mut(), Some(2.0))),
            w_ref.view_mut(),
            Some((v_ref.view_mut(), mu)),
            x.view(),
            dz.view(),
            lr,
        );
        for isa in isas() {
            let (mut w, mut v, mut dh) = (w0.clone(), v0.clone(), noise(m, rows, 4));
            let block = Block {
                w: w.view_mut(),
                x: x.view(),
                dh: Some(dh.view_mut()),
                nonzero_rows: None,
                relu_scale: Some(2.0),
                velocity: Some((v.view_mut(), mu)),
            };
            operands::backward_rows(isa, block, &dz.view(), lr);
            let what = format!("{isa:?}, {m}x{rows}x{n}");
            assert_eq!(bits(&v), bits(&v_ref), "v, {what}");
            assert_eq!(bits(&w), bits(&w_ref), "w, {what}");
            assert_eq!(bits(&dh), bits(&dh_ref), "dh, {what}");
        }
    }
}

/// `x` with its columns outside `nonzero` set to zero.
#[test]
fn pixels_become_their_byte_over_255_on_every_implementation() {
    // Every byte, at every position modulo the vector widths (lengths with remainders too).
    let bytes: Vec<u8> = (0..=255).chain((0..=255).rev()).chain(0..=16).collect();
    let expected: Vec<u32> = bytes
        .iter()
        .map(|&b| (f32::from(b) / 255.0).to_bits())
        .collect();
    type Convert = Box<dyn Fn(&[u8], &mut [f32])>;
    let mut ways: Vec<(String, Convert)> = vec![
        ("dispatched".into(), Box::new(super::pixels_to_features)),
        (
            "division".into(),
            Box::new(elementwise::pixels_to_features::<portable::Software>),
        ),
    ];
    for isa in isas() {
        let convert = move |s: &[u8], d: &mut [f32]| operands::pixels_to_features_with(isa, s, d);
        ways.push((format!("{isa:?}"), Box::new(convert)));
    }
    for (name, convert) in ways {
        for start in 0..17 {
            let mut got = vec![f32::NAN; bytes.len() - start];
            convert(&bytes[start..], &mut got);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, expected[start..], "{name}, from byte {start}");
        }
    }
}

fn zeroed_outside(x: &Array2<f32>, nonzero: &[u32]) -> Array2<f32> {
    let mut zeroed = Array2::zeros(x.raw_dim());
    for &c in nonzero {
        zeroed.column_mut(c as usize).assign(&x.column(c as usize));
    }
    zeroed
}

#[test]
fn skipping_the_rows_outside_the_nonzero_list_gives_the_dense_bits() {
    // Nonzero lists of every length modulo the 4-row update tiles, across 512-row passes, empty and
    // full; `x` is nonzero everywhere, so a kernel that did not skip the rows outside the
    // nonzero list would differ from the dense product of the zeroed `x`. Then `x` three
    // quarters zero inside the list too, like images' pixels: a kernel that skipped the batch
    // rows of another listed row than its own would drop nonzero terms.
    let cases = [
        (32, 784, 128, 3),
        (32, 1100, 48, 2),
        (7, 30, 10, 1),
        (13, 50, 200, 7),
        (32, 21, 33, 0),
        (5, 9, 16, 4),
        (3, 6, 17, 5),
        (100, 40, 24, 3),
    ];
    for ((m, k, n, every), sparse) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        // Drop every `every`-th column (none when 0), plus a run at the start.
        let nonzero: Vec<u32> = (0..k as u32)
            .filter(|&c| c >= 4 && (every == 0 || c % every != 1))
            .collect();
        let (mut x, w0, dz) = (noise(m, k, 20), noise(k, n, 21), noise(m, n, 22));
        if sparse {
            x.mapv_inplace(|v| (v - 0.25).max(0.0));
        }
        let zeroed = zeroed_outside(&x, &nonzero);
        let shape = format!(
            "{m}x{k}x{n}, {} of {k} rows, sparse {sparse}",
            nonzero.len()
        );
        let mut expected = Array2::zeros((m, n));
        reference::forward(expected.view_mut(), zeroed.view(), w0.view());
        let mut w_ref = w0.clone();
        reference::backward(None, w_ref.view_mut(), None, zeroed.view(), dz.view(), 0.37);
        for isa in isas() {
            let mut z = noise(m, n, 23);
            for tiles in [Product::Tiles, Product::PackedTiles] {
                let how = (Some(&nonzero[..]), tiles);
                operands::forward(isa, z.view_mut(), &x.view(), &w0.view(), how);
                assert_eq!(bits(&z), bits(&expected), "{isa:?} {tiles:?}, {shape}");
            }
            let how = (None, Product::Rows);
            operands::forward(isa, z.view_mut(), &zeroed.view(), &w0.view(), how);
            assert_eq!(bits(&z), bits(&expected), "{isa:?} row by row, {shape}");
            // The update in two blocks cut at row `k / 3`, each with its part of the nonzero list.
            let mut w = w0.clone();
            let cut = k / 3;
            let split = nonzero.partition_point(|&c| (c as usize) < cut);
            let (w_a, w_b) = w.view_mut().split_at(Axis(0), cut);
            let (x_a, x_b) = x.view().split_at(Axis(1), cut);
            let (s_a, s_b) = nonzero.split_at(split);
            for (w, x, indices, offset) in [(w_a, x_a, s_a, 0), (w_b, x_b, s_b, cut)] {
                let nonzero_rows = Some(Nonzero { indices, offset });
                let block = Block {
                    w,
                    x,
                    dh: None,
                    nonzero_rows,
                    relu_scale: None,
                    velocity: None,
                };
                operands::backward_rows(isa, block, &dz.view(), 0.37);
            }
            assert_eq!(bits(&w), bits(&w_ref), "{isa:?} update, {shape}");
        }
    }
}

#[test]
fn a_nan_input_is_never_taken_for_zero() {
    // Batch row 5 is zero but for a NaN at `x[5, 3]`: the update's skip must count it as
    // nonzero (so all of row 3 of `w` becomes NaN), while the ReLU backward must count it as
    // not positive (so `dh[5, 3]` is `+0.0`), as the definition has it.
    let (m, rows, n) = (32, 8, 40);
    let mut x = noise(m, rows, 1).mapv(|v| (v - 0.25).max(0.0));
    x.row_mut(5).fill(0.0);
    x[[5, 3]] = f32::NAN;
    let dz = noise(m, n, 2);
    let w0 = noise(rows, n, 3);
    for isa in isas() {
        for relu in [None, Some(1.5)] {
            let (w, dh) = whole_block(isa, &w0, &x, &dz, (0.37, relu));
            for (r, row) in w.outer_iter().enumerate() {
                let what = format!("{isa:?}, row {r}, {relu:?}");
                assert_eq!(row.iter().all(|v| v.is_nan()), r == 3, "{what}");
                assert!(r == 3 || row.iter().all(|v| v.is_finite()), "{what}");
            }
            if relu.is_some() {
                assert_eq!(dh[[5, 3]].to_bits(), 0, "{isa:?}: dh where x is NaN");
            }
        }
    }
}

#[test]
fn row_selections_out_of_order_or_outside_the_block_are_refused() {
    let accepted = |indices: &[u32], offset: usize| {
        std::panic::catch_unwind(|| Nonzero { indices, offset }.check(8, "test")).is_ok()
    };
    assert!(accepted(&[], 0));
    assert!(accepted(&[0, 3, 7], 0));
    assert!(accepted(&[5, 8, 12], 5));
    assert!(!accepted(&[1, 5, 3], 0), "out of order");
    assert!(!accepted(&[1, 1], 0), "repeated");
    assert!(!accepted(&[0, 8], 0), "past the block");
    assert!(!accepted(&[4, 6], 5), "before the block");
    assert!(!accepted(&[5, 13], 5), "past the offset block");
}

#[test]
fn only_views_with_rows_in_order_are_addressable() {
    let a = noise(4, 6, 1);
    assert!(rows_contiguous(&a.view()));
    assert!(rows_contiguous(&a.slice(ndarray::s![1..3, 2..5])));
    assert!(rows_contiguous(&a.slice(ndarray::s![..;2, ..])));
    assert!(rows_contiguous(&a.slice(ndarray::s![.., 2..3])));
    assert!(!rows_contiguous(&a.slice(ndarray::s![2..3, ..;2])));
    assert!(!rows_contiguous(&a.slice(ndarray::s![..;-1, ..])));
    assert!(!rows_contiguous(&a.slice(ndarray::s![.., ..;2])));
    assert!(!rows_contiguous(&a.t()));
}

#[test]
fn forward_matches_the_definition_on_every_implementation() {
    // Row tiles of 6, 8 (AVX-512 over a list) and 12 and every remainder, column panels of
    // 64 (AVX-512's packed tiles), 32, 16, 8, 4, 2, 1 and masked ones, inner dimensions across the passes, row groups past
    // 192 (dense panels) and 128 (row by row), as evaluation's chunks have.
    for (m, k, n) in [
        (32, 784, 128),
        (30, 70, 20),
        (15, 40, 33),
        (18, 9, 64),
        (12, 100, 17),
        (1, 1, 1),
        (13, 7, 10),
        (25, 513, 48),
        (11, 1100, 31),
        (32, 64, 100),
        (5, 3, 16),
        (24, 1030, 77),
        (200, 30, 23),
    ] {
        let x = noise(m, k, 7);
        let w = noise(k, n, 8);
        let mut expected = Array2::zeros((m, n));
        reference::forward(expected.view_mut(), x.view(), w.view());
        for isa in isas() {
            for tiles in [Product::Tiles, Product::PackedTiles] {
                let mut z = noise(m, n, 9);
                operands::forward(isa, z.view_mut(), &x.view(), &w.view(), (None, tiles));
                assert_eq!(bits(&z), bits(&expected), "{isa:?} {tiles:?}, {m}x{k}x{n}");
            }
        }
        // Four fifths zeros, as an MNIST image (with a zero column and a zero row), row by
        // row with and without the nonzero list, and in dense tiles over the nonzero list.
        let mut sparse = x.mapv(|v| if v > 0.3 { v } else { 0.0 });
        sparse.column_mut(k / 2).fill(0.0);
        sparse.row_mut(m / 2).fill(0.0);
        let mut expected = Array2::zeros((m, n));
        reference::forward(expected.view_mut(), sparse.view(), w.view());
        let mut nonzero = Vec::new();
        nonzero_columns(&sparse.view(), &mut nonzero);
        for isa in isas() {
            for how in [
                (None, Product::Rows),
                (Some(&nonzero[..]), Product::Rows),
                (Some(&nonzero[..]), Product::Tiles),
                (Some(&nonzero[..]), Product::PackedTiles),
            ] {
                let mut z = noise(m, n, 9);
                operands::forward(isa, z.view_mut(), &sparse.view(), &w.view(), how);
                let what = format!("{isa:?}, sparse {m}x{k}x{n}, {:?}", how.1);
                assert_eq!(bits(&z), bits(&expected), "{what}");
            }
        }
    }
    // A column block of a wider matrix (row stride larger than the row).
    let (x, w) = (noise(32, 200, 10), noise(200, 96, 11));
    for isa in isas() {
        let mut whole = Array2::zeros((32, 96));
        let how = (None, Product::Tiles);
        operands::forward(isa, whole.view_mut(), &x.view(), &w.view(), how);
        let mut part = Array2::zeros((32, 96));
        for (zb, wb) in part
            .axis_chunks_iter_mut(Axis(1), 40)
            .zip(w.axis_chunks_iter(Axis(1), 40))
        {
            operands::forward(isa, zb, &x.view(), &wb, (None, Product::Rows));
        }
        assert_eq!(bits(&part), bits(&whole), "{isa:?}");
    }
}

#[test]
fn blocks_of_any_size_give_the_same_bits() {
    let (m, rows, n) = (32, 100, 300);
    let x = noise(m, rows, 4);
    let dz = noise(m, n, 5);
    let w0 = noise(rows, n, 6);
    for isa in isas() {
        let run = |size: usize| {
            let (mut w, mut dh) = (w0.clone(), Array2::<f32>::zeros((m, rows)));
            for ((wb, xb), dhb) in w
                .axis_chunks_iter_mut(Axis(0), size)
                .zip(x.axis_chunks_iter(Axis(1), size))
                .zip(dh.axis_chunks_iter_mut(Axis(1), size))
            {
                let block = Block {
                    w: wb,
                    x: xb,
                    dh: Some(dhb),
                    nonzero_rows: None,
                    relu_scale: None,
                    velocity: None,
                };
                operands::backward_rows(isa, block, &dz.view(), 0.5);
            }
            (bits(&w), bits(&dh))
        };
        let whole = run(rows);
        for size in [1, 7, 12, 33] {
            assert_eq!(run(size), whole, "{isa:?}, block size {size}");
        }
    }
}

#[test]
fn nonzero_columns_lists_the_columns_with_any_nonzero_value() {
    let tiny = f32::from_bits(1);
    let x = ndarray::array![
        [0.0, -0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, f32::NAN, tiny, -2.0, -0.0, 0.0],
        [0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 3.0],
    ];
    let mut nonzero = vec![9; 20];
    nonzero_columns(&x.view(), &mut nonzero);
    assert_eq!(nonzero, [2, 3, 4, 6]);
    // Any layout, and the buffer's old contents do not matter.
    let xt = x.t().to_owned();
    nonzero_columns(&xt.t(), &mut nonzero);
    assert_eq!(nonzero, [2, 3, 4, 6]);
    nonzero_columns(&Array2::<f32>::zeros((4, 5)).view(), &mut nonzero);
    assert!(nonzero.is_empty());
    nonzero_columns(&Array2::<f32>::ones((2, 3)).view(), &mut nonzero);
    assert_eq!(nonzero, [0, 1, 2]);
    // Every implementation, for widths around its 16 lanes and an image's 784, against the
    // columns read off one by one; values mostly +0 and -0, a few nonzero, NaN or subnormal.
    let special = [1.0, -2.5, f32::NAN, tiny, -tiny];
    for (rows, cols) in [(3, 7), (32, 784), (5, 16), (2, 17), (1, 33), (0, 5), (4, 1)] {
        let x = Array2::from_shape_fn((rows, cols), |(i, j)| match (i * 7 + j * 13) % 23 {
            0..=3 => special[(i + j) % special.len()],
            4..=12 => -0.0,
            _ => 0.0,
        });
        let expected: Vec<u32> = (0..cols as u32)
            .filter(|&j| x.column(j as usize).iter().any(|&v| v != 0.0 || v.is_nan()))
            .collect();
        for isa in isas() {
            let mut got = vec![7; 3];
            let values = x.as_slice().unwrap();
            operands::nonzero_columns_with(isa, values, cols, &mut got);
            assert_eq!(got, expected, "{isa:?}, {rows}x{cols}");
        }
    }
}

#[test]
fn public_products_give_the_same_bits_on_every_implementation_and_thread_count() {
    // Inputs dense (the dense tiles, in column blocks; AVX-512's packed ones from 1024 columns),
    // sparse (row by row: by batch rows below 512 columns, odd ones too, by column blocks from
    // 512; the 10-column output layer by batch rows) and a fifth nonzero in 130 rows (row by row on AVX-512 below 512 columns too), with
    // zero columns. `above`: the inputs kept (noise is uniform in -0.5..0.5).
    let (k, lr, scale) = (300, 0.05, 2.0);
    for (m, n, above) in [
        (32, 128, None),
        (32, 128, Some(0.1)),
        (33, 200, Some(0.1)),
        (32, 1100, Some(0.1)),
        (64, 1100, Some(0.1)),
        (130, 128, Some(0.3)),
        (9, 1030, None),
        (70, 24, None),
    ] {
        let mut x = noise(m, k, 1);
        if let Some(above) = above {
            x.mapv_inplace(|v| if v > above { v } else { 0.0 });
        }
        for c in (0..40).chain((0..k).step_by(3)) {
            x.column_mut(c).fill(0.0);
        }
        let h = noise(m, n, 5).mapv(|v| (v - 0.25).max(0.0));
        let (w0, dz, w1) = (noise(k, n, 2), noise(m, n, 3), noise(n, 10, 6));
        let dz1 = noise(m, 10, 7);
        let mut nonzero = Vec::new();
        nonzero_columns(&x.view(), &mut nonzero);
        let run = |kernels: Kernels, threads: usize, nonzero: &[u32]| {
            pool(threads).install(|| {
                let mut z = Array2::zeros((m, n));
                matmul_nonzero(kernels, &mut z.view_mut(), &x.view(), &w0.view(), nonzero);
                let mut w = w0.clone();
                update_nonzero(
                    kernels,
                    &mut w.view_mut(),
                    &dz.view(),
                    &x.view(),
                    lr,
                    nonzero,
                );
                let (mut w_out, mut dh) = (w1.clone(), Array2::zeros((m, n)));
                let (dh_view, w_view) = (&mut dh.view_mut(), &mut w_out.view_mut());
                let step = (lr, scale);
                backward_sgd_relu(kernels, dh_view, w_view, &dz1.view(), &h.view(), step);
                // The output layer's forward: 10 columns, by batch rows (in parallel from 64
                // rows of 1100 inputs).
                let mut logits = Array2::zeros((m, 10));
                matmul(kernels, &mut logits.view_mut(), &h.view(), &w1.view());
                (bits(&z), bits(&w), bits(&w_out), bits(&dh), bits(&logits))
            })
        };
        let expected = run(Kernels::Portable, 1, &nonzero);
        let everything: Vec<u32> = (0..k as u32).collect();
        for kernels in Kernels::runnable()
            .into_iter()
            .filter(|k| k.is_portable_arithmetic())
        {
            for threads in [1, 2] {
                let what = format!("{kernels}, {threads} threads, {m}x{n}");
                assert_eq!(run(kernels, threads, &nonzero), expected, "{what}");
                assert_eq!(run(kernels, threads, &everything), expected, "{what}");
            }
        }
        // The dense forward product equals the sparse one.
        let mut dense = Array2::zeros((m, n));
        matmul(Kernels::Auto, &mut dense.view_mut(), &x.view(), &w0.view());
        assert_eq!(bits(&dense), expected.0);
        // The fused ReLU backward equals the plain backward, then the ReLU + dropout backward.
        let (mut w_plain, mut dh_plain) = (w1.clone(), Array2::zeros((m, n)));
        let dh_view = Some(&mut dh_plain.view_mut());
        backward_sgd(
            Kernels::Auto,
            dh_view,
            &mut w_plain.view_mut(),
            &dz1.view(),
            &h.view(),
            lr,
        );
        relu_dropout_backward(dh_plain.view_mut(), h.view(), scale);
        assert_eq!((bits(&w_plain), bits(&dh_plain)), (expected.2, expected.3));
    }
}

#[test]
#[should_panic(expected = "update_nonzero: the nonzero list must be strictly increasing")]
fn an_unordered_nonzero_list_is_refused() {
    let (mut w, dz, x) = (
        Array2::zeros((6, 4)),
        Array2::zeros((2, 4)),
        Array2::zeros((2, 6)),
    );
    update_nonzero(
        Kernels::Auto,
        &mut w.view_mut(),
        &dz.view(),
        &x.view(),
        0.1,
        &[0, 4, 2],
    );
}

/// `bias_relu_dropout`'s definition, unit by unit: chunk `c` of 8 rows draws from its own
/// stream, one 64-bit draw per pair of units (low half first), and a unit is kept when its
/// 32-bit draw is at least `p * 2^32`.
fn dropout_reference(z: &Array2<f32>, bias: &Array1<f32>, d: Dropout) -> Array2<f32> {
    let mut out = z.clone();
    for (chunk, mut rows) in out
        .axis_chunks_iter_mut(Axis(0), elementwise::CHUNK_ROWS)
        .enumerate()
    {
        let mut rng = rng::stream(d.key, Stream::Dropout, &[chunk as u64]);
        for mut row in rows.rows_mut() {
            let mut draws = Vec::new();
            while draws.len() < row.len() {
                let r = rng.next_u64();
                draws.extend([r & 0xffff_ffff, r >> 32]);
            }
            for ((v, &b), &draw) in row.iter_mut().zip(bias).zip(&draws) {
                *v = if draw >= d.threshold() {
                    (*v + b).max(0.0) * d.scale()
                } else {
                    0.0
                };
            }
        }
    }
    out
}

#[test]
fn dropout_keeps_and_zeroes_units_as_defined() {
    // Odd widths, and widths past one run of draws with an odd remainder; several chunks with a
    // partial or a full one last (37, 40 rows), each on one thread and on two.
    let cases = [
        (1, 1, 0.5),
        (9, 7, 0.5),
        (20, 128, 0.25),
        (32, 2048, 0.5),
        (10, 301, 0.5),
        (3, 257, 0.3),
        (37, 301, 0.5),
        (40, 128, 0.5),
        (64, 3, 0.5),
    ];
    let (one_thread, two_threads) = (pool(1), pool(2));
    for ((rows, width, p), threads) in cases.into_iter().flat_map(|c| [(c, 1), (c, 2)]) {
        let z = Array2::from_shape_fn((rows, width), |(i, j)| {
            ((i * 37 + j * 11) % 23) as f32 / 11.0 - 1.0
        });
        let bias = Array1::from_shape_fn(width, |j| (j % 5) as f32 * 0.01);
        let d = Dropout { p, key: 99 };
        let expected = dropout_reference(&z, &bias, d);
        let mut h = z.clone();
        let run = || bias_relu_dropout(h.view_mut(), bias.view(), Some(d));
        if threads == 1 {
            one_thread.install(run)
        } else {
            two_threads.install(run)
        }
        assert_eq!(
            bits(&h),
            bits(&expected),
            "{rows}x{width}, p = {p}, {threads} threads"
        );
        // Dropped and inactive units are +0.0, never -0.0.
        assert!(h.iter().all(|v| v.to_bits() != (-0.0f32).to_bits()));
        if rows * width >= 1000 {
            let kept = h.iter().filter(|&&v| v > 0.0).count() as f32;
            let active = (&z + &bias).iter().filter(|&&v| v > 0.0).count() as f32;
            let rate = kept / active;
            assert!(
                (rate - (1.0 - p)).abs() < 0.05,
                "kept {rate} of active units"
            );
        }
    }
}

/// A training step's dropout mask, committed: which units a (seed, epoch, step, layer) keeps
/// is integer arithmetic on the derived key, the same on every CPU. A change here changes
/// every result.
#[test]
fn dropout_masks_are_the_committed_goldens() {
    // On one thread and on two (chunks in parallel).
    for threads in [1, 2] {
        let key = Dropout::key(0, 1, 1499, 0);
        let mut h = Array2::<f32>::ones((32, 128));
        pool(threads).install(|| {
            bias_relu_dropout(
                h.view_mut(),
                Array1::zeros(128).view(),
                Some(Dropout { p: 0.5, key }),
            )
        });
        let kept: Vec<usize> = (h.iter().enumerate())
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, _)| i)
            .collect();
        let got = (key, kept.len(), fingerprint(&kept));
        assert_eq!(got, GOLDEN_MASK, "{threads} threads: {got:#x?}");
        assert!(h.iter().all(|&v| v == 0.0 || v == 2.0));
    }
}

const GOLDEN_MASK: (u64, usize, u64) = (0x8754_be8f_3695_bb0a, 2009, 0xd20d_c704_e612_608b);

#[test]
fn exp_and_log_are_relumax_own_with_golden_values() {
    // Golden bits of the pinned libm port (musl's expf and logf), so that a change of those
    // functions, which would change every trained model, is seen here first. They are the
    // correctly rounded values: `struct.pack('<f', math.exp(x))` in Python.
    let cases: [(f32, u32, u32); 4] = [
        (1.0, 0x402d_f854, 0x0000_0000),
        (0.5, 0x3fd3_094c, 0xbf31_7218),
        (3.25, 0x41ce_529e, 0x3f96_de2b),
        (10.0, 0x46ac_14ee, 0x4013_5d8e),
    ];
    for (x, e, l) in cases {
        assert_eq!(exp(x).to_bits(), e, "exp({x})");
        assert_eq!(ln(x).to_bits(), l, "ln({x})");
    }
    assert_eq!(exp(-3.25).to_bits(), 0x3d1e_d1b4);
    assert!(ln(-1.0).is_nan());
    assert_eq!(exp(-200.0), 0.0);
}

/// `|a - b| <= 2 gamma_k (|x| |w|) + slack` element by element, `gamma_k = k u / (1 - k u)`
/// with `u = 2^-24`: each of two summation orders of a dot product of `k` terms is within
/// `gamma_k` of the exact value, relative to the sum of the terms' magnitudes (Higham, Accuracy
/// and Stability of Numerical Algorithms, 3.1).
fn assert_within_rounding(a: &Array2<f32>, b: &Array2<f32>, magnitude: &Array2<f32>, k: usize) {
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = k as f64 * u / (1.0 - k as f64 * u);
    for ((&p, &q), &mag) in a.iter().zip(b).zip(magnitude) {
        let (p, q) = (f64::from(p), f64::from(q));
        // Half an ulp of each result for its own final rounding.
        let slack = (p.abs() + q.abs()) * u;
        let bound = 2.0 * gamma * f64::from(mag) + slack;
        assert!(
            (p - q).abs() <= bound,
            "{p} and {q} differ by more than {bound}"
        );
    }
}

#[test]
fn every_product_agrees_with_openblas_within_the_rounding_of_its_length() {
    let abs = |a: &Array2<f32>| a.mapv(f32::abs);
    for (m, k, n) in [(32, 784, 128), (32, 300, 1100), (70, 64, 10)] {
        let x = noise(m, k, 1).mapv(|v| (v - 0.25).max(0.0));
        let (w, dz) = (noise(k, n, 2), noise(m, n, 3));
        let z = [Kernels::Auto, Kernels::Blas].map(|kernels| {
            let mut z = Array2::zeros((m, n));
            matmul(kernels, &mut z.view_mut(), &x.view(), &w.view());
            z
        });
        assert_within_rounding(&z[0], &z[1], &abs(&x).dot(&abs(&w)), k);
        let lr = 0.5;
        let [(w_a, dh_a), (w_b, dh_b)] = [Kernels::Auto, Kernels::Blas].map(|kernels| {
            let (mut w, mut dh) = (w.clone(), Array2::zeros((m, k)));
            let dh_view = Some(&mut dh.view_mut());
            backward_sgd(
                kernels,
                dh_view,
                &mut w.view_mut(),
                &dz.view(),
                &x.view(),
                lr,
            );
            (w, dh)
        });
        assert_within_rounding(&dh_a, &dh_b, &abs(&dz).dot(&abs(&w).t()), n);
        // The update: `lr` times the gradient's bound, plus the rounding of `w` itself.
        let step = abs(&x).t().dot(&abs(&dz)) * lr + abs(&w);
        assert_within_rounding(&w_a, &w_b, &step, m + 1);
        // And the bound is not vacuous: the two differ somewhere (different orders).
        let differ = z[0].iter().zip(&z[1]).any(|(p, q)| p != q) || w_a != w_b;
        assert!(differ, "{m}x{k}x{n}: the orders agree everywhere");
    }
}

#[test]
fn nan_propagates_through_relu_dropout_and_products_alike_on_every_implementation() {
    // ReLU keeps NaN (so that a diverging run's loss becomes NaN and stops it); a dropped unit
    // is +0 whatever it held.
    let mut z = ndarray::array![[f32::NAN, -1.0, 2.0, f32::NAN]];
    bias_relu_dropout(z.view_mut(), Array1::zeros(4).view(), None);
    assert!(z[[0, 0]].is_nan() && z[[0, 3]].is_nan());
    assert_eq!((z[[0, 1]], z[[0, 2]]), (0.0, 2.0));
    let mut wide = Array2::from_elem((8, 64), f32::NAN);
    let dropout = Dropout { p: 0.5, key: 3 };
    bias_relu_dropout(wide.view_mut(), Array1::zeros(64).view(), Some(dropout));
    let kept = wide.iter().filter(|v| v.is_nan()).count();
    let dropped = wide.iter().filter(|v| v.to_bits() == 0).count();
    assert_eq!(kept + dropped, wide.len());
    assert!(
        kept > 100 && dropped > 100,
        "{kept} kept, {dropped} dropped"
    );
    // A NaN input makes its row of every product NaN, the same on every implementation and
    // whichever way the product runs (dense, over the nonzero columns, row by row).
    let (m, k, n) = (12, 300, 96);
    let mut x = noise(m, k, 1).mapv(|v| if v > 0.2 { v } else { 0.0 });
    x[[5, 17]] = f32::NAN;
    let w = noise(k, n, 2);
    let mut nonzero = Vec::new();
    nonzero_columns(&x.view(), &mut nonzero);
    for isa in isas() {
        for how in [
            (None, Product::Tiles),
            (None, Product::PackedTiles),
            (None, Product::Rows),
            (Some(&nonzero[..]), Product::Tiles),
        ] {
            let mut z = Array2::zeros((m, n));
            operands::forward(isa, z.view_mut(), &x.view(), &w.view(), how);
            for ((i, _), v) in z.indexed_iter() {
                assert_eq!(v.is_nan(), i == 5, "{isa:?} {:?}", how.1);
            }
        }
    }
}

#[test]
fn layer_work_counts_what_the_kernels_skip() {
    // 4 rows x 8 inputs: 10 nonzeros (3 of them negative), the last two columns all zero.
    let x = array![
        [1.0f32, 0.0, 0.0, 2.0, 0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.5, -2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, -0.5, 4.0, 1.0, 0.0, 0.0],
    ];
    let mut columns = Vec::new();
    nonzero_columns(&x.view(), &mut columns);
    assert_eq!(columns, [0, 1, 2, 3, 4, 5]);
    let (nonzero, positive) = (10.0, 7.0);
    for kernels in [Kernels::Portable, Kernels::Blas] {
        let portable = kernels == Kernels::Portable;
        // A hidden layer's input into 64 units: less than half nonzero, so the forward goes
        // row by row; the update over nonzeros; the input gradient in the same pass, over
        // nonzeros too (batches of up to 64 rows), else only where positive.
        let w = layer_work(kernels, &x.view(), 64, None);
        assert_eq!((w.inputs, w.zeros), (32.0, 22.0));
        assert_eq!(w.dense_flops, 3.0 * 2.0 * 32.0 * 64.0);
        let executed = 2.0 * (nonzero + nonzero + nonzero) * 64.0;
        assert_eq!(
            w.executed_flops,
            if portable { executed } else { w.dense_flops }
        );
        let tall = ndarray::concatenate(Axis(0), &[x.view(); 17]).unwrap();
        let w = layer_work(kernels, &tall.view(), 64, None);
        let executed = 17.0 * 2.0 * (nonzero + positive + nonzero) * 64.0;
        assert_eq!(
            w.executed_flops,
            if portable { executed } else { w.dense_flops }
        );
        // Into 16 units (the output layer's kind): the dense forward tiles, and the narrow
        // backward, dense too where the FMA is an instruction; 17 units: the sparse backward
        // in one pass (the input gradient over the nonzero inputs, as the update).
        let sparse = |n: f64| 2.0 * 32.0 * n + 2.0 * (nonzero + nonzero) * n;
        let w = layer_work(kernels, &x.view(), 16, None);
        let dense_narrow = !portable || cfg!(not(target_arch = "x86_64"));
        assert_eq!(
            w.executed_flops,
            if dense_narrow {
                w.dense_flops
            } else {
                sparse(16.0)
            }
        );
        let w = layer_work(kernels, &x.view(), 17, None);
        assert_eq!(
            w.executed_flops,
            if portable {
                sparse(17.0)
            } else {
                w.dense_flops
            }
        );
        if portable && Kernels::Avx2.supported() {
            let w = layer_work(Kernels::Avx2, &x.view(), 16, None);
            assert_eq!(w.executed_flops, w.dense_flops, "avx2's narrow backward");
        }
        // A first layer of 16 units: the forward over the 6 nonzero columns; the update in
        // tiles of 4 nonzero columns, each over the rows where one of its columns is nonzero
        // (columns 0-3: all 4 rows; columns 4-5: rows 0, 2 and 3).
        let w = layer_work(kernels, &x.view(), 16, Some(&columns));
        assert_eq!(w.dense_flops, 2.0 * 2.0 * 32.0 * 16.0);
        let executed = 2.0 * 4.0 * 6.0 * 16.0 + 2.0 * (4.0 * 4.0 + 3.0 * 2.0) * 16.0;
        assert_eq!(
            w.executed_flops,
            if portable { executed } else { w.dense_flops }
        );
        // Into 64 units, the same batch's forward goes row by row (less than half nonzero),
        // over each row's own nonzeros.
        let w = layer_work(kernels, &x.view(), 64, Some(&columns));
        let executed = 2.0 * nonzero * 64.0 + 2.0 * (4.0 * 4.0 + 3.0 * 2.0) * 64.0;
        assert_eq!(
            w.executed_flops,
            if portable { executed } else { w.dense_flops }
        );
    }
    if Kernels::Avx512.supported() {
        // AVX-512's own kernels: the dense forward tiles into 64 units, the input gradient
        // where the input is positive and the update one row of `W` at a time over its
        // nonzeros; into 16, the narrow backward computes every product; the first layer's
        // update two pixels at a time over the rows either is nonzero in (columns 0-1: rows
        // 0 and 2; 2-3: rows 0, 1 and 3; 4-5: rows 0, 2 and 3).
        let avx512 = |n: usize, columns| layer_work(Kernels::Avx512, &x.view(), n, columns);
        let w = avx512(64, None);
        assert_eq!(w.executed_flops, 2.0 * (32.0 + positive + nonzero) * 64.0);
        let w = avx512(16, None);
        assert_eq!(w.executed_flops, w.dense_flops, "avx512's narrow backward");
        let w = avx512(16, Some(&columns));
        let update = 2.0 * 2.0 * (2.0 + 3.0 + 3.0) * 16.0;
        assert_eq!(w.executed_flops, 2.0 * 4.0 * 6.0 * 16.0 + update);
    }
}

#[test]
fn relu_dropout_backward_takes_gradient_rows_padded_apart() {
    // The training step's gradients are rows a cache line apart (`model::gradient_stride`);
    // the OpenBLAS backend applies the ReLU + dropout backward to them in place.
    let (h, g) = (noise(5, 7, 1), noise(5, 7, 2));
    let mut dense = g.clone();
    relu_dropout_backward(dense.view_mut(), h.view(), 2.0);
    let mut padded = Array2::from_elem((5, 9), 7.0f32);
    padded.slice_mut(ndarray::s![.., ..7]).assign(&g);
    relu_dropout_backward(padded.slice_mut(ndarray::s![.., ..7]), h.view(), 2.0);
    assert_eq!(
        bits(&padded.slice(ndarray::s![.., ..7]).to_owned()),
        bits(&dense)
    );
    assert!(
        padded.slice(ndarray::s![.., 7..]).iter().all(|&v| v == 7.0),
        "padding untouched"
    );
    assert!(dense.iter().any(|&v| v == 0.0) && dense.iter().any(|&v| v != 0.0));
}

#[test]
fn weights_with_rows_padded_apart_give_the_bits_of_standard_ones() {
    // Weights whose rows are further apart than their length (a column block of a wider
    // matrix, a padded buffer): every product reads and writes them in place, with the bits of
    // standard-layout weights, and leaves the memory between the rows alone.
    let (m, k, n, lr, mu) = (32, 300, 1024, 0.05, 0.9);
    let padded = |w: &Array2<f32>| {
        let mut full = Array2::from_elem((w.nrows(), w.ncols() + 16), 7.0f32);
        full.slice_mut(ndarray::s![.., ..w.ncols()]).assign(w);
        full
    };
    let mut x = noise(m, k, 1).mapv(|v| (v - 0.25).max(0.0));
    x.column_mut(3).fill(0.0);
    let mut nonzero = Vec::new();
    nonzero_columns(&x.view(), &mut nonzero);
    let (w0, dz) = (noise(k, n, 2), noise(m, n, 3));
    for kernels in Kernels::runnable() {
        let mut standard = (w0.clone(), Array2::zeros((m, n)), Array2::zeros((m, k)));
        let mut full = (padded(&w0), Array2::zeros((m, n)), Array2::zeros((m, k)));
        let mut velocity = (Array2::zeros((k, n)), Array2::zeros((k, n)));
        for (w, z, dh) in [&mut standard, &mut full] {
            let mut w = w.slice_mut(ndarray::s![.., ..n]);
            matmul(kernels, &mut z.view_mut(), &x.view(), &w.view());
            let mut dense = Array2::zeros((m, n));
            matmul_nonzero(
                kernels,
                &mut dense.view_mut(),
                &x.view(),
                &w.view(),
                &nonzero,
            );
            assert_eq!(bits(&dense), bits(z), "{kernels}");
            update_nonzero(kernels, &mut w, &dz.view(), &x.view(), lr, &nonzero);
            backward_sgd_relu(
                kernels,
                &mut dh.view_mut(),
                &mut w,
                &dz.view(),
                &x.view(),
                (lr, 2.0),
            );
        }
        for (w, v) in [
            (&mut standard.0, &mut velocity.0),
            (&mut full.0, &mut velocity.1),
        ] {
            let mut w = w.slice_mut(ndarray::s![.., ..n]);
            let (v, x) = (&mut v.view_mut(), &x.view());
            backward_momentum(kernels, None, &mut w, v, &dz.view(), x, (lr, mu));
        }
        let what = format!("{kernels}");
        assert_eq!(bits(&standard.1), bits(&full.1), "forward, {what}");
        assert_eq!(bits(&standard.2), bits(&full.2), "input gradient, {what}");
        let after = full.0.slice(ndarray::s![.., ..n]).to_owned();
        assert_eq!(bits(&standard.0), bits(&after), "weights, {what}");
        assert_eq!(bits(&velocity.0), bits(&velocity.1), "velocity, {what}");
        assert!(
            full.0.slice(ndarray::s![.., n..]).iter().all(|&v| v == 7.0),
            "padding untouched, {what}"
        );
    }
}
