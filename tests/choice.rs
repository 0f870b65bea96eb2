//! Choice decoding against scikit-learn: `fixtures/choice_logreg.json` (tools/nlb_vectors.py)
//! holds a dataset, scikit-learn's StandardScaler + LogisticRegression fits at fixed C, its
//! StratifiedKFold(4) folds and the C that GridSearchCV chose with its test accuracy.

use ndt::eval::choice::{ChoiceOpts, Scaler, decode_choice, fit_logistic, stratified_folds};
use serde_json::Value;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/choice_logreg.json");
    let text =
        std::fs::read_to_string(path).expect("fixtures/choice_logreg.json (tools/nlb_vectors.py)");
    serde_json::from_str(&text).expect("valid json")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<i8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i8)
        .collect()
}

#[test]
fn folds_match_stratified_kfold() {
    let v = load();
    let want: Vec<usize> = v["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(stratified_folds(&labels(&v["y_fit"]), 4), want);
}

#[test]
fn fits_match_scikit_learn_at_fixed_c() {
    let v = load();
    let d = v["d"].as_u64().unwrap() as usize;
    let (x, y) = (f64s(&v["x_fit"]), labels(&v["y_fit"]));
    let rows: Vec<usize> = (0..y.len()).collect();
    let scaler = Scaler::fit(&x, d, &rows);
    let xs = scaler.transform(&x, d, &rows);
    for fixed in v["fixed"].as_array().unwrap() {
        let c = fixed["c"].as_f64().unwrap();
        for (a, b) in scaler.mean.iter().zip(f64s(&fixed["mean"])) {
            assert!((a - b).abs() < 1e-12);
        }
        for (a, b) in scaler.scale.iter().zip(f64s(&fixed["scale"])) {
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "scale {a} vs {b}");
        }
        let model = fit_logistic(&xs, &y, d, c, None, &ChoiceOpts::default());
        let want = f64s(&fixed["coef"]);
        for (k, (a, b)) in model.coef.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-6 * b.abs().max(1.0),
                "C={c} coef[{k}] {a} vs {b}"
            );
        }
        let b0 = fixed["intercept"].as_f64().unwrap();
        assert!(
            (model.intercept - b0).abs() < 1e-6 * b0.abs().max(1.0),
            "C={c} intercept"
        );
    }
}

#[test]
fn cross_validated_choice_matches_grid_search() {
    let v = load();
    let d = v["d"].as_u64().unwrap() as usize;
    let opts = ChoiceOpts::default();
    assert_eq!(opts.grid.len(), f64s(&v["grid"]).len());
    let r = decode_choice(
        &f64s(&v["x_fit"]),
        &labels(&v["y_fit"]),
        &f64s(&v["x_test"]),
        &labels(&v["y_test"]),
        d,
        &opts,
    )
    .unwrap();
    for ((c, acc), (gc, gacc)) in r
        .cv_accuracy
        .iter()
        .zip(f64s(&v["grid"]).into_iter().zip(f64s(&v["cv_accuracy"])))
    {
        assert!((c / gc - 1.0).abs() < 1e-12);
        assert!(
            (acc - gacc).abs() < 1e-12,
            "C={c}: cv accuracy {acc} vs {gacc}"
        );
    }
    assert_eq!(r.c, v["best_c"].as_f64().unwrap());
    assert_eq!(r.accuracy, v["test_accuracy"].as_f64().unwrap());
    assert_eq!(r.majority, v["majority"].as_f64().unwrap());
    assert!(
        r.accuracy > r.majority,
        "the fixture carries a decodable signal"
    );
}

#[test]
fn bad_labels_and_too_few_trials_are_errors() {
    let opts = ChoiceOpts::default();
    let x = vec![0.0; 8];
    assert!(decode_choice(&x, &[1, -1, 0, 1], &x[..2], &[1, -1], 2, &opts).is_err());
    assert!(decode_choice(&x, &[1, -1, 1, 1], &x[..2], &[1], 2, &opts).is_err());
}
