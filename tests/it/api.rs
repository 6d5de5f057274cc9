//! The library as a user links it: only the public API, no CLI.

use std::ops::ControlFlow;

use ndarray::{Array1, Array2};
use relumax::{
    Dataset, Dense, Error, Event, Init, Mlp, TrainConfig, Trainer, data::Holdout, kernels,
    train::evaluate,
};

#[test]
fn idx_folder_to_trained_model_to_file_and_back() {
    let (_tmp, dir) = crate::common::small_dataset(true);
    let data = Dataset::open(&dir).unwrap();
    let config = TrainConfig {
        hidden: vec![24],
        epochs: 2,
        ..Default::default()
    };
    let trainer = Trainer::new(config.clone()).unwrap();
    let mut epochs_seen = Vec::new();
    let result = trainer
        .fit(&data, |e| {
            if let Event::Epoch(m) = e {
                epochs_seen.push(m.epoch);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(epochs_seen, [1, 2]);
    assert_eq!(result.model.sizes(), [64, 24, 4]);
    assert!(result.test.as_ref().unwrap().accuracy > 0.9);
    let again = evaluate(&result.model, data.test.as_ref().unwrap(), None);
    assert_eq!(again, result.test.unwrap());

    let path = _tmp.path().join("model.safetensors");
    let config_json = serde_json::to_string(&config).unwrap();
    result
        .model
        .save_with_metadata(&path, &[("config", config_json.clone())])
        .unwrap();
    let loaded = Mlp::load_with_metadata(&path).unwrap();
    assert_eq!(loaded.0, result.model);
    let back: TrainConfig = serde_json::from_str(&loaded.1["config"]).unwrap();
    assert_eq!(back, config);
}

#[test]
fn in_memory_data_of_any_shape_with_early_stopping() {
    // 5 features, 3 classes: the class is the index of the largest of the first 3 features.
    let make = |n: usize, salt: usize| {
        let x = Array2::from_shape_fn((n, 5), |(i, j)| {
            (((i + salt) * 37 + j * 101) % 97) as f32 / 97.0
        });
        let y = (0..n)
            .map(|i| {
                let row = x.row(i);
                (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32
            })
            .collect();
        (x, y)
    };
    let (tx, ty) = make(600, 0);
    let (vx, vy) = make(200, 7);
    let data = Dataset::from_arrays(tx, ty, 3)
        .unwrap()
        .with_test(vx, vy)
        .unwrap();
    let holdout = Holdout::new(data.train.len(), 0.25, 1);
    assert_eq!(holdout.val.len(), 150);
    let trainer = Trainer::new(TrainConfig {
        hidden: vec![32],
        epochs: 50,
        lr: 0.05,
        dropout: 0.0,
        ..Default::default()
    })
    .unwrap();
    // Stop as soon as validation accuracy passes 0.85.
    let r = trainer
        .fit(&data, |e| match e {
            Event::Epoch(m) if m.val_accuracy.unwrap() > 0.85 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
    assert!(r.stopped_early, "{:?}", r.epochs.last());
    assert!(r.epochs.len() < 50);
    let p = r
        .model
        .predict_proba(data.test.as_ref().unwrap().rows(&[0, 1, 2]).0.view())
        .unwrap();
    assert_eq!(p.dim(), (3, 3));
}

#[test]
fn models_from_hand_made_layers() {
    let layer = |i, o| Dense::from_parts(Array2::from_elem((i, o), 0.1), Array1::zeros(o)).unwrap();
    // A layer checks its own shapes, and keeps its weights in standard layout.
    let err = Dense::from_parts(Array2::zeros((4, 3)), Array1::zeros(2)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = Dense::from_parts(Array2::zeros((0, 3)), Array1::zeros(3)).unwrap_err();
    assert!(err.to_string().contains("inputs must be 1..="), "{err}");
    let transposed = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32).reversed_axes();
    let t = Dense::from_parts(transposed.clone(), Array1::zeros(3)).unwrap();
    assert!(t.weight().is_standard_layout());
    assert_eq!(t.weight(), &transposed);
    let m = Mlp::from_layers(vec![layer(4, 3), layer(3, 2)]).unwrap();
    assert_eq!((m.inputs(), m.classes(), m.hidden()), (4, 2, vec![3]));
    assert_eq!(m.parameters(), 4 * 3 + 3 + 3 * 2 + 2);
    // A configuration counts the parameters of the network it trains.
    let config = TrainConfig {
        hidden: vec![3],
        ..Default::default()
    };
    assert_eq!(config.parameters(4, 2), m.parameters() as u64);
    let err = Mlp::from_layers(vec![layer(4, 3), layer(5, 2)]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                expected: 3,
                found: 5,
                ..
            }
        ),
        "{err}"
    );
    let err = Mlp::new(&[4], Init::He, 0).unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    // Save and load through the methods; predictions survive bit for bit.
    let tmp = tempfile::tempdir().unwrap();
    let net = Mlp::new(&[4, 6, 3], Init::Xavier, 9).unwrap();
    net.save(tmp.path().join("net.safetensors")).unwrap();
    let back = Mlp::load(tmp.path().join("net.safetensors")).unwrap();
    let x = Array2::from_shape_fn((5, 4), |(i, j)| (i + j) as f32 / 7.0);
    assert_eq!(
        back.predict_proba(x.view()).unwrap(),
        net.predict_proba(x.view()).unwrap()
    );
    assert_eq!(
        back.predict(x.view()).unwrap(),
        net.predict(x.view()).unwrap()
    );
    // The same bytes in memory, with their metadata.
    let bytes = net.to_safetensors(&[("note", "hi".into())]);
    let (parsed, metadata) = Mlp::from_safetensors(&bytes).unwrap();
    assert_eq!((&parsed, metadata["note"].as_str()), (&net, "hi"));
    assert_eq!(metadata["sizes"], "4,6,3");
    // layers_mut changes values in place (shapes cannot change: it hands out views).
    let mut edited = net.clone();
    for (mut weight, mut bias) in edited.layers_mut() {
        weight.fill(0.0);
        bias.fill(1.0);
    }
    assert_eq!(edited.sizes(), net.sizes());
    let uniform = edited.predict_proba(x.view()).unwrap();
    assert!(
        uniform.iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-6),
        "{uniform}"
    );
}

#[test]
fn inference_takes_any_layout_and_refuses_the_wrong_shape() {
    let (_tmp, dir) = crate::common::small_dataset(false);
    let data = Dataset::open(&dir).unwrap();
    let config = TrainConfig {
        hidden: vec![16],
        epochs: 1,
        ..Default::default()
    };
    let model = crate::common::train(config, &data).model;
    let all: Vec<usize> = (0..data.test.as_ref().unwrap().len()).collect();
    let (x, y) = data.test.as_ref().unwrap().rows(&all);
    // The companion of `evaluate` on plain arrays gives the same numbers, to the bit.
    let on_split = relumax::train::evaluate(&model, data.test.as_ref().unwrap(), None);
    assert_eq!(model.evaluate(x.view(), &y).unwrap(), on_split);
    // Any memory layout: a column-major copy and a strided view give the same probabilities.
    let p = model.predict_proba(x.view()).unwrap();
    let fortran = x.t().as_standard_layout().into_owned().reversed_axes();
    assert!(!fortran.is_standard_layout());
    assert_eq!(model.predict_proba(fortran.view()).unwrap(), p);
    let every_other = x.slice(ndarray::s![..;2, ..]);
    let p2 = model.predict_proba(every_other).unwrap();
    assert_eq!(p2, p.slice(ndarray::s![..;2, ..]));
    // The wrong number of features is an error naming both counts, not a panic.
    let narrow = x.slice(ndarray::s![.., ..10]);
    for err in [
        model.predict(narrow).unwrap_err(),
        model.predict_proba(narrow).unwrap_err(),
        model.evaluate(narrow, &y).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::Shape {
                    expected: 64,
                    found: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("features"), "{err}");
    }
    let err = model.evaluate(x.view(), &y[1..]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let mut bad = y.clone();
    bad[3] = 7;
    let err = model.evaluate(x.view(), &bad).unwrap_err();
    assert!(
        matches!(&err, Error::LabelOutOfRange { labels, index: 3, label: 7, classes: 4 } if labels == "y"),
        "{err}"
    );
}

#[test]
fn kernels_build_a_custom_layer() {
    // A user's own layer: h = relu(x W + b) with dropout, then its backward.
    let x = Array2::from_shape_fn((16, 8), |(i, j)| (i as f32 - j as f32) / 8.0);
    let w = Array2::from_shape_fn((8, 64), |(i, j)| ((i * 64 + j) % 7) as f32 / 7.0 - 0.4);
    let b = Array1::from_elem(64, 0.05f32);
    let mut h = Array2::zeros((16, 64));
    kernels::gemm(&mut h.view_mut(), 0.0, &x.view(), &w.view(), 1.0);
    let drop = kernels::Dropout {
        p: 0.5,
        key: kernels::Dropout::key(42, 0, 0, 0),
    };
    kernels::bias_relu_dropout(h.view_mut(), b.view(), Some(drop));
    let zeros = h.iter().filter(|&&v| v == 0.0).count();
    assert!(
        zeros > 16 * 64 / 3,
        "about half dropped plus inactive units: {zeros}"
    );
    assert!(h.iter().all(|&v| v >= 0.0));
    let mut g = Array2::from_elem((16, 64), 1.0f32);
    kernels::relu_dropout_backward(g.view_mut(), h.view(), 2.0);
    for (gv, hv) in g.iter().zip(&h) {
        assert_eq!(*gv, if *hv > 0.0 { 2.0 } else { 0.0 });
    }
}

/// 64 training rows of 4 features (`x`, or a fixed pattern), two classes, and 8 test rows.
fn two_classes(x: Option<Array2<f32>>) -> relumax::Result<relumax::Dataset> {
    let x = x.unwrap_or_else(|| Array2::from_shape_fn((64, 4), |(i, j)| ((i * 7 + j) % 5) as f32));
    let labels = (0..64).map(|i| (i % 2) as u32).collect();
    relumax::Dataset::from_arrays(x, labels, 2)
        .and_then(|d| d.with_test(Array2::zeros((8, 4)), vec![0; 8]))
}

#[test]
fn the_test_split_is_optional() {
    let x = Array2::from_shape_fn((64, 4), |(i, j)| ((i * 7 + j) % 5) as f32);
    let labels: Vec<u32> = (0..64).map(|i| (i % 2) as u32).collect();
    let data = relumax::Dataset::from_arrays(x.clone(), labels.clone(), 2).unwrap();
    assert!(data.test.is_none());
    let result = sixteen_wide()
        .fit(&data, |_| ControlFlow::Continue(()))
        .unwrap();
    // No test split: no test metrics (not an accuracy of 0).
    assert_eq!(result.test, None);
    assert_eq!(result.epochs.len(), 1);
    // With one, the same training reports it, and it equals evaluate on the same arrays.
    let tested = data.with_test(x.clone(), labels.clone()).unwrap();
    let result = sixteen_wide()
        .fit(&tested, |_| ControlFlow::Continue(()))
        .unwrap();
    let evaluation = result.model.evaluate(x.view(), &labels).unwrap();
    assert_eq!(result.test, Some(evaluation));
    // A test split must match the training split's features.
    let err = relumax::Dataset::from_arrays(x, labels, 2)
        .unwrap()
        .with_test(Array2::zeros((3, 5)), vec![0; 3])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, expected: 4, found: 5 } if what.contains("test")),
        "{err}"
    );
}

/// A trainer of one hidden layer of 16 for one epoch.
fn sixteen_wide() -> relumax::Trainer {
    relumax::Trainer::new(relumax::TrainConfig {
        hidden: vec![16],
        epochs: 1,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_model_whose_layers_disagree_with_the_configuration_is_refused() {
    let data = two_classes(None).unwrap();
    let trainer = sixteen_wide();
    // A state past the configuration's epochs, or past an epoch's steps, says which.
    let model = || relumax::Mlp::new(&[4, 16, 2], relumax::Init::He, 0).unwrap();
    let go = |state| trainer.run(state, &data, |_| ControlFlow::Continue(()));
    let mut late = relumax::train::TrainState::new(model());
    late.epoch = 5;
    let text = go(late).unwrap_err().to_string();
    assert!(text.contains("at epoch 6 of a run of 1 epochs"), "{text}");
    let mut far = relumax::train::TrainState::new(model());
    far.step = 1000;
    let text = go(far).unwrap_err().to_string();
    assert!(
        text.contains("at step 1000 of an epoch that has 2"),
        "{text}"
    );
    let other = relumax::Mlp::new(&[4, 8, 2], relumax::Init::He, 0).unwrap();
    let err = trainer
        .fit_model(other, &data, |_| std::ops::ControlFlow::Continue(()))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("hidden layers [16]") && text.contains("[8]"),
        "{text}"
    );
}

#[test]
fn non_finite_values_are_refused_at_the_door_and_never_saved() {
    let mut x = Array2::from_shape_fn((64, 4), |(i, j)| ((i * 7 + j) % 5) as f32);
    x[[3, 2]] = f32::NAN;
    let err = two_classes(Some(x)).unwrap_err();
    assert!(
        matches!(
            err,
            relumax::Error::NonFinite {
                row: 3,
                column: 2,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("train features: row 3, column 2 is NaN"),
        "{text}"
    );
    let data = two_classes(None).unwrap();
    // A NaN weight reaches the loss through ReLU (which keeps NaN) and stops training.
    let trainer = sixteen_wide();
    let mut model = trainer.init_model(&data).unwrap();
    model.layers_mut().next().unwrap().0[[1, 5]] = f32::NAN;
    let err = trainer
        .fit_model(model.clone(), &data, |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            relumax::Error::Diverged {
                epoch: 1,
                step: 1,
                ..
            }
        ),
        "{err}"
    );
    // And such a model is not written: it could not be loaded again.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    let err = model.save(&path).unwrap_err();
    assert!(err.to_string().contains("layer 0 holds NaN"), "{err}");
    assert!(!path.exists());
}

#[test]
fn feed_backward_panel_k_is_class_k_and_pinv_differs_from_transpose() {
    use relumax::{inspect::Preimage, inspect::class_images};
    let data = Dataset::bundled().unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..Default::default()
    };
    let model = crate::common::train(config, &data).model;
    let transpose = class_images(&model, Preimage::Transpose).unwrap();
    let pinv = class_images(&model, Preimage::Pinv).unwrap();
    assert_eq!(transpose.dim(), (10, 784));
    for (name, images) in [("transpose", &transpose), ("pinv", &pinv)] {
        // Each class image, pushed forward again, is that class.
        let predicted = model.predict(images.view()).unwrap();
        assert_eq!(predicted, (0..10).collect::<Vec<u32>>(), "{name}");
    }
    // The two preimages are different images, not one scaled: their cosine is well below 1.
    for k in 0..10 {
        let (t, p) = (transpose.row(k), pinv.row(k));
        let cosine = t.dot(&p) / (t.dot(&t).sqrt() * p.dot(&p).sqrt());
        assert!(cosine < 0.99, "class {k}: cosine {cosine}");
    }
}
