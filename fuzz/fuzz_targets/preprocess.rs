//! Any small grayscale image through MNIST's preprocessing: a 28 x 28 digit with ink in
//! [0, 1], or an error for a blank image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndarray::Array2;

fuzz_target!(|data: &[u8]| {
    let [h, w, pixels @ ..] = data else { return };
    let (h, w) = (usize::from(*h % 64), usize::from(*w % 64));
    if pixels.len() < h * w {
        return;
    }
    let gray = Array2::from_shape_fn((h, w), |(r, c)| f32::from(pixels[r * w + c]) / 255.0);
    if let Ok(d) = relumax::mnist_digit(gray.view()) {
        assert_eq!(d.dim(), (relumax::FRAME, relumax::FRAME));
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)), "{d}");
    }
});
